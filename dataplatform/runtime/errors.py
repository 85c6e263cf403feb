"""Errors shared by both targets, so callers (the `dp` command) catch one class whichever
platform they talk to."""


class JobFailed(RuntimeError):
    """A crawl or job run that did not succeed; its message says why and where the log is."""


class QueryError(Exception):
    """A query Athena (or its local stand-in) refused or failed."""
