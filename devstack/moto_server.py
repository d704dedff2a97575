"""Run the SQS emulator (moto's server plus AWS/SQS metrics, devstack/sqs_emulator.py) on 127.0.0.1 as a child."""

from __future__ import annotations

import subprocess
import sys
import urllib.error
import urllib.request
from typing import IO

from devstack import processes


def start_moto_server(port: int, *, stdout: IO | int | None = subprocess.DEVNULL) -> subprocess.Popen:
    return processes.start([sys.executable, "-m", "devstack.sqs_emulator", "-p", str(port)], stdout=stdout)


def is_up(endpoint_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{endpoint_url}/moto-api/", timeout=1):
            return True
    except (urllib.error.URLError, OSError):
        return False


def wait_until_up(endpoint_url: str, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    def ready() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"moto server exited with code {proc.returncode}")
        return is_up(endpoint_url)

    processes.wait_for(ready, timeout=timeout, what=f"moto server at {endpoint_url}")


def reset(endpoint_url: str) -> None:
    """Forget every queue and message (between tests)."""
    request = urllib.request.Request(f"{endpoint_url}/moto-api/reset", method="POST")
    with urllib.request.urlopen(request, timeout=10):
        pass
