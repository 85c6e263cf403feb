"""The local Glue job runner: what moto's Glue does not do (its runs "succeed" without
running). It reads the job's definition from the (moto) catalog, and runs the same script
with the same default arguments through `spark-submit --master local[2]`, s3:// rewritten
to s3a:// against the moto server, the library zip on --py-files as Glue's
--extra-py-files. Output is streamed to a progress callback and kept in .dp/runs/ with
the run's report."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import pyspark

from dataplatform.runtime import errors
from dataplatform.runtime.local.server import ACCESS_KEY, SECRET_KEY, ServerInfo

S3A_JARS = ("hadoop-aws-3.3.1.jar", "aws-java-sdk-bundle-1.11.901.jar")
REPO_ROOT = Path(__file__).resolve().parents[3]
# Arguments Glue understands itself; spark-submit has no use for them.
GLUE_ONLY_ARGUMENTS = ("--extra-py-files", "--TempDir", "--job-bookmark-option", "--enable-metrics",
                       "--enable-observability-metrics", "--enable-continuous-cloudwatch-log",
                       "--enable-continuous-log-filter", "--job-language")


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
        "spark.hadoop.fs.s3a.aws.credentials.provider":
            "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider",
        "spark.hadoop.fs.s3a.access.key": ACCESS_KEY,
        "spark.hadoop.fs.s3a.secret.key": SECRET_KEY,
        # The AWS Java SDK bundled with hadoop-aws 3.3.1 refuses to copy SSE-KMS objects over
        # plain HTTP (with a misleading SSE-C message), and Spark's commit copies every file.
        # Locally, Spark's own writes therefore ask for SSE-S3; every other object keeps the
        # buckets' default SSE-KMS. Deployed, Glue writes SSE-KMS via its security configuration.
        "spark.hadoop.fs.s3a.server-side-encryption-algorithm": "AES256",
    }


def to_s3a(value: str) -> str:
    return "s3a://" + value[len("s3://"):] if value.startswith("s3://") else value


def run_job(glue, s3, *, job_name: str, info: ServerInfo, region: str, runs_dir: Path,
            library_zip: Path, jars_dir: Path = REPO_ROOT / ".jars",
            extra_arguments: dict[str, str] | None = None,
            progress: Callable[[str], None] = lambda line: None) -> LocalJobRun:
    job = glue.get_job(JobName=job_name)["Job"]
    arguments = {**job.get("DefaultArguments", {}), **(extra_arguments or {})}
    runs_dir.mkdir(parents=True, exist_ok=True)
    # The control plane records the run (moto marks it SUCCEEDED at once: it is only an id).
    run_id = glue.start_job_run(JobName=job_name, Arguments=arguments)["JobRunId"]
    return spark_submit(s3, script_uri=job["Command"]["ScriptLocation"], name=job_name,
                        arguments={**arguments, "--run-id": run_id, "--JOB_NAME": job_name},
                        run_id=run_id, info=info, region=region, runs_dir=runs_dir,
                        library_zip=library_zip, jars_dir=jars_dir, progress=progress)


def spark_submit(s3, *, script_uri: str, name: str, arguments: dict[str, str], run_id: str,
                 info: ServerInfo, region: str, runs_dir: Path, library_zip: Path,
                 jars_dir: Path = REPO_ROOT / ".jars",
                 progress: Callable[[str], None] = lambda line: None) -> LocalJobRun:
    """Run a deployed script (Glue job or EMR step) with spark-submit local[2] over s3a://."""
    job_name = name
    bucket, key = script_uri[len("s3://"):].split("/", 1)
    runs_dir.mkdir(parents=True, exist_ok=True)
    script = runs_dir / f"{run_id}-{Path(key).name}"
    script.write_bytes(s3.get_object(Bucket=bucket, Key=key)["Body"].read())

    missing = [j for j in S3A_JARS if not (jars_dir / j).is_file()]
    if missing:
        raise FileNotFoundError(f"Spark's S3 connector jars {missing} are not in {jars_dir}; "
                                "run `make setup`")
    submit = Path(pyspark.__file__).parent / "bin" / "spark-submit"
    command = [str(submit), "--master", "local[2]", "--name", job_name,
               "--jars", ",".join(str(jars_dir / j) for j in S3A_JARS),
               "--py-files", str(library_zip),
               "--conf", "spark.ui.enabled=false", "--conf", "spark.driver.host=127.0.0.1",
               # Local data is small; 200 shuffle partitions would each commit files through
               # S3A's copy-on-rename to moto (seconds per file).
               "--conf", "spark.sql.shuffle.partitions=4",
               # moto lists the deleted keys of a versioned bucket as CommonPrefixes, so a
               # rerun's v1 job commit finds the previous run's (deleted) task folders under
               # <output>/_temporary/0/ and fails on them. v2 commits each task's own (unique)
               # attempt folder instead and never lists the job's.
               "--conf", "spark.hadoop.mapreduce.fileoutputcommitter.algorithm.version=2"]
    for conf_key, conf_value in spark_s3a_conf(info, region).items():
        command += ["--conf", f"{conf_key}={conf_value}"]
    command.append(str(script))
    for argument, value in arguments.items():
        if argument not in GLUE_ONLY_ARGUMENTS:
            command += [argument, to_s3a(value)]

    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable,
           # the job's own boto3 calls (catalog registration) go to the moto server
           "AWS_ENDPOINT_URL": info.endpoint, "AWS_DEFAULT_REGION": region,
           "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
    log_path = runs_dir / f"{run_id}.log"
    started = time.perf_counter()
    tail: deque[str] = deque(maxlen=30)
    with log_path.open("w") as log, subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
            stdin=subprocess.DEVNULL) as process:
        for line in process.stdout:
            log.write(line)
            tail.append(line.rstrip())
            progress(line.rstrip())
        code = process.wait()
    seconds = round(time.perf_counter() - started, 1)

    report = None
    reports = arguments.get("--reports-path", "")
    if code == 0 and reports.startswith("s3://"):
        r_bucket, r_prefix = reports[len("s3://"):].split("/", 1)
        body = s3.get_object(Bucket=r_bucket, Key=f"{r_prefix.rstrip('/')}/{run_id}.json")["Body"]
        report = json.loads(body.read())
    run = LocalJobRun(job_name=job_name, run_id=run_id, state="SUCCEEDED" if code == 0 else "FAILED",
                      seconds=seconds, log_path=str(log_path), report=report)
    (runs_dir / f"{run_id}.json").write_text(json.dumps(asdict(run), indent=1, default=str))
    if code != 0:
        errors = [l for l in tail if "Error" in l or "Exception" in l] or list(tail)[-5:]
        raise JobFailed(f"{job_name} run {run_id} failed (exit {code}): {errors[-1] if errors else ''}",
                        log_path)
    return run
