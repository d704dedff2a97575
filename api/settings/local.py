"""Local development: the embedded SQS emulator (devstack/), SQLite unless DATABASE_URL, debug on."""

from __future__ import annotations

import os

from django.core.management.utils import get_random_secret_key

from devstack.local_env import apply_local_defaults

# The same defaults `make run` gives its processes, so any manage.py command in a developer's shell
# talks to the local emulator.
apply_local_defaults()

from api.settings.base import *  # noqa: E402,F403

DEBUG = True
# Never a key in code: a random one per process is enough locally (nothing signed is shared).
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY") or get_random_secret_key()
# whitenoise warns about a missing STATIC_ROOT; it stays empty until collectstatic (the app serves from the apps)
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # noqa: F405
