"""Local development: the embedded SQS emulator (devstack/), SQLite unless DATABASE_URL, debug on."""

from __future__ import annotations

import os

from devstack.local_env import apply_local_defaults, var_dir
from devstack.local_secret import local_secret_key

# The same defaults `make run` gives its processes, so any manage.py command in a developer's shell
# talks to the local emulator.
apply_local_defaults()

from api.settings.base import *  # noqa: E402,F403

DEBUG = True
# Never a key in code: one drawn once into var/ (0600, git-ignored), so every process of the local stack (two
# gunicorn workers, manage.py) accepts the sessions the others signed.
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY") or local_secret_key(var_dir())
# whitenoise warns about a missing STATIC_ROOT; it stays empty until collectstatic (the app serves from the apps)
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # noqa: F405
