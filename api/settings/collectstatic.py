"""The image build's `manage.py collectstatic` (Dockerfile): production's static storage, nothing else needed.

Production settings require the database and secrets, which a build has not got; collecting needs only
the installed apps and the storage, and must write the manifest production reads.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

# The base settings build every queue's URL and pick a database at import; collecting touches neither.
os.environ.setdefault("AWS_ACCOUNT_ID", "000000000000")
# Django's start-up checks want the claim-check bucket named (workers/startup_checks.py); nothing is stored.
os.environ.setdefault("CLAIM_CHECK_BUCKET", "collectstatic-unused")
os.environ.setdefault("SQLITE_PATH", str(Path(tempfile.gettempdir()) / "collectstatic-unused.sqlite3"))

from api.settings.base import *  # noqa: E402,F403
from api.settings.base import COLLECTED_STATIC_STORAGES  # noqa: E402

SECRET_KEY = "collectstatic-only-signs-nothing"  # noqa: S105  (the build signs nothing; never used at run time)
STORAGES = COLLECTED_STATIC_STORAGES
