"""Notes the code points to live in the repository (docs/): a clone has no ../shared/."""

from __future__ import annotations

import re
import subprocess

from dataplatform.paths import REPO_ROOT

OUTSIDE = re.compile(r"\.\./shared/|/work/shared")


def tracked_text_files():
    listed = subprocess.run(
        ["git", "ls-files"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    for name in listed:
        path = REPO_ROOT / name
        if path.suffix in (".py", ".md", ".toml", ".yaml", ".yml", ".sql", ".txt") or (
            path.name == "Makefile"
        ):
            yield name, path


def test_no_file_points_outside_the_repository():
    offenders = [
        f"{name}:{number}"
        for name, path in tracked_text_files()
        if path.is_file() and name != "tests/test_in_repo_references.py"
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1)
        if OUTSIDE.search(line)
    ]
    assert offenders == []


def test_the_docs_that_comments_point_to_exist():
    pointed = {
        match
        for _, path in tracked_text_files()
        if path.is_file()
        for match in re.findall(r"\bdocs/[a-z_-]+\.md", path.read_text(errors="replace"))
    }
    assert pointed, "no comment points to docs/ (the test would prove nothing)"
    assert sorted(p for p in pointed if not (REPO_ROOT / p).is_file()) == []
