"""Are the synthesized CloudFormation templates the same as at another commit?

    python scripts/template_diff.py [--base REV] [--env dev --env prod]

Synthesizes the CDK app of REV (default: main's merge base, i.e. HEAD~1 if you pass
nothing better) in a temporary git worktree and of the working tree, then compares every
stack's template after replacing asset hashes (64 hex digits: the code bundles' hashes
change whenever the library's code does), and the compiled spec (spec.json) in each asset
byte for byte. Prints one line per stack and environment; exit 1 on any difference. A
refactor that must not change what is deployed shows "identical" everywhere."""

from __future__ import annotations

import argparse
import difflib
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
HASH = re.compile(r"[0-9a-f]{64}")
SHARED = ("node_modules", ".venv", ".jars")  # installed by `make setup`, not in git


def synth(checkout: Path, env: str, out: Path) -> Path:
    done = subprocess.run(
        ["npx", "cdk", "synth", "-c", f"env={env}", "--quiet", "-o", str(out)],
        cwd=checkout,
        capture_output=True,
        text=True,
        env={
            **os.environ,
            "PYTHONPATH": str(checkout),
            "PATH": f"{REPO / 'node_modules' / '.bin'}:{REPO / '.venv' / 'bin'}:{os.environ['PATH']}",
        },
    )
    if done.returncode:
        sys.exit(f"cdk synth failed in {checkout} (env {env}):\n{done.stderr[-3000:]}")
    return out


def normalized(template: Path) -> list[str]:
    text = HASH.sub("HASH", template.read_text())
    return json.dumps(json.loads(text), indent=1, sort_keys=True).splitlines()


def compiled_specs(assembly: Path) -> list[bytes]:
    return sorted(p.read_bytes() for p in assembly.glob("asset.*/spec.json"))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="HEAD~1", help="the commit to compare with")
    parser.add_argument("--env", action="append", help="dev and prod unless given")
    args = parser.parse_args(argv)
    envs = args.env or ["dev", "prod"]
    differences = 0
    with tempfile.TemporaryDirectory(prefix="template-diff-") as tmp:
        base = Path(tmp) / "base"
        subprocess.run(
            ["git", "worktree", "add", "--detach", "-q", str(base), args.base], cwd=REPO, check=True
        )
        try:
            for name in SHARED:
                if (REPO / name).exists():
                    (base / name).symlink_to(REPO / name)
            for env in envs:
                before = synth(base, env, Path(tmp) / f"before-{env}")
                after = synth(REPO, env, Path(tmp) / f"after-{env}")
                stacks = sorted(
                    {
                        p.name
                        for p in [*before.glob("*.template.json"), *after.glob("*.template.json")]
                    }
                )
                for stack in stacks:
                    old, new = before / stack, after / stack
                    if not (old.is_file() and new.is_file()):
                        print(f"{env} {stack}: only in {'after' if new.is_file() else 'before'}")
                        differences += 1
                        continue
                    diff = list(
                        difflib.unified_diff(normalized(old), normalized(new), lineterm="", n=1)
                    )
                    print(
                        f"{env} {stack}: {'identical' if not diff else f'{len(diff)} diff lines'}"
                    )
                    if diff:
                        print("\n".join(diff[:40]))
                        differences += 1
                same_spec = compiled_specs(before) == compiled_specs(after)
                print(
                    f"{env} compiled spec (spec.json in the assets): {'identical' if same_spec else 'DIFFERENT'}"
                )
                differences += not same_spec
        finally:
            subprocess.run(
                ["git", "worktree", "remove", "--force", str(base)], cwd=REPO, check=False
            )
    print(
        f"{'no differences' if not differences else f'{differences} difference(s)'} against {args.base}"
    )
    return 1 if differences else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
