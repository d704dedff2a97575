"""Tests: a short-timeout topology, a moto server on a free port, a file-backed test database."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from devstack.processes import free_port

_ROOT = Path(__file__).resolve().parent.parent.parent


# An xdist worker inherits the environment of the pytest process that started it, with the port and the
# SQLite file that process chose: each worker (PYTEST_XDIST_WORKER) chooses its own, unless they were given.
_CHOOSER = os.environ.get("PYTEST_XDIST_WORKER", "main")
if os.environ.get("TEST_SETTINGS_CHOSEN_BY", _CHOOSER) != _CHOOSER:
    for _name in ("SQS_ENDPOINT_URL", "CLOUDWATCH_ENDPOINT_URL", "SQLITE_PATH"):
        os.environ.pop(_name, None)
if "SQS_ENDPOINT_URL" not in os.environ:
    os.environ["TEST_SETTINGS_CHOSEN_BY"] = _CHOOSER

# Set in the environment so worker subprocesses started by the tests inherit the same values.
os.environ.setdefault("QUEUE_TOPOLOGY", str(_ROOT / "tests" / "fixtures" / "queues.test.yml"))
os.environ.setdefault("SQS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
os.environ.setdefault("CLOUDWATCH_ENDPOINT_URL", os.environ["SQS_ENDPOINT_URL"])  # the emulator serves both
os.environ.setdefault("LOCAL_SQS_METRICS_SECONDS", "2")  # the emulator's metric period: seconds, not a minute
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("CLAIM_CHECK_BUCKET", "celery-sqs-test-claim-check")  # on the emulator (devstack/queues.py)
os.environ.setdefault("SQLITE_PATH", str(Path(tempfile.gettempdir()) / f"celery-sqs-test-{os.getpid()}.sqlite3"))

from api.settings.base import *  # noqa: E402,F403
from api.settings.base import DATABASES, SQLITE_PATH, STATIC_ROOT  # noqa: E402

SECRET_KEY = "test-only-not-secret"  # noqa: S105
DEBUG = False
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # A file, not :memory:, so worker subprocesses share the test database.
    DATABASES["default"]["TEST"] = {"NAME": str(SQLITE_PATH.with_name(SQLITE_PATH.stem + "-test.sqlite3"))}
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # whitenoise warns about a missing one; served from the apps
