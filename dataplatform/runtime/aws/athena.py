"""Run one Athena query in a deployed environment, through awswrangler.

The query runs in the environment's workgroup (`Names.workgroup`), so the workgroup's
result location, encryption and bytes-scanned cutoff apply. `ctas_approach=False`:
the result is read from the CSV Athena writes, no temporary CTAS table is created
(that would need Glue write access and the workgroup's result bucket as a table).
"""

from __future__ import annotations

import re
from typing import Any

import boto3

from dataplatform.runtime import errors
from dataplatform.runtime.results import QueryResult

# Athena (Trino) messages carry the position as "line 3:14: ..." .
_POSITION = re.compile(r"line (\d+):(\d+)")


class QueryError(errors.QueryError):
    """A query Athena failed or cancelled; the message is Athena's own
    (StateChangeReason), `line`/`column` the position it names, if any."""

    def __init__(self, message: str, *, line: int | None = None, column: int | None = None):
        self.line = line
        self.column = column
        super().__init__(message)

    @classmethod
    def from_athena(cls, message: str) -> QueryError:
        match = _POSITION.search(message)
        if match is None:
            return cls(message)
        return cls(message, line=int(match.group(1)), column=int(match.group(2)))


def run_query(
    sql: str,
    *,
    session: boto3.Session,
    workgroup: str,
    database: str,
    params: dict[str, Any] | None = None,
    poll_seconds: float = 1.0,
) -> QueryResult:
    """Run `sql` in `workgroup` with `database` as the default database; return the
    rows as a DataFrame plus the query's statistics.

    Raises QueryError (with Athena's message, which names line:column for SQL errors)
    when the query fails or is cancelled, or when Athena's result file is missing.
    """
    import awswrangler as wr

    kwargs: dict[str, Any] = dict(
        database=database,
        workgroup=workgroup,
        boto3_session=session,
        ctas_approach=False,
        athena_query_wait_polling_delay=poll_seconds,
    )
    if params:
        kwargs["params"] = params
    try:
        frame = wr.athena.read_sql_query(sql, **kwargs)
    except wr.exceptions.QueryFailed as exc:
        raise QueryError.from_athena(_athena_message(exc)) from exc
    except wr.exceptions.QueryCancelled as exc:
        raise QueryError(f"query cancelled: {_athena_message(exc)}") from exc
    except wr.exceptions.NoFilesFound as exc:
        raise QueryError(
            f"Athena reported the query as succeeded but its result file is "
            f"missing ({exc}): check the workgroup {workgroup!r} result location "
            "and its lifecycle rules"
        ) from exc

    # awswrangler attaches the GetQueryExecution payload to the frame as `query_metadata`.
    metadata = frame.__dict__.get("query_metadata")
    if not isinstance(metadata, dict):
        metadata = {}
    statistics = metadata.get("Statistics") or {}
    return QueryResult.of_frame(
        frame,
        bytes_scanned=statistics.get("DataScannedInBytes"),
        query_id=metadata.get("QueryExecutionId"),
        output_location=(metadata.get("ResultConfiguration") or {}).get("OutputLocation"),
        engine_execution_ms=statistics.get("EngineExecutionTimeInMillis"),
    )


def _athena_message(exc: Exception) -> str:
    # awswrangler raises QueryFailed(StateChangeReason), sometimes prefixed "Query error: ".
    text = str(exc.args[0]) if exc.args and exc.args[0] is not None else str(exc)
    return text.removeprefix("Query error: ") or "no reason given by Athena"
