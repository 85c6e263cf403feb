"""Athena's query API on the local endpoint, answered by the sandboxed DuckDB engine
(runtime/local/athena/): whoever starts a query (the AWS CLI, boto3, awswrangler, `dp`)
gets its real answer, or Athena's own failure, never moto's empty success.

StartQueryExecution queues the query and returns its id at once; a worker runs it (two at a
time, as many as this machine has cores), as Athena does:
- a query (SELECT, WITH, UNION, DESCRIBE) over the catalog's tables: the answer is written
  as Athena writes it, `<output location><id>.csv` and `<id>.csv.metadata`, with the
  workgroup's result encryption, and kept for GetQueryResults (pages of up to 1,000 rows,
  the header first, Athena's type names);
- CREATE TABLE AS SELECT (awswrangler's default read): the rows as Parquet files under the
  table's location (`external_location`, else `<output location>tables/<id>/`), the table
  in the Glue catalog, and the manifest of the files it wrote
  (`<output location>tables/<id>-manifest.csv`, Statistics.DataManifestLocation);
- UNLOAD (query) TO 's3://...': the rows as Parquet files there, and its manifest
  (`<output location><id>-manifest.csv`).
CTAS and UNLOAD write Parquet into S3 only, into an empty location, as Athena does.
- OPTIMIZE ... REWRITE DATA USING BIN_PACK and VACUUM of an Iceberg table: done on the
  table (athena/maintenance.py), committed through this endpoint's Glue.

The workgroup's settings apply as Athena applies them: its result location and encryption
(forced when it enforces its configuration), its bytes-scanned cutoff (a query over it is
CANCELLED). Lake Formation's grants apply to the principal that signed the request
(`grants`). Bytes scanned are the sizes of the objects read after partition pruning.
"""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from dataplatform.runtime.local.athena import engine, maintenance
from dataplatform.runtime.local.athena.sql import QueryError, Statement, parse, statement
from dataplatform.runtime.local.services.base import AwsError, Call, Records, Service, epoch, now
from dataplatform.runtime.local.services.lakeformation import LakeFormation, principal_of

WORKERS = 2
RESULTS_PAGE_MAX = 1000
LIST_PAGE_MAX = 50
DEFAULT_WORKGROUP = "primary"
DEFAULT_CATALOG = "AwsDataCatalog"
RUNNING = ("QUEUED", "RUNNING")
ENGINE_VERSION = {
    "SelectedEngineVersion": "AUTO",
    "EffectiveEngineVersion": "Athena engine version 3",
}
# Athena's ColumnInfo precision by type (what Trino reports)
_PRECISION = {
    "varchar": 2147483647,
    "bigint": 19,
    "integer": 10,
    "smallint": 5,
    "tinyint": 3,
    "double": 17,
    "real": 24,
    "boolean": 0,
    "date": 0,
    "timestamp": 3,
    "timestamp with time zone": 3,
}
_CASE_SENSITIVE = ("varchar", "char", "varbinary", "json")


def _invalid(message: str, athena_code: str | None = None) -> AwsError:
    members = {"AthenaErrorCode": athena_code} if athena_code else {}
    return AwsError("InvalidRequestException", message, members=members)


class Athena(Service):
    signing_name = "athena"
    target_prefix = "AmazonAthena"
    operations = (
        "StartQueryExecution",
        "GetQueryExecution",
        "BatchGetQueryExecution",
        "GetQueryResults",
        "StopQueryExecution",
        "ListQueryExecutions",
        "GetQueryRuntimeStatistics",
    )

    def __init__(self, server):
        super().__init__(server)
        self.lake_formation = LakeFormation(server)
        self.executions = Records(server.folder("athena", "executions"))
        self.answers = Records(server.folder("athena", "answers"))
        self.pool = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="athena")
        self._connections: dict[str, Any] = {}  # running query id -> its DuckDB connection
        self._lock = threading.Lock()
        for record in self.executions.values():  # still running when the server stopped
            if record["State"] in RUNNING:
                self._finish(
                    record["QueryExecutionId"],
                    "FAILED",
                    "the local platform stopped while the query ran: run it again",
                )

    # ----------------------------------------------------------------------- the API
    def start_query_execution(self, call: Call) -> dict:
        body = call.body
        sql = body.get("QueryString") or ""
        if not sql.strip():
            raise AwsError("InvalidRequestException", "QueryString must not be empty")
        workgroup_name = body.get("WorkGroup") or DEFAULT_WORKGROUP
        workgroup = self._workgroup(call.region, workgroup_name)
        configuration = workgroup.get("Configuration") or {}
        enforced = configuration.get("EnforceWorkGroupConfiguration", True)
        wanted = body.get("ResultConfiguration") or {}
        wg_results = configuration.get("ResultConfiguration") or {}
        results = wg_results if enforced else {**wg_results, **wanted}
        output = results.get("OutputLocation")
        if not output:
            raise _invalid(
                "No output location provided. An output location is required either through "
                "the Workgroup result configuration setting or as an API input."
            )
        token = body.get("ClientRequestToken")
        if token:
            for record in self.executions.values():
                if record.get("ClientRequestToken") == token:
                    return {"QueryExecutionId": record["QueryExecutionId"]}
        context = body.get("QueryExecutionContext") or {}
        query_id = str(uuid.uuid4())
        record = {
            "QueryExecutionId": query_id,
            "Query": sql,
            "StatementType": "DML",
            "WorkGroup": workgroup_name,
            "Region": call.region,
            "Database": context.get("Database"),
            "Catalog": context.get("Catalog") or DEFAULT_CATALOG,
            "OutputLocation": output if output.endswith("/") else output + "/",
            "Encryption": results.get("EncryptionConfiguration"),
            "Cutoff": configuration.get("BytesScannedCutoffPerQuery"),
            "ExecutionParameters": body.get("ExecutionParameters"),
            "ClientRequestToken": token,
            "State": "QUEUED",
            "Submitted": epoch(now()),
            # whose Lake Formation grants apply (None: the platform's own keys)
            "Principal": principal_of(call.access_key),
            "AccessKey": call.access_key,
        }
        self.executions.put(query_id, record)
        self.pool.submit(self._run, query_id)
        return {"QueryExecutionId": query_id}

    def get_query_execution(self, call: Call) -> dict:
        return {"QueryExecution": self._describe(self._record(call.body.get("QueryExecutionId")))}

    def batch_get_query_execution(self, call: Call) -> dict:
        found, missing = [], []
        for query_id in call.body.get("QueryExecutionIds") or []:
            record = self.executions.get(query_id)
            if record is None:
                missing.append(
                    {
                        "QueryExecutionId": query_id,
                        "ErrorCode": "INVALID_INPUT",
                        "ErrorMessage": f"QueryExecution {query_id} was not found",
                    }
                )
            else:
                found.append(self._describe(record))
        return {"QueryExecutions": found, "UnprocessedQueryExecutionIds": missing}

    def list_query_executions(self, call: Call) -> dict:
        workgroup = call.body.get("WorkGroup") or DEFAULT_WORKGROUP
        size = min(int(call.body.get("MaxResults") or LIST_PAGE_MAX), LIST_PAGE_MAX)
        records = sorted(
            (r for r in self.executions.values() if r["WorkGroup"] == workgroup),
            key=lambda r: r["Submitted"],
            reverse=True,
        )
        start = int(call.body.get("NextToken") or 0)
        page = records[start : start + size]
        answer: dict = {"QueryExecutionIds": [r["QueryExecutionId"] for r in page]}
        if start + size < len(records):
            answer["NextToken"] = str(start + size)
        return answer

    def stop_query_execution(self, call: Call) -> dict:
        record = self._record(call.body.get("QueryExecutionId"))
        if record["State"] in RUNNING:
            query_id = record["QueryExecutionId"]
            self._finish(query_id, "CANCELLED", "Query cancelled by user")
            with self._lock:
                connection = self._connections.get(query_id)
            if connection is not None:
                connection.interrupt()
        return {}

    def get_query_results(self, call: Call) -> dict:
        record = self._record(call.body.get("QueryExecutionId"))
        state = record["State"]
        if state in RUNNING:
            raise _invalid(f"Query has not yet finished. Current state: {state}")
        if state != "SUCCEEDED":
            raise _invalid(
                f"Query did not finish successfully. Final query state: {state}", "INVALID_INPUT"
            )
        answer = self.answers.get(record["QueryExecutionId"]) or {
            "columns": [],
            "types": [],
            "rows": [],
        }
        size = int(call.body.get("MaxResults") or RESULTS_PAGE_MAX)
        if not 1 <= size <= RESULTS_PAGE_MAX:
            raise AwsError(
                "InvalidRequestException", f"MaxResults must be between 1 and {RESULTS_PAGE_MAX}"
            )
        rows = [answer["columns"], *answer["rows"]]  # the header row first, as Athena's
        start = int(call.body.get("NextToken") or 0)
        page = rows[start : start + size]
        result: dict = {
            "ResultSet": {
                "Rows": [{"Data": [_datum(v) for v in row]} for row in page],
                "ResultSetMetadata": {
                    "ColumnInfo": [
                        _column_info(name, kind)
                        for name, kind in zip(answer["columns"], answer["types"], strict=True)
                    ]
                },
            }
        }
        if "UpdateCount" in record:
            result["UpdateCount"] = record["UpdateCount"]
        if start + size < len(rows):
            result["NextToken"] = str(start + size)
        return result

    def get_query_runtime_statistics(self, call: Call) -> dict:
        record = self._record(call.body.get("QueryExecutionId"))
        statistics = _statistics(record)
        answer = self.answers.get(record["QueryExecutionId"]) or {"rows": []}
        return {
            "QueryRuntimeStatistics": {
                "Timeline": {
                    k: statistics[k]
                    for k in (
                        "QueryQueueTimeInMillis",
                        "QueryPlanningTimeInMillis",
                        "EngineExecutionTimeInMillis",
                        "ServiceProcessingTimeInMillis",
                        "TotalExecutionTimeInMillis",
                    )
                    if k in statistics
                },
                "Rows": {
                    "InputRows": record.get("InputRows", 0),
                    "InputBytes": record.get("DataScannedInBytes", 0),
                    "OutputRows": len(answer["rows"]),
                    "OutputBytes": record.get("OutputBytes", 0),
                },
            }
        }

    # ----------------------------------------------------------------------- running
    def _run(self, query_id: str) -> None:
        record = self.executions.get(query_id)
        if record is None or record["State"] != "QUEUED":
            return  # cancelled while queued
        started = time.perf_counter()
        self.executions.update(query_id, State="RUNNING", Started=epoch(now()))
        try:
            outcome = self._execute(record)
        except engine.CutoffExceeded as exc:
            self._finish(query_id, "CANCELLED", f"Bytes scanned limit was exceeded: {exc}")
            return
        except QueryError as exc:
            self._finish(query_id, "FAILED", str(exc), error=USER_ERROR)
            return
        except Exception as exc:  # noqa: BLE001 - the query fails, the server goes on
            self._finish(
                query_id,
                "FAILED",
                f"INTERNAL_ERROR_QUERY_ENGINE: {type(exc).__name__}: {exc}",
                error={"ErrorCategory": 1, "ErrorType": 401, "Retryable": False},
            )
            return
        finally:
            with self._lock:
                self._connections.pop(query_id, None)
        self._finish(
            query_id,
            "SUCCEEDED",
            None,
            EngineExecutionTimeInMillis=int((time.perf_counter() - started) * 1000),
            **outcome,
        )

    def _finish(self, query_id: str, state: str, reason: str | None, **changes: Any) -> None:
        with self._lock:
            record = self.executions.get(query_id)
            if record is None or record["State"] not in RUNNING:
                return  # stopped meanwhile: the first end stands
            error = changes.pop("error", None)
            self.executions.update(
                query_id,
                State=state,
                StateChangeReason=reason,
                Completed=epoch(now()),
                AthenaError=error,
                **changes,
            )

    def _execute(self, record: dict) -> dict:
        """Run the record's statement; the record's new fields."""
        region, query_id = record["Region"], record["QueryExecutionId"]
        sql = _with_parameters(record["Query"], record.get("ExecutionParameters"))
        glue, s3 = self.server.client("glue", region), self.server.client("s3", region)
        database = record.get("Database") or "default"
        upkeep = maintenance.parse(sql)
        if upkeep is not None:
            return self._maintain(record, upkeep, glue=glue, s3=s3, database=database)
        what = statement(sql)

        def remember(connection) -> None:
            with self._lock:
                self._connections[query_id] = connection
            current = self.executions.get(query_id)
            if current is None or current["State"] != "RUNNING":
                connection.interrupt()

        answer = engine.execute(
            what.query,
            glue=glue,
            s3=s3,
            s3_filesystem=self._filesystem(region),
            workgroup=record["WorkGroup"],
            bytes_scanned_cutoff=record.get("Cutoff"),
            default_database=database,
            grants=(
                self.lake_formation.grants(record["AccessKey"], region)
                if record.get("Principal")
                else None
            ),
            interrupt=remember,
        )
        scanned = {"DataScannedInBytes": answer.bytes_scanned, "InputRows": answer.table.num_rows}
        if what.kind == "query":
            rows = [[_text(v) for v in row] for row in answer.rows]
            self.answers.put(
                query_id, {"columns": answer.columns, "types": answer.types, "rows": rows}
            )
            location = engine.write_result(
                s3,
                record["OutputLocation"],
                query_id,
                answer.columns,
                answer.rows,
                sql=record["Query"],
                workgroup=record["WorkGroup"],
                bytes_scanned=answer.bytes_scanned,
                encryption=_encryption(record.get("Encryption")),
            )
            kind = "UTILITY" if type(what.query).__name__ == "Describe" else "DML"
            return {**scanned, "ResultLocation": location, "StatementType": kind}
        from dataplatform.runtime.local.services import athena_writes

        written = athena_writes.write(
            what,
            answer,
            query_id=query_id,
            database=database,
            output=record["OutputLocation"],
            glue=glue,
            s3=s3,
            filesystem=self._filesystem(region),
            encryption=_encryption(record.get("Encryption")),
        )
        self.answers.put(
            query_id,
            {"columns": ["rows"], "types": ["bigint"], "rows": [[str(answer.table.num_rows)]]},
        )
        return {
            **scanned,
            "ResultLocation": written.result_location,
            "DataManifestLocation": written.manifest,
            "UpdateCount": answer.table.num_rows,
            "StatementType": "DDL" if what.kind == "ctas" else "DML",
        }

    def _maintain(
        self, record: dict, upkeep: maintenance.Maintenance, *, glue, s3, database: str
    ) -> dict:
        """OPTIMIZE or VACUUM of an Iceberg table (athena/maintenance.py); no rows."""
        from dataplatform.runtime.local.server import ACCESS_KEY, SECRET_KEY

        region = record["Region"]
        target = upkeep.database or database
        grants = (
            self.lake_formation.grants(record["AccessKey"], region)
            if record.get("Principal")
            else None
        )
        if grants is not None and not grants.allows(target, upkeep.table):
            raise QueryError(
                f"AccessDeniedException: Insufficient Lake Formation permission(s) on "
                f"{target}.{upkeep.table} ({grants.denial(target)})"
            )
        done = maintenance.run(
            upkeep,
            glue=glue,
            s3=s3,
            catalog_factory=lambda: maintenance.catalog(
                self.server.endpoint, region, ACCESS_KEY, SECRET_KEY
            ),
            default_database=database,
        )
        self.answers.put(record["QueryExecutionId"], {"columns": [], "types": [], "rows": []})
        # no rows: Athena leaves an empty `<id>.txt`, as for other statements without a
        # result set (awswrangler, like other readers, then answers an empty frame)
        bucket, _, prefix = record["OutputLocation"][len("s3://") :].partition("/")
        key = f"{prefix.rstrip('/') + '/' if prefix.strip('/') else ''}"
        key += f"{record['QueryExecutionId']}.txt"
        s3.put_object(Bucket=bucket, Key=key, Body=b"", **_encryption(record.get("Encryption")))
        location = f"s3://{bucket}/{key}"
        return {
            "DataScannedInBytes": 0,
            "ResultLocation": location,
            "StatementType": "DML",
            "Maintenance": done,
        }

    # ----------------------------------------------------------------------- helpers
    def _filesystem(self, region: str):
        import pyarrow.fs

        from dataplatform.runtime.local.server import ACCESS_KEY, SECRET_KEY

        return pyarrow.fs.S3FileSystem(
            access_key=ACCESS_KEY,
            secret_key=SECRET_KEY,
            region=region,
            scheme="http",
            endpoint_override=self.server.endpoint.removeprefix("http://"),
        )

    def _workgroup(self, region: str, name: str) -> dict:
        athena = self.server.client("athena", region)
        try:
            return athena.get_work_group(WorkGroup=name)["WorkGroup"]
        except athena.exceptions.InvalidRequestException:
            raise _invalid(f"WorkGroup {name} is not found.") from None
        except athena.exceptions.ClientError as exc:
            if name != DEFAULT_WORKGROUP:
                raise _invalid(f"WorkGroup {name} is not found: {exc}") from None
            return {"Name": name, "Configuration": {}}

    def _record(self, query_id: str | None) -> dict:
        record = self.executions.get(query_id or "")
        if record is None:
            raise _invalid(f"QueryExecution {query_id} was not found", "INVALID_INPUT")
        return record

    def _describe(self, record: dict) -> dict:
        status: dict = {"State": record["State"], "SubmissionDateTime": record["Submitted"]}
        if record.get("Completed") is not None:
            status["CompletionDateTime"] = record["Completed"]
        if record.get("StateChangeReason"):
            status["StateChangeReason"] = record["StateChangeReason"]
        if record.get("AthenaError"):
            status["AthenaError"] = {
                **record["AthenaError"],
                "ErrorMessage": record.get("StateChangeReason") or "",
            }
        context: dict = {"Catalog": record["Catalog"]}
        if record.get("Database"):
            context["Database"] = record["Database"]
        result_configuration: dict = {
            "OutputLocation": record.get("ResultLocation")
            or f"{record['OutputLocation']}{record['QueryExecutionId']}.csv"
        }
        if record.get("Encryption"):
            result_configuration["EncryptionConfiguration"] = record["Encryption"]
        described = {
            "QueryExecutionId": record["QueryExecutionId"],
            "Query": record["Query"],
            "StatementType": record.get("StatementType", "DML"),
            "ResultConfiguration": result_configuration,
            "ResultReuseConfiguration": {"ResultReuseByAgeConfiguration": {"Enabled": False}},
            "QueryExecutionContext": context,
            "Status": status,
            "Statistics": _statistics(record),
            "WorkGroup": record["WorkGroup"],
            "EngineVersion": ENGINE_VERSION,
        }
        if record.get("ExecutionParameters"):
            described["ExecutionParameters"] = record["ExecutionParameters"]
        return described

    def reset(self) -> None:
        with self._lock:
            for connection in self._connections.values():
                connection.interrupt()
            self._connections.clear()
        self.executions.clear()
        self.answers.clear()

    def stop(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


# --------------------------------------------------------------------------- pure helpers


def _statistics(record: dict) -> dict:
    submitted = record["Submitted"]
    started = record.get("Started") or submitted
    completed = record.get("Completed")
    statistics: dict = {
        "DataScannedInBytes": record.get("DataScannedInBytes", 0),
        "QueryQueueTimeInMillis": int((started - submitted) * 1000),
        "ResultReuseInformation": {"ReusedPreviousResult": False},
    }
    if completed is not None:
        total = int((completed - submitted) * 1000)
        engine_ms = record.get("EngineExecutionTimeInMillis", int((completed - started) * 1000))
        statistics.update(
            TotalExecutionTimeInMillis=total,
            EngineExecutionTimeInMillis=engine_ms,
            QueryPlanningTimeInMillis=0,
            ServicePreProcessingTimeInMillis=0,
            ServiceProcessingTimeInMillis=max(0, total - engine_ms),
        )
    if record.get("DataManifestLocation"):
        statistics["DataManifestLocation"] = record["DataManifestLocation"]
    return statistics


def _datum(value: str | None) -> dict:
    return {} if value is None else {"VarCharValue": value}


def _text(value: Any) -> str | None:
    return None if value is None else engine.csv_value(value)


def _column_info(name: str, kind: str) -> dict:
    base = kind.split("(", 1)[0]
    info: dict = {
        "CatalogName": "hive",
        "SchemaName": "",
        "TableName": "",
        "Name": name,
        "Label": name,
        "Type": kind if base != "decimal" else "decimal",
        "Precision": _PRECISION.get(base, 0),
        "Scale": 0,
        "Nullable": "UNKNOWN",
        "CaseSensitive": base in _CASE_SENSITIVE,
    }
    if base == "decimal" and "(" in kind:
        precision, scale = kind[kind.index("(") + 1 : -1].split(",")
        info["Precision"], info["Scale"] = int(precision), int(scale)
    return info


def _encryption(configuration: dict | None) -> dict:
    """put_object's arguments for the workgroup's result encryption."""
    option = (configuration or {}).get("EncryptionOption")
    if option == "SSE_KMS":
        key = configuration.get("KmsKey") if configuration else None
        return {"ServerSideEncryption": "aws:kms", **({"SSEKMSKeyId": key} if key else {})}
    if option == "SSE_S3":
        return {"ServerSideEncryption": "AES256"}
    return {}


# Athena's AthenaError for a query the user's SQL failed: a user error (category 2), not
# to be retried; the message (SYNTAX_ERROR, COLUMN_NOT_FOUND, ...) says which
USER_ERROR = {"ErrorCategory": 2, "ErrorType": 1006, "Retryable": False}


def _with_parameters(sql: str, parameters: list[str] | None) -> str:
    """The query with its `?` placeholders replaced, in order, by the ExecutionParameters
    (SQL literals, as Athena takes them)."""
    if not parameters:
        return sql
    from sqlglot import exp

    tree = parse(sql)
    holders = list(tree.find_all(exp.Placeholder))
    if len(holders) != len(parameters):
        raise QueryError(
            f"INVALID_PARAMETER_USAGE: the query has {len(holders)} parameter(s) (?) and "
            f"{len(parameters)} value(s) were given (ExecutionParameters)"
        )
    for holder, value in zip(holders, parameters, strict=True):
        holder.replace(parse(f"SELECT {value}").expressions[0])
    return tree.sql(dialect="athena")


__all__ = ["Athena", "Statement"]
