"""Small state files another process reads at any moment (liveness, pause, health): replaced whole, never rewritten
in place."""

from __future__ import annotations

import os
from pathlib import Path


def write_atomically(path: Path, text: str) -> None:
    """Write `text` beside `path` and rename it over `path`: a reader sees the old content or the new, never the empty
    file a rewrite in place shows between its truncate and its write. Raises OSError as a write would."""
    staging = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        staging.write_text(text)
        os.replace(staging, path)
    except OSError:
        staging.unlink(missing_ok=True)
        raise
