"""Errors shared by both targets, so callers (the `dp` command) catch one class whichever
platform they talk to."""


class Refused(RuntimeError):
    """A request the platform refuses, as AWS would (a second run of a job, a second demo
    at once): its message says why and what to do."""


class JobFailed(RuntimeError):
    """A crawl or job run that did not succeed; its message says why and where the log is."""


class QueryError(Exception):
    """A query Athena (or its local stand-in) refused or failed."""


class SendInterrupted(RuntimeError):
    """A request-level failure (the endpoint stopped answering, access denied, ...) in the
    middle of PutRecords. `settled` input records (a prefix of the input: requests go in
    order) were answered, each sent or failed, as counted in `summary`; the rest were not
    sent or not confirmed."""

    def __init__(self, summary, settled: int, cause: BaseException):
        super().__init__(f"{type(cause).__name__}: {cause}")
        self.summary, self.settled, self.cause = summary, settled, cause


class IngestInterrupted(RuntimeError):
    """An ingest that stopped part way: what was kept and exactly what to send again."""

    def __init__(
        self,
        dataset: str,
        file,
        sent: int,
        resend_from_line: int,
        last_line: int,
        cause: BaseException,
        during: str,
    ):
        self.dataset, self.file, self.sent = dataset, file, sent
        self.resend_from_line, self.last_line, self.cause, self.during = (
            resend_from_line,
            last_line,
            cause,
            during,
        )
        if resend_from_line > last_line:
            what = (
                f"every line was sent to the stream before it stopped (during {during}); "
                "the records are kept there and are delivered by the next ingest: run "
                f"`dp ingest {dataset} --file {file} --from-line {resend_from_line}` "
                "(it sends nothing more)"
            )
        else:
            what = (
                f"lines before {resend_from_line:,} were sent to the stream and are kept "
                f"({sent:,} records); lines {resend_from_line:,}-{last_line:,} were not sent "
                f"or not confirmed: send them with `dp ingest {dataset} --file {file} "
                f"--from-line {resend_from_line}` (a record sent twice is removed by the "
                "curate job's de-duplication)"
            )
        super().__init__(f"ingest of {file} stopped: {type(cause).__name__}: {cause}. {what}")
