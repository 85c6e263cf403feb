"""Build the local platform's Spark extension (dataplatform/runtime/local/jvm/*.java: the
commit protocol that overwrites partitions through S3A's staging committer) into one jar,
with the JDK's javac, against the Spark that pyspark bundles and the jars of .jars/.

It is our own source, compiled here, so there is nothing to download or checksum; the jar's
bytes depend only on the sources and the compiler (fixed timestamps in the zip).

Usage: python scripts/build_spark_extension.py [DEST_JAR]
       (default: .jars/dataplatform-local-spark.jar)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from dataplatform.runtime.local import spark_jars  # noqa: E402

SOURCES = REPO / "dataplatform" / "runtime" / "local" / "jvm"
# Spark 3.5 runs on Java 8, 11 and 17; the classes must load on whichever runs pyspark.
RELEASE = "8"
ZIP_TIME = (2024, 1, 1, 0, 0, 0)


def javac() -> str:
    java_home = os.environ.get("JAVA_HOME")
    candidates = [Path(java_home) / "bin" / "javac"] if java_home else []
    found = shutil.which("javac")
    candidates += [Path(found)] if found else []
    for candidate in candidates:
        if candidate.is_file():
            return str(candidate)
    raise SystemExit(
        "javac not found: the local platform's Spark extension is compiled from "
        f"{SOURCES.relative_to(REPO)}/ with a JDK (8 or later; 17 is what pyspark 3.5 runs "
        "on here). Install one (Debian: openjdk-17-jdk-headless) or set JAVA_HOME."
    )


def classpath() -> str:
    import pyspark

    pyspark_jars = Path(pyspark.__file__).parent / "jars"
    maven_jars = spark_jars.maven_jar_paths()
    return os.pathsep.join([str(pyspark_jars / "*"), *map(str, maven_jars)])


def build(dest: Path) -> None:
    sources = sorted(SOURCES.glob("*.java"))
    with tempfile.TemporaryDirectory() as work:
        classes = Path(work) / "classes"
        classes.mkdir()
        command = [javac(), "--release", RELEASE, "-Xlint:-options", "-cp", classpath(), "-d"]
        if subprocess.run([*command, str(classes), *map(str, sources)]).returncode != 0:
            raise SystemExit(f"javac failed on {SOURCES.relative_to(REPO)}/ (its errors above)")
        dest.parent.mkdir(parents=True, exist_ok=True)
        partial = dest.with_suffix(".jar.partial")
        with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as jar:
            manifest = zipfile.ZipInfo("META-INF/MANIFEST.MF", ZIP_TIME)
            jar.writestr(manifest, "Manifest-Version: 1.0\r\nCreated-By: dataplatform\r\n\r\n")
            for path in sorted(classes.rglob("*.class")):
                info = zipfile.ZipInfo(path.relative_to(classes).as_posix(), ZIP_TIME)
                jar.writestr(info, path.read_bytes(), zipfile.ZIP_DEFLATED)
        partial.replace(dest)
    print(f"spark extension: built {dest.relative_to(REPO)} from {len(sources)} source(s)")


if __name__ == "__main__":
    build(Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else spark_jars.extension_jar())
