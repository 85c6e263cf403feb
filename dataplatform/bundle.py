"""Builds the code bundles that ship to AWS: the Firehose transform Lambda (its handler,
the `dataplatform` library and the compiled spec) and the job code for Glue and EMR
(entry-point scripts plus the library as a zip for `--extra-py-files`).

The CDK stacks deploy these folders as assets; the local platform uploads the same
files to the same keys, so both run identical code. Output is deterministic (sorted
files, fixed zip timestamps) so asset hashes change only when content does.
"""

from __future__ import annotations

import gzip
import io
import os
import tarfile
import zipfile
from pathlib import Path

from dataplatform.paths import REPO_ROOT
from dataplatform.spec import Platform

LIBRARY_DIR = REPO_ROOT / "dataplatform"
COMPILED_SPEC_NAME = "spec.json"
JOB_CODE_FOLDERS = ("glue_jobs", "emr_steps")
TRAINING_DIR = REPO_ROOT / "training"
_FIXED_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


def _python_sources(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.py") if "__pycache__" not in p.parts)


def _write_if_changed(path: Path, data: bytes, scratch: Path) -> None:
    """Atomic (a file written in `scratch`, outside the staged folder so that asset hashing
    never sees it, then renamed over it): a reader, e.g. a Spark job of another `dp`
    command reading the library zip, sees the old bytes or the new, never half."""
    if path.is_file() and path.read_bytes() == data:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch.mkdir(parents=True, exist_ok=True)
    tmp = scratch / f"{path.name}.{os.getpid()}.{id(data)}.tmp"
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _remove_others(target: Path, kept: set[Path]) -> None:
    """Files of an earlier staging that this one did not write (removed one by one rather
    than the folder: another command may be reading the files that stay)."""
    for path in sorted(target.rglob("*"), reverse=True):
        if path.is_file() and path not in kept:
            path.unlink(missing_ok=True)


def library_zip_bytes(platform: Platform) -> bytes:
    """The `dataplatform` package with the compiled spec inside, as a deterministic zip."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for source in _python_sources(LIBRARY_DIR):
            info = zipfile.ZipInfo(
                str(Path("dataplatform") / source.relative_to(LIBRARY_DIR)), _FIXED_ZIP_TIME
            )
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, source.read_bytes())
        info = zipfile.ZipInfo(f"dataplatform/{COMPILED_SPEC_NAME}", _FIXED_ZIP_TIME)
        info.compress_type = zipfile.ZIP_DEFLATED
        zf.writestr(info, platform.to_json())
    return buffer.getvalue()


def stage_lambda(function: str, platform: Platform, out_root: Path) -> Path:
    """out_root/lambda/<function>/: the handler folder's modules, the library, spec.json."""
    source_dir = REPO_ROOT / "lambdas" / function
    if not source_dir.is_dir():
        raise FileNotFoundError(f"no Lambda source folder {source_dir}")
    target = out_root / "lambda" / function
    files = {
        target / source.relative_to(source_dir): source.read_bytes()
        for source in _python_sources(source_dir)
    }
    files.update(
        {
            target / "dataplatform" / source.relative_to(LIBRARY_DIR): source.read_bytes()
            for source in _python_sources(LIBRARY_DIR)
        }
    )
    files[target / COMPILED_SPEC_NAME] = platform.to_json().encode()
    _stage(target, files, out_root / ".scratch")
    return target


def _stage(target: Path, files: dict[Path, bytes], scratch: Path) -> None:
    """Make `target` hold exactly `files`, safely while another process stages or reads it."""
    for path, data in files.items():
        _write_if_changed(path, data, scratch)
    _remove_others(target, set(files))


def stage_job_code(platform: Platform, out_root: Path) -> Path:
    """out_root/job_code/: glue_jobs/*.py, emr_steps/*.py and lib/dataplatform.zip, laid out
    as they are under the artifacts bucket's code/ prefix (see layout.job_script_key)."""
    target = out_root / "job_code"
    files: dict[Path, bytes] = {}
    for folder in JOB_CODE_FOLDERS:
        source_dir = REPO_ROOT / folder
        if source_dir.is_dir():
            for source in _python_sources(source_dir):
                files[target / folder / source.relative_to(source_dir)] = source.read_bytes()
    files[target / "lib" / "dataplatform.zip"] = library_zip_bytes(platform)
    files[target / "training" / "sourcedir.tar.gz"] = training_source_bytes()
    _stage(target, files, out_root / ".scratch")
    return target


def training_source_bytes() -> bytes:
    """training/ as SageMaker script mode's sourcedir.tar.gz: the .py files and
    requirements.txt at the archive's root, deterministic (sorted, fixed times)."""
    files = _python_sources(TRAINING_DIR) + sorted(TRAINING_DIR.glob("requirements.txt"))
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as gz:
        with tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for source in sorted(files):
                data = source.read_bytes()
                info = tarfile.TarInfo(str(source.relative_to(TRAINING_DIR)))
                info.size, info.mtime, info.mode = len(data), 0, 0o644
                tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()
