"""Who holds a lease: this process as `hostname:pid`, the one owner string every lease table records."""

from __future__ import annotations

import os
import socket


def process_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"
