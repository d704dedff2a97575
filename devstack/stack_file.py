"""var/local-stack.json: the endpoints a running `make run` chose, for manage.py commands in other shells."""

from __future__ import annotations

import contextlib
import json
import os
from datetime import UTC, datetime
from pathlib import Path

STACK_FILE_NAME = "local-stack.json"
# The variables a stack's file can fill in, by group: a group is taken from the file only when the shell sets
# none of its variables (an exported LOCAL_SQS_PORT or DATABASE_URL always wins).
SQS_VARIABLES = ("SQS_ENDPOINT_URL", "LOCAL_SQS_PORT")
DATABASE_VARIABLES = ("DATABASE_URL", "DATABASE_HOST", "SQLITE_PATH")


def write(var_dir: Path, *, sqs_endpoint: str, api_url: str, database_url: str | None, sqlite_path: Path) -> Path:
    """Record this process's stack (written whole, then renamed into place)."""
    var_dir.mkdir(parents=True, exist_ok=True)
    path = var_dir / STACK_FILE_NAME
    content = {
        "pid": os.getpid(),
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "sqs_endpoint": sqs_endpoint,
        "api_url": api_url,
        "database": database_url or f"sqlite:///{sqlite_path}",
        "env": {
            "SQS_ENDPOINT_URL": sqs_endpoint,
            "CLOUDWATCH_ENDPOINT_URL": sqs_endpoint,  # the emulator serves both
            **({"DATABASE_URL": database_url} if database_url else {"SQLITE_PATH": str(sqlite_path)}),
        },
    }
    partial = path.with_name(f".{STACK_FILE_NAME}.{os.getpid()}")
    partial.write_text(json.dumps(content, indent=2) + "\n")
    partial.replace(path)
    return path


def remove(var_dir: Path) -> None:
    """Remove the file if it is this process's (a newer stack may have replaced it)."""
    path = var_dir / STACK_FILE_NAME
    if (read(var_dir, alive_only=False) or {}).get("pid") == os.getpid():
        path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read(var_dir: Path, *, alive_only: bool = True) -> dict | None:
    """The running stack's record; None without one, or when its process is gone (a stack killed with -9)."""
    with contextlib.suppress(FileNotFoundError, json.JSONDecodeError):
        content = json.loads((var_dir / STACK_FILE_NAME).read_text())
        if isinstance(content, dict) and (not alive_only or _alive(int(content.get("pid", 0)) or -1)):
            return content
    return None


def apply(var_dir: Path, environ: dict | os._Environ = os.environ) -> dict | None:
    """Fill in the SQS endpoint and the database of a running stack, each unless the shell sets its own."""
    stack = read(var_dir)
    if stack is None:
        return None
    env = stack.get("env", {})
    for group in (SQS_VARIABLES, DATABASE_VARIABLES):
        if not any(environ.get(name) for name in group):
            for name, value in env.items():
                if name in group or (group is SQS_VARIABLES and name == "CLOUDWATCH_ENDPOINT_URL"):
                    environ.setdefault(name, value)
    return stack
