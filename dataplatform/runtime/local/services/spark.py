"""The local Spark behind Glue's job runs and EMR's steps: the platform's long-lived driver
(runtime/local/spark_service.py) pointed at this server, the deployed scripts and libraries
fetched from S3 as Glue and EMR fetch them.

Libraries (`--extra-py-files`, `--py-files`) are kept under the state folder by their
ETag, so the same library is one path, and the driver (whose fingerprint includes its
libraries) is reused until the library changes. Jobs run one at a time on the driver (a
lock from choosing the driver to the job's end, so that runs started together cannot
restart it under each other); a run past its deadline, or cancelled, stops the driver (a
Spark job cannot be stopped halfway in it), and the next run starts a new one.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from dataplatform.runtime.local import glue_job, spark_service
from dataplatform.runtime.local.server import ServerInfo


class LocalSpark:
    def __init__(self, server):
        self.server = server
        port = int(server.endpoint.rsplit(":", 1)[1])
        self.info = ServerInfo(pid=os.getpid(), port=port, started_at=time.time())
        self._lock = threading.Lock()

    def libraries(self, uris: str, region: str) -> list[Path]:
        """The s3:// zips of a comma-separated list, on local disk."""
        s3 = self.server.client("s3", region)
        found = []
        for uri in (u.strip() for u in uris.split(",") if u.strip()):
            if not uri.startswith("s3://"):
                raise ValueError(f"{uri}: libraries are read from s3:// locations")
            bucket, key = uri[len("s3://") :].split("/", 1)
            etag = s3.head_object(Bucket=bucket, Key=key)["ETag"].strip('"')
            target = self.server.folder("spark-lib", etag) / Path(key).name
            if not target.is_file():
                tmp = target.with_name(target.name + f".{threading.get_ident()}.tmp")
                s3.download_file(bucket, key, str(tmp))
                os.replace(tmp, target)
            found.append(target)
        return found

    def submit(
        self,
        *,
        script_uri: str,
        name: str,
        arguments: dict[str, str],
        run_id: str,
        region: str,
        libraries: list[Path],
        argv: list[str] | None = None,
        progress: Callable[[str], None],
        deadline: float | None = None,
    ) -> glue_job.LocalJobRun:
        """The script run on the driver with these arguments; JobFailed when it fails,
        TimeoutError past the deadline (time.monotonic()). One run at a time has the driver,
        from choosing it to the run's end: runs started together (a Parallel state's curates
        right after a library changed) would otherwise each restart the driver under the
        others' jobs. The deadline's timer starts once the run has the driver, so it can
        only stop its own run."""
        with self._lock:
            timed_out = threading.Event()
            timer = None
            if deadline is not None:

                def expire() -> None:
                    timed_out.set()
                    self.cancel()

                timer = threading.Timer(max(0.0, deadline - time.monotonic()), expire)
                timer.daemon = True
                timer.start()
            try:
                return glue_job.spark_submit(
                    self.server.client("s3", region),
                    script_uri=script_uri,
                    name=name,
                    arguments=arguments,
                    run_id=run_id,
                    script_argv=argv,
                    info=self.info,
                    region=region,
                    runs_dir=self.server.home / "runs",
                    library_zip=libraries[0] if libraries else None,
                    progress=progress,
                )
            except Exception:
                if timed_out.is_set():
                    raise TimeoutError(f"{name} ran past its timeout") from None
                raise
            finally:
                if timer is not None:
                    timer.cancel()

    def warm(self, region: str, libraries: list[Path]) -> None:
        """Start the driver for these libraries ahead of the first job."""
        with self._lock:
            glue_job.spark_driver(
                info=self.info, region=region, state_dir=self.server.home, library_zip=libraries[0]
            )

    def cancel(self) -> None:
        """Stop the driver (and the job it runs)."""
        spark_service.stop(self.server.home)
