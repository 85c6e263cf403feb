"""The JVM artifacts local Spark needs for s3a:// (hadoop-aws and its AWS SDK, Spark's
cloud committer binding): declared by their Maven coordinates in scripts/spark-jars.pom.xml,
fetched by `make setup` into .jars/ and pinned by scripts/spark_jars.sha256, whose names
are the list used here."""

from __future__ import annotations

from pathlib import Path

from dataplatform.paths import REPO_ROOT

JARS_DIR = REPO_ROOT / ".jars"
CHECKSUMS = REPO_ROOT / "scripts" / "spark_jars.sha256"


def jar_names() -> list[str]:
    return [
        line.split()[1]
        for line in CHECKSUMS.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]


def jar_paths(jars_dir: Path = JARS_DIR) -> list[Path]:
    """The jars, in .jars/; a clear error (run `make setup`) when one is missing."""
    paths = [jars_dir / name for name in jar_names()]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(
            f"Spark's S3 connector jars {missing} are not in {jars_dir}; "
            "run `make setup` (it fetches them from Maven Central)"
        )
    return paths
