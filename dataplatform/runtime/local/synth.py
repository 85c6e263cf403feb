"""The environment's CDK app synthesized for the local platform, as `cdk synth` would for
the local account: the cloud assembly (manifest.json, one template per stack, the staged
assets) that `dp local up` applies (runtime/local/deploy/).

Synthesis runs in a child process (jsii starts a Node.js runtime per process, and the
caller may already hold one, as the test session does) and is cached under
build/synth/<env>-<hash>/, the hash covering the spec as loaded, the account, and every
file of the code the stacks and their assets are made from: a second `dp local up` with
nothing changed does not synthesize again.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

from dataplatform.paths import REPO_ROOT
from dataplatform.spec import Platform

CACHE_DIR = REPO_ROOT / "build" / "synth"
# what the templates and their assets are made from
CODE_FOLDERS = ("stacks", "dataplatform", "lambdas", "glue_jobs", "emr_steps", "training")
CODE_FILES = ("cdk.json", "app.py")
SYNTH_TIMEOUT_S = 900
KEEP_PER_ENV = 3


def code_digest() -> str:
    """One digest of every source file the synthesized assembly depends on."""
    digest = hashlib.sha256()
    paths = [REPO_ROOT / f for f in CODE_FILES]
    for folder in CODE_FOLDERS:
        root = REPO_ROOT / folder
        paths += sorted(
            p
            for p in root.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".pyc",)
        )
    for path in paths:
        if path.is_file():
            digest.update(str(path.relative_to(REPO_ROOT)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def assembly_dir(platform: Platform, env: str, account: str) -> Path:
    key = hashlib.sha256(
        pickle.dumps((platform, env, account), protocol=4) + code_digest().encode()
    ).hexdigest()[:16]
    return CACHE_DIR / f"{env}-{key}"


def synthesize(platform: Platform, env: str, account: str) -> Path:
    """The cloud assembly's folder (synthesized now unless cached). Raises RuntimeError with
    the synthesis' own message when the app does not synthesize."""
    from dataplatform.runtime.local import locks

    target = assembly_dir(platform, env, account)
    if (target / "manifest.json").is_file():
        return target
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with locks.exclusive(CACHE_DIR / ".lock"):
        if (target / "manifest.json").is_file():  # another process made it meanwhile
            return target
        staging = target.with_name(target.name + f".staging-{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        done = subprocess.run(
            [sys.executable, "-m", "dataplatform.runtime.local.synth", str(staging), env, account],
            input=pickle.dumps(platform),
            capture_output=True,
            cwd=REPO_ROOT,
            timeout=SYNTH_TIMEOUT_S,
        )
        if done.returncode != 0:
            shutil.rmtree(staging, ignore_errors=True)
            message = done.stderr.decode(errors="replace").strip().splitlines()
            raise RuntimeError(
                f"the CDK app of environment {env!r} does not synthesize: "
                + "\n".join(message[-20:])
            )
        staging.rename(target)
        # keep the newest few assemblies per environment (a spec variant and back again)
        kept = sorted(
            (p for p in CACHE_DIR.glob(f"{env}-*") if ".staging-" not in p.name),
            key=lambda p: p.stat().st_mtime,
            reverse=True,
        )
        for old in kept[KEEP_PER_ENV:]:
            shutil.rmtree(old, ignore_errors=True)
    return target


def _synthesize_here(outdir: Path, env: str, account: str, platform: Platform) -> None:
    import aws_cdk.cloud_assembly_schema  # noqa: F401 (jsii resolves the messages' types)
    from aws_cdk import App

    from stacks.platform import build_platform, cdk_json_context

    app = App(outdir=str(outdir), context=cdk_json_context())
    build_platform(app, platform, env_name=env, account=account, destroy_data=False)
    app.synth()


if __name__ == "__main__":
    _synthesize_here(
        Path(sys.argv[1]), sys.argv[2], sys.argv[3], pickle.loads(sys.stdin.buffer.read())
    )
