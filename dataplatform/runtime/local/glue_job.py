"""Running a deployed Glue or EMR script locally: the same script with its arguments as
`spark-submit --master local[2]` would run it, s3:// rewritten to s3a:// against the local
server, the library zip as Glue's --extra-py-files, on the platform's long-lived Spark
driver (spark_service), with the driver's settings. The local endpoint's Glue and EMR
services (services/glue.py, emr.py) run their job runs and steps through it; output is
streamed to a progress callback and kept in .dp/runs/ with the run's report."""

from __future__ import annotations

import json
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from dataplatform.jobs import iceberg
from dataplatform.runtime import errors
from dataplatform.runtime.local import spark_jars, spark_service
from dataplatform.runtime.local.server import ACCESS_KEY, SECRET_KEY, ServerInfo

# Arguments Glue understands itself; spark-submit has no use for them.
GLUE_ONLY_ARGUMENTS = (
    "--extra-py-files",
    "--TempDir",
    "--job-bookmark-option",
    "--enable-metrics",
    "--enable-observability-metrics",
    "--enable-continuous-cloudwatch-log",
    "--enable-continuous-log-filter",
    "--job-language",
    "--datalake-formats",  # Iceberg's jars are on the local driver's class path always
    "--conf",  # Spark settings: given to the job's session (job_conf), not to its script
)


class JobFailed(errors.JobFailed):
    def __init__(self, message: str, log_path: Path):
        super().__init__(f"{message} (log: {log_path})")
        self.log_path = log_path


@dataclass
class LocalJobRun:
    job_name: str
    run_id: str
    state: str
    seconds: float
    log_path: str
    report: dict | None


def spark_s3a_conf(info: ServerInfo, region: str) -> dict[str, str]:
    return {
        "spark.hadoop.fs.s3a.endpoint": info.endpoint,
        "spark.hadoop.fs.s3a.path.style.access": "true",
        "spark.hadoop.fs.s3a.connection.ssl.enabled": "false",
        "spark.hadoop.fs.s3a.endpoint.region": region,
        "spark.hadoop.fs.s3a.aws.credentials.provider": "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider",
        "spark.hadoop.fs.s3a.access.key": ACCESS_KEY,
        "spark.hadoop.fs.s3a.secret.key": SECRET_KEY,
        # No encryption setting: S3A's writes take the bucket's default, the lake key's
        # SSE-KMS, as every other object does (deployed, Glue's security configuration asks
        # for the same key). The AWS SDK of hadoop-aws refuses to *copy* SSE-KMS objects over
        # plain HTTP, but the committer below writes with multipart uploads and never copies.
    }


def spark_commit_conf(staging_dir: Path) -> dict[str, str]:
    """Partition writes without copies: S3A's "partitioned" staging committer through the
    local commit protocol (dataplatform/runtime/local/jvm/ReplacePartitionsCommitProtocol.java
    says why and how dynamic partition overwrite keeps its meaning). Tasks write to local
    disk and upload at task commit; job commit completes the uploads, so a failed job shows
    nothing. `staging_dir` keeps the pending uploads between task and job commit."""
    return {
        "spark.sql.sources.commitProtocolClass": spark_jars.COMMIT_PROTOCOL,
        "spark.sql.parquet.output.committer.class": (
            "org.apache.spark.internal.io.cloud.BindingParquetOutputCommitter"
        ),
        "spark.hadoop.mapreduce.outputcommitter.factory.scheme.s3a": (
            "org.apache.hadoop.fs.s3a.commit.S3ACommitterFactory"
        ),
        "spark.hadoop.fs.s3a.committer.name": "partitioned",
        "spark.hadoop.fs.s3a.committer.staging.tmp.path": staging_dir.resolve().as_uri(),
    }


def spark_local_files_conf() -> dict[str, str]:
    """file:// through the local platform's LocalFileSystem, which sets and reads file
    permissions in the JVM: Hadoop's own forks a `chmod` for every file and folder it
    creates and an `ls -ld` for every permission asked, when its native library is absent,
    as it is from pyspark. Every file a job writes passes through the local disk (the
    staging committer uploads from there): a rerun of the demo's house_sales curate took
    2,728 new process ids with it, 64 to 146 without (NioRawLocalFileSystem.java). Its class must be on the
    driver's class path when the JVM starts (spark_jars.driver_class_path_conf)."""
    return {"spark.hadoop.fs.file.impl": spark_jars.LOCAL_FILE_SYSTEM}


def iceberg_endpoint_conf(catalog: str, endpoint: str, region: str) -> dict[str, str]:
    """An Iceberg catalog's settings that point its Glue client and S3FileIO at the local
    server (on AWS the SDK finds the endpoints itself): the job's own catalog settings stay as
    it gives them."""
    prefix = f"spark.sql.catalog.{catalog}"
    return {
        f"{prefix}.glue.endpoint": endpoint,
        f"{prefix}.s3.endpoint": endpoint,
        f"{prefix}.s3.path-style-access": "true",
        f"{prefix}.client.region": region,
        f"{prefix}.s3.access-key-id": ACCESS_KEY,
        f"{prefix}.s3.secret-access-key": SECRET_KEY,
    }


def job_conf(arguments: dict[str, str], info: ServerInfo, region: str) -> dict[str, str]:
    """The Spark settings a Glue job's `--conf` argument gives its session, each Iceberg
    catalog it declares pointed at the local server. Static settings (spark.sql.extensions)
    are the driver's own (spark_conf) and left out: a session cannot change them."""
    conf = iceberg.parse_glue_conf(arguments.get("--conf", ""))
    extensions = conf.pop("spark.sql.extensions", None)
    if extensions is not None and extensions != iceberg.EXTENSIONS:
        raise JobFailed(
            f"--conf spark.sql.extensions={extensions}: the local Spark driver runs with "
            f"{iceberg.EXTENSIONS} only",
            Path("-"),
        )
    catalogs = {
        key.split(".")[3]
        for key in conf
        if key.startswith("spark.sql.catalog.") and len(key.split(".")) == 4
    }
    for catalog in sorted(catalogs):
        conf.update(iceberg_endpoint_conf(catalog, info.endpoint, region))
    return conf


def to_s3a(value: str) -> str:
    return "s3a://" + value[len("s3://") :] if value.startswith("s3://") else value


def spark_conf(info: ServerInfo, region: str, state_dir: Path) -> dict[str, str]:
    """The local driver's Spark settings: s3a:// to moto, and what suits small local data.
    Every S3A request is a round trip to moto in Python, so these settings aim at fewer
    requests (figures: bench/local_platform.py)."""
    return {
        "spark.ui.enabled": "false",
        "spark.driver.host": "127.0.0.1",
        "spark.driver.bindAddress": "127.0.0.1",
        # One task after each shuffle: local data is small, and each task writes its own
        # file per partition, every file a few requests (the demo's 240-day house_sales
        # wrote 4 files a day; 1 is the same data in a quarter of the requests).
        "spark.sql.shuffle.partitions": "1",
        # Read small files together: Spark charges each file 4 MB as "open cost" when it
        # packs files into tasks, so the demo's 1,057 small raw objects made 33 tasks, and
        # 33 quarantine files per day. With 64 KB they make one task per core.
        "spark.sql.files.openCostInBytes": str(64 * 1024),
        # Spark lists more than 32 input folders with a Spark job of one task per folder
        # (the demo's 1,056 raw hours: 1,056 tasks of a few ms work each, ~20 s of task
        # overhead); two tasks, one per core, list the same folders in a fraction of that.
        "spark.sql.sources.parallelPartitionDiscovery.parallelism": "2",
        # For writes through Hadoop's FileOutputCommitter, which now means file:// ones only
        # (s3a:// goes through the S3A committer below): v2 moves each task's files into the
        # output at task commit, one rename per file where v1 makes two. (It was first set
        # for s3a://, when moto listed a versioned bucket's deleted task folders and v1's
        # job commit failed on them; moto_main now lists as S3 does.)
        "spark.hadoop.mapreduce.fileoutputcommitter.algorithm.version": "2",
        **spark_commit_conf(state_dir / "spark-commits"),
        **spark_local_files_conf(),
        # Keep S3A's empty-directory markers instead of deleting every parent's marker
        # after each file written (Hadoop 3.4's default; 3.3.4 understands it): a multi-
        # object DELETE per file, slow in moto's versioned buckets (baskets curate: 21 s -> 4 s).
        "spark.hadoop.fs.s3a.directory.marker.retention": "keep",
        **spark_s3a_conf(info, region),
        # Iceberg (datasets with `table_format: iceberg`): its SQL extensions (MERGE, CALL,
        # ALTER TABLE ... partition fields) are a static setting, so the driver always has
        # them; and the platform's catalog name, for jobs that set the catalog themselves
        # (an EMR step), pointed at the local server.
        "spark.sql.extensions": iceberg.EXTENSIONS,
        **iceberg_endpoint_conf(iceberg.CATALOG, info.endpoint, region),
    }


def spark_driver(
    *,
    info: ServerInfo,
    region: str,
    state_dir: Path,
    library_zip: Path | None,
    jars_dir: Path = spark_jars.JARS_DIR,
    progress: Callable[[str], None] = lambda line: None,
) -> spark_service.Driver:
    """The platform's Spark driver for these settings: the running one, or a new one.
    Raises SparkServiceError when it cannot start."""
    env = {
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
        # the job's own boto3 calls (catalog registration) go to the moto server
        "AWS_ENDPOINT_URL": info.endpoint,
        "AWS_DEFAULT_REGION": region,
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
    }
    return spark_service.ensure(
        state_dir,
        conf=spark_conf(info, region, state_dir),
        jars=spark_jars.jar_paths(jars_dir),
        py_files=[library_zip] if library_zip is not None else [],
        env=env,
        moto_pid=info.pid,
        progress=progress,
    )


def spark_submit(
    s3,
    *,
    script_uri: str,
    name: str,
    arguments: dict[str, str],
    run_id: str,
    script_argv: list[str] | None = None,
    info: ServerInfo,
    region: str,
    runs_dir: Path,
    library_zip: Path | None,
    jars_dir: Path = spark_jars.JARS_DIR,
    progress: Callable[[str], None] = lambda line: None,
) -> LocalJobRun:
    """Run a deployed script (Glue job or EMR step) as spark-submit would, local[2] over
    s3a://, on the platform's long-lived Spark driver (spark_service)."""
    job_name = name
    bucket, key = script_uri[len("s3://") :].split("/", 1)
    runs_dir.mkdir(parents=True, exist_ok=True)
    script = runs_dir / f"{run_id}-{Path(key).name}"
    script.write_bytes(s3.get_object(Bucket=bucket, Key=key)["Body"].read())

    argv: list[str] = [to_s3a(a) for a in script_argv or ()]
    for argument, value in arguments.items():
        if argument not in GLUE_ONLY_ARGUMENTS:
            argv += [argument, to_s3a(value)]
    log_path = runs_dir / f"{run_id}.log"
    started = time.perf_counter()
    tail: deque[str] = deque(maxlen=30)

    def follow(line: str) -> None:
        tail.append(line.rstrip())
        progress(line.rstrip())

    try:
        driver = spark_driver(
            info=info,
            region=region,
            state_dir=runs_dir.parent,
            library_zip=library_zip,
            jars_dir=jars_dir,
            progress=progress,
        )
        code = spark_service.run(
            driver,
            script=script,
            argv=argv,
            conf=job_conf(arguments, info, region),
            name=job_name,
            run_id=run_id,
            log_path=log_path,
            progress=follow,
        )
    except spark_service.SparkServiceError as exc:
        code, tail = 1, deque([str(exc)])
    seconds = round(time.perf_counter() - started, 1)

    report = None
    reports = arguments.get("--reports-path", "")
    if code == 0 and reports.startswith("s3://"):
        r_bucket, r_prefix = reports[len("s3://") :].split("/", 1)
        body = s3.get_object(Bucket=r_bucket, Key=f"{r_prefix.rstrip('/')}/{run_id}.json")["Body"]
        report = json.loads(body.read())
    run = LocalJobRun(
        job_name=job_name,
        run_id=run_id,
        state="SUCCEEDED" if code == 0 else "FAILED",
        seconds=seconds,
        log_path=str(log_path),
        report=report,
    )
    (runs_dir / f"{run_id}.json").write_text(json.dumps(asdict(run), indent=1, default=str))
    if code != 0:
        errors = [ln for ln in tail if "Error" in ln or "Exception" in ln] or list(tail)[-5:]
        raise JobFailed(
            f"{job_name} run {run_id} failed (exit {code}): {errors[-1] if errors else ''}",
            log_path,
        )
    return run
