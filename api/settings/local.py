"""Local development: the embedded SQS emulator (devstack/), SQLite unless DATABASE_URL, debug on."""

from __future__ import annotations

import os

from django.core.management.utils import get_random_secret_key

# The same defaults `make run` gives its processes (devstack/run.py), so any manage.py command in a
# developer's shell talks to the local emulator: dummy credentials it accepts, the `local` profile.
os.environ.setdefault("SQS_ENDPOINT_URL", "http://127.0.0.1:9324")
os.environ.setdefault("QUEUE_TOPOLOGY_PROFILE", "local")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("AWS_ACCESS_KEY_ID", "local")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "local")

from api.settings.base import *  # noqa: E402,F403

DEBUG = True
# Never a key in code: a random one per process is enough locally (nothing signed is shared).
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY") or get_random_secret_key()
