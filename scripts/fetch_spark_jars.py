"""Fetch the Spark S3 connector jars (hadoop-aws + AWS Java SDK bundle) for s3a://.

Maven Central is out of reach here, so the jars come from the PyPI package
`sagemaker-pyspark` (Apache-2.0), which carries them. It is downloaded, not installed:
it pins pyspark 3.3. Idempotent: jars already present with the right checksum are kept.

Usage: python scripts/fetch_spark_jars.py [DEST]   (default: .jars)
"""
from __future__ import annotations

import hashlib
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

PACKAGE = "sagemaker-pyspark==1.4.5"
JARS = ("hadoop-aws-3.3.1.jar", "aws-java-sdk-bundle-1.11.901.jar")
# Expected sha256 of each jar, so a changed upload is noticed instead of silently used.
CHECKSUMS = Path(__file__).with_name("spark_jars.sha256")


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def expected_checksums() -> dict[str, str]:
    sums = {}
    for line in CHECKSUMS.read_text().splitlines():
        if line.strip():
            digest, name = line.split()
            sums[name] = digest
    return sums


def main(dest: str = ".jars") -> int:
    dest_dir = Path(dest)
    expected = expected_checksums()
    missing = [name for name in JARS
               if not (dest_dir / name).is_file() or sha256(dest_dir / name) != expected[name]]
    if not missing:
        print(f"spark jars: up to date in {dest_dir}/")
        return 0
    dest_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        print(f"spark jars: downloading {PACKAGE} from PyPI (about 180 MB) ...", flush=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary",
                        ":all:", "-q", "-d", tmp, PACKAGE], check=True)
        archive = next(Path(tmp).glob("sagemaker_pyspark-*.tar.gz"))
        with tarfile.open(archive) as tar:
            for member in tar.getmembers():
                name = Path(member.name).name
                if name in missing and "/deps/jars/" in member.name:
                    source = tar.extractfile(member)
                    assert source is not None
                    target = dest_dir / name
                    target.write_bytes(source.read())
                    if sha256(target) != expected[name]:
                        target.unlink()
                        raise SystemExit(f"spark jars: checksum mismatch for {name}; "
                                         f"expected {expected[name]} (scripts/spark_jars.sha256)")
                    print(f"spark jars: {target}")
    still_missing = [n for n in missing if not (dest_dir / n).is_file()]
    if still_missing:
        raise SystemExit(f"spark jars: {PACKAGE} no longer carries {still_missing}")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
