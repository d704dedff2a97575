"""Start child processes in their own process group and stop them by PID, always."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

REPO_ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def venv_path() -> str:
    """PATH with this interpreter's bin directory first, so the bin/start-* scripts run the project's venv."""
    return f"{os.path.dirname(sys.executable)}{os.pathsep}{os.environ.get('PATH', '')}"


def children(pid: int) -> list[int]:
    """The PIDs of a process's direct children (a worker's pool processes)."""
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False).stdout
    return [int(p) for p in out.split()]


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def start(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    stdout: IO | int | None = None,
    cwd: Path = REPO_ROOT,
) -> subprocess.Popen:
    """Start argv as the leader of a new process group, so stop() reaches its children too."""
    return subprocess.Popen(
        list(argv),
        cwd=cwd,
        env={**os.environ, **(env or {})},
        stdout=stdout,
        stderr=subprocess.STDOUT if stdout is not None else None,
        start_new_session=True,
    )


def signal_group(proc: subprocess.Popen, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)


def stop(proc: subprocess.Popen, *, grace: float = 10.0, first: int = signal.SIGTERM) -> int | None:
    """Send `first` to the process group, wait up to `grace` s, then SIGKILL the group."""
    if proc.poll() is None:
        signal_group(proc, first)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace)
    signal_group(proc, signal.SIGKILL)  # leftover grandchildren (pool processes) too
    try:
        return proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        return None


def wait_for(predicate, *, timeout: float, interval: float = 0.1, what: str = "condition"):
    """Poll predicate() until it returns a truthy value or timeout expires (then TimeoutError)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)
