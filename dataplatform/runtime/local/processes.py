"""The local platform's background processes (the moto server, the Spark driver): is one
alive, does it answer, stop it. One place, so they behave the same."""

from __future__ import annotations

import os
import signal
import time
import urllib.request


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def exited(pid: int) -> bool:
    try:  # our own child (tests): reap it, or a zombie would look alive
        reaped, _ = os.waitpid(pid, os.WNOHANG)
        if reaped:
            return True
    except ChildProcessError:
        pass  # started by an earlier dp command
    return not alive(pid)


def answers(url: str) -> bool:
    """Whether `url` answers 200 within a second."""
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


def stop(pid: int) -> None:
    """SIGTERM (the servers close what they write), then SIGKILL after 10 s."""
    os.kill(pid, signal.SIGTERM)
    for _ in range(100):
        if exited(pid):
            return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)
    exited(pid)
