"""What every part of the spec shares: the name pattern, the errors (every problem names
the file, the field and the fix) and the helpers that read YAML and collect problems."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")


class SpecError(ValueError):
    """One or more problems in the spec; `problems` lists each as file, field, message."""

    def __init__(self, problems: list[SpecProblem]):
        self.problems = list(problems)
        lines = [str(p) for p in self.problems]
        if len(lines) == 1:  # one problem, one line
            super().__init__(f"problem in the spec: {lines[0]}")
            return
        super().__init__(
            f"{len(lines)} problem(s) in the spec:\n" + "\n".join(f"  - {line}" for line in lines)
        )


@dataclass(frozen=True)
class SpecProblem:
    file: str
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.field}: {self.message}"


class SpecProblems:
    """Collects problems so a user sees all of them at once."""

    def __init__(self) -> None:
        self.items: list[SpecProblem] = []

    def add(self, file: str, field_: str, message: str) -> None:
        self.items.append(SpecProblem(file, field_, message))

    def raise_if_any(self) -> None:
        if self.items:
            raise SpecError(self.items)


def read_yaml(path: Path, rel: str, problems: SpecProblems) -> dict | None:
    import yaml  # only the spec loader needs PyYAML; jobs and Lambdas read compiled JSON

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "(file)"
        problems.add(rel, where, f"not valid YAML ({getattr(exc, 'problem', exc)}); fix the syntax")
        return None
    if not isinstance(data, dict):
        problems.add(rel, "(file)", "must be a YAML mapping (key: value lines) at the top level")
        return None
    return data


def check_keys(
    data: Mapping,
    allowed: tuple[str, ...],
    rel: str,
    where: str,
    problems: SpecProblems,
    what: str = "field",
) -> None:
    for key in data:
        if key not in allowed:
            problems.add(
                rel,
                f"{where}{key}" if where else str(key),
                f"unknown {what} {key!r}; allowed: {', '.join(allowed)}",
            )


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
