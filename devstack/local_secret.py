"""The local SECRET_KEY: drawn once into var/ (mode 0600, git-ignored) and read by every local process."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from django.core.management.utils import get_random_secret_key

SECRET_FILE_NAME = "local-secret-key"  # noqa: S105 (a file name, not a secret)


def local_secret_key(var_dir: Path) -> str:
    """The key in var_dir, written first if missing. Safe when processes start together (gunicorn's workers):
    each writes its own candidate and links it into place; the first link wins and everyone reads that one."""
    path = var_dir / SECRET_FILE_NAME
    if not path.exists():
        var_dir.mkdir(parents=True, exist_ok=True)
        candidate = path.with_name(f".{SECRET_FILE_NAME}.{os.getpid()}")
        fd = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "w") as out:
                out.write(get_random_secret_key() + "\n")
            with contextlib.suppress(FileExistsError):  # another process's key is in place: read that one
                os.link(candidate, path)  # atomic, and never replaces an existing key
        finally:
            candidate.unlink(missing_ok=True)
    key = path.read_text().strip()
    if not key:
        raise ValueError(f"{path} is empty: delete it and a new local key is drawn")
    return key
