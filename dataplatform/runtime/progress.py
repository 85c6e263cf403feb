"""How long operations report what they are doing: a `Progress` callback that takes one
line (the `dp` command shows it in its status bar; the Python API may pass none)."""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[str], None]


class Notice(str):
    """A progress line the user should read whole and keep, because it says something was
    done for them that costs or lasts (an EMR cluster started): `dp` prints it above its
    status bar, where the ordinary lines replace each other."""


def say(progress: Progress | None, line: str) -> None:
    """`line` to `progress`, if there is one."""
    if progress is not None:
        progress(line)
