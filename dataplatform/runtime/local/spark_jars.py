"""The JVM artifacts local Spark needs for s3a:// (hadoop-aws and its AWS SDK, Spark's
cloud committer binding): declared by their Maven coordinates in scripts/spark-jars.pom.xml,
fetched by `make setup` into .jars/ and pinned by scripts/spark_jars.sha256, whose names
are the list used here. Beside them, the local platform's own Spark extension (its commit
protocol and its file:// file system, dataplatform/runtime/local/jvm/), which `make setup`
compiles into .jars/ too."""

from __future__ import annotations

import os
from pathlib import Path

from dataplatform.paths import REPO_ROOT

JARS_DIR = REPO_ROOT / ".jars"
CHECKSUMS = REPO_ROOT / "scripts" / "spark_jars.sha256"
EXTENSION_JAR = "dataplatform-local-spark.jar"
# Spark SQL's setting for it: see ReplacePartitionsCommitProtocol.java for why.
COMMIT_PROTOCOL = "dataplatform.local.ReplacePartitionsCommitProtocol"
# Hadoop's file:// without a forked chmod or ls per file: see NioRawLocalFileSystem.java.
LOCAL_FILE_SYSTEM = "dataplatform.local.NioLocalFileSystem"


def jar_names() -> list[str]:
    return [
        line.split()[1]
        for line in CHECKSUMS.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]


def extension_jar(jars_dir: Path = JARS_DIR) -> Path:
    return jars_dir / EXTENSION_JAR


def maven_jar_paths(jars_dir: Path = JARS_DIR) -> list[Path]:
    return _present([jars_dir / name for name in jar_names()])


def jar_paths(jars_dir: Path = JARS_DIR) -> list[Path]:
    """Every jar local Spark loads, in .jars/; a clear error (run `make setup`) when one is
    missing."""
    return _present([*(jars_dir / name for name in jar_names()), extension_jar(jars_dir)])


def _present(paths: list[Path]) -> list[Path]:
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(
            f"Spark's S3 connector jars {missing} are not in {paths[0].parent}; "
            "run `make setup` (it fetches them from Maven Central and builds the local "
            "platform's own from dataplatform/runtime/local/jvm/)"
        )
    return paths


def driver_class_path_conf(jars: list[Path]) -> dict[str, str]:
    """The jars on the driver's class path from the JVM's start (local mode: the executors
    are in the driver's JVM). `spark.jars` would load them only once the SparkContext
    starts, after spark-submit has used file:// (whose file system is in the extension
    jar), and would copy them, 280 MB, into the executor's folder on every start."""
    return {"spark.driver.extraClassPath": os.pathsep.join(str(j) for j in jars)}
