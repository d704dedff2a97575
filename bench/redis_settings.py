"""Django settings for the Celery-on-Redis comparison: the project's settings, on Celery's Redis transport."""

from __future__ import annotations

import os

from api.settings.local import *  # noqa: F403
from api.settings.local import CELERY_BROKER_TRANSPORT_OPTIONS

CELERY_BROKER_URL = os.environ["BENCH_REDIS_URL"]
CELERY_BROKER_TRANSPORT = "redis"
# Redis keeps unacked messages in a hash and restores them after this; longer than any benchmark.
CELERY_BROKER_TRANSPORT_OPTIONS = {**CELERY_BROKER_TRANSPORT_OPTIONS, "visibility_timeout": 3600}
