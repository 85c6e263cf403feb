"""File locks for what two `dp` commands must not do at once on one local platform. An
flock is the operating system's: it goes away with the process that held it (a killed
command leaves no stale lock)."""

from __future__ import annotations

import fcntl
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def exclusive(path: Path, *, busy: Callable[[], Exception] | None = None) -> Iterator[None]:
    """Hold the lock at `path` for the block. Waits for it, or with `busy` raises what
    `busy()` returns when another process holds it (as AWS refuses a second run)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (fcntl.LOCK_NB if busy else 0))
        except BlockingIOError:
            if busy is None:  # not non-blocking: flock waited, so this never happens
                raise
            raise busy() from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
