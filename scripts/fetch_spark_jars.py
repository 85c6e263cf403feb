"""Fetch the JVM artifacts local Spark needs for s3a:// (scripts/spark-jars.pom.xml) from
Maven Central with Maven itself, into .jars/, and check each against
scripts/spark_jars.sha256.

    mvn -C dependency:copy-dependencies -DexcludeTransitive=true -DoutputDirectory=.jars

`-C` makes Maven fail on a jar whose checksum differs from the repository's; the sha256
file then pins the exact bytes, so a changed upload is noticed instead of silently used.
Maven keeps its own cache (~/.m2), so a second clone on the same machine copies, not
downloads. Idempotent: when every jar is present with the right checksum, nothing runs.

Usage: python scripts/fetch_spark_jars.py [DEST]   (default: .jars)
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
POM = HERE / "spark-jars.pom.xml"
CHECKSUMS = HERE / "spark_jars.sha256"
# Pinned, so the copy does not depend on the Maven version's default plugin.
DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def expected_checksums() -> dict[str, str]:
    sums = {}
    for line in CHECKSUMS.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            digest, name = line.split()
            sums[name] = digest
    return sums


def stale(dest: Path, expected: dict[str, str]) -> list[str]:
    return [
        name
        for name, digest in expected.items()
        if not (dest / name).is_file() or sha256(dest / name) != digest
    ]


def main(dest: str = ".jars") -> int:
    dest_dir = Path(dest).resolve()
    expected = expected_checksums()
    if not stale(dest_dir, expected):
        print(f"spark jars: up to date in {dest}/")
        return 0
    if shutil.which("mvn") is None:
        raise SystemExit(
            "spark jars: Maven (`mvn`) is not on PATH; install it "
            "(Debian: apt-get install maven) and run `make setup` again"
        )
    dest_dir.mkdir(parents=True, exist_ok=True)
    print(
        f"spark jars: {', '.join(expected)} from Maven Central (about 390 MB the first time) ...",
        flush=True,
    )
    maven = subprocess.run(
        [
            "mvn",
            "-B",
            "-q",
            "-C",
            "-f",
            str(POM),
            f"{DEPENDENCY_PLUGIN}:copy-dependencies",
            "-DexcludeTransitive=true",
            f"-DoutputDirectory={dest_dir}",
        ],
        capture_output=True,
        text=True,
    )
    if maven.returncode != 0:
        raise SystemExit(
            f"spark jars: mvn failed (exit {maven.returncode}):\n"
            f"{maven.stdout[-3000:]}{maven.stderr[-3000:]}"
        )
    bad = stale(dest_dir, expected)
    if bad:
        for name in bad:
            (dest_dir / name).unlink(missing_ok=True)
        raise SystemExit(
            f"spark jars: {bad} missing or with another checksum than "
            f"scripts/spark_jars.sha256; if the POM changed on purpose, update the file"
        )
    for old in dest_dir.glob("*.jar"):
        # an earlier pin: never on a classpath, only disk (the platform's own jar, built
        # from source into the same folder, stays)
        if old.name not in expected and not old.name.startswith("dataplatform-"):
            old.unlink()
    for name in expected:
        print(f"spark jars: {dest}/{name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
