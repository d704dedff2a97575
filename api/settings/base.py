"""Settings every environment shares; values come from environment variables (core/env.py)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import dj_database_url

from api.jobs.outbox_config import RelayConfig
from api.jobs.publish_budget import publish_budget
from api.log_format import logging_config
from core.claim_check_bucket import bucket_name as claim_check_bucket_name
from core.env import env_bool, env_float, env_int, env_list, env_str
from core.topology import get_topology
from workers.celery_config import (
    AHEAD_COALESCE_SECONDS,
    DELETE_BATCH_SECONDS,
    SOFT_SHUTDOWN_SECONDS,
    BrokerEnv,
    as_django_settings,
    build_celery_settings,
    configured_long_poll_seconds,
)

BASE_DIR = Path(__file__).resolve().parent.parent.parent

# --- Django ----------------------------------------------------------------------------------------
# https://docs.djangoproject.com/en/5.2/ref/settings/
DEBUG = env_bool("DJANGO_DEBUG", False)
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["localhost", "127.0.0.1"])
ROOT_URLCONF = "api.urls"
WSGI_APPLICATION = "api.wsgi.application"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
TIME_ZONE = "UTC"
LANGUAGE_CODE = "en-us"
STATIC_URL = "static/"
# Static files (the admin's CSS and JS) are served by the app itself through whitenoise: from STATIC_ROOT
# once `collectstatic` filled it (the image's build does), else straight from the apps (local, tests).
STATIC_ROOT = Path(env_str("DJANGO_STATIC_ROOT", str(BASE_DIR / "var" / "static")))
WHITENOISE_USE_FINDERS = True
# Production's storage (and the image build's collectstatic): compressed files named by content hash,
# listed in a manifest, so whitenoise lets browsers cache them for ever.
COLLECTED_STATIC_STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
X_FRAME_OPTIONS = "DENY"  # no page of this app is ever framed

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_celery_beat",
    "django_celery_results",
    "api.jobs",
    "api.newsletter",
    "api.ops",
    "workers",
]
MIDDLEWARE = [
    "api.health.HealthCheckMiddleware",  # first: the ALB health check's Host is the task's IP
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",  # right after SecurityMiddleware, as whitenoise documents
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]


# --- Database --------------------------------------------------------------------------------------
# PostgreSQL when DATABASE_URL is set (CI, production); SQLite otherwise (local).
def database_url_from_parts() -> str | None:
    """The URL from DATABASE_HOST/PORT/NAME/USER/PASSWORD, as ECS injects an RDS-generated secret's fields
    (infra/database.py); None without DATABASE_HOST."""
    host = env_str("DATABASE_HOST", None)
    if host is None:
        return None
    user, password = quote(env_str("DATABASE_USER"), safe=""), quote(env_str("DATABASE_PASSWORD"), safe="")
    return f"postgres://{user}:{password}@{host}:{env_int('DATABASE_PORT', 5432)}/{env_str('DATABASE_NAME')}"


DATABASE_URL = env_str("DATABASE_URL", None) or database_url_from_parts()
SQLITE_PATH = Path(env_str("SQLITE_PATH", str(BASE_DIR / "var" / "db.sqlite3")))


# A new PostgreSQL connection gives up after this many seconds: a black-holed database is then an
# OperationalError the worker pauses on (workers/dependency_errors.py), not a hang until the time limit.
DATABASE_CONNECT_TIMEOUT = env_int("DATABASE_CONNECT_TIMEOUT", 5)


def database_config(url: str | None) -> dict:
    if url:
        config = dj_database_url.parse(url, conn_max_age=60, conn_health_checks=True)
        if config["ENGINE"].endswith("postgresql"):
            config.setdefault("OPTIONS", {}).setdefault("connect_timeout", DATABASE_CONNECT_TIMEOUT)
        return config
    SQLITE_PATH.parent.mkdir(parents=True, exist_ok=True)
    # IMMEDIATE transactions and a busy timeout: the api, worker and beat write to one file.
    return {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": str(SQLITE_PATH),
        "OPTIONS": {"timeout": 20, "transaction_mode": "IMMEDIATE"},
    }


DATABASES = {"default": database_config(DATABASE_URL)}

# --- Celery on SQS ---------------------------------------------------------------------------------
# https://docs.celeryq.dev/en/stable/userguide/configuration.html ; every value is built from the
# queue topology (queues.yml) in workers/celery_config.py and checked at start-up.
QUEUE_TOPOLOGY = get_topology()
SQS_ENDPOINT_URL = env_str("SQS_ENDPOINT_URL", None)
SQS_BROKER = BrokerEnv(
    endpoint_url=SQS_ENDPOINT_URL,
    region=env_str("AWS_DEFAULT_REGION", None) or env_str("AWS_REGION", "us-east-1"),
    account_id=env_str("AWS_ACCOUNT_ID", None),
    queue_prefix=env_str("SQS_QUEUE_PREFIX", ""),
    queue_urls={key: url for key in QUEUE_TOPOLOGY.queues if (url := env_str(f"SQS_QUEUE_URL_{key.upper()}", None))},
    claim_check_bucket=claim_check_bucket_name(),  # CLAIM_CHECK_BUCKET: large task bodies (workers/claim_check.py)
)
# Off by default (fire-and-forget, the Job row carries the state); "django-db" stores results.
RESULT_BACKEND = env_str("RESULT_BACKEND", None)
# Seconds running tasks get after SIGTERM before the rest is handed back; checked below the ECS stopTimeout.
WORKER_SOFT_SHUTDOWN_SECONDS = env_int("WORKER_SOFT_SHUTDOWN_SECONDS", SOFT_SHUTDOWN_SECONDS)
# How the worker keeps up with short tasks (workers/transport/pacer.py): it fetches as soon as a task ends
# (off: kombu re-checks every polling_interval), receives ahead for a slot that frees while a receive is in
# flight (off: one receive per queue at a time) after waiting up to WORKER_RECEIVE_AHEAD_COALESCE_MS for other
# slots to free while that receive is out (0: at once), also for the busy slots predicted free when it comes back
# while the queue's tasks are shorter than its round trip (WORKER_RECEIVE_AHEAD_PREDICT; off: free slots only),
# and deletes acked messages in batches of up to 10 within this many seconds (0: one DeleteMessage per ack, as
# kombu does). Switchable for bench/ side-by-side runs.
WORKER_FETCH_WHEN_SLOT_FREES = env_bool("WORKER_FETCH_WHEN_SLOT_FREES", True)
WORKER_RECEIVE_AHEAD = env_bool("WORKER_RECEIVE_AHEAD", True)
WORKER_RECEIVE_AHEAD_PREDICT = env_bool("WORKER_RECEIVE_AHEAD_PREDICT", True)
WORKER_RECEIVE_AHEAD_COALESCE_MS = env_float("WORKER_RECEIVE_AHEAD_COALESCE_MS", AHEAD_COALESCE_SECONDS * 1000)
WORKER_DELETE_BATCH_SECONDS = env_float("WORKER_DELETE_BATCH_SECONDS", DELETE_BATCH_SECONDS)
# Each receive's long poll, 1-20 s. Leave it at 20 (SQS's longest: the fewest empty receives, which cost money);
# tests shorten it where a worker must turn "lost" sooner: the registry's bound follows the poll.
WORKER_LONG_POLL_SECONDS = configured_long_poll_seconds()
globals().update(
    as_django_settings(
        build_celery_settings(
            QUEUE_TOPOLOGY,
            SQS_BROKER,
            result_backend=RESULT_BACKEND,
            soft_shutdown_seconds=WORKER_SOFT_SHUTDOWN_SECONDS,
            fetch_when_slot_frees=WORKER_FETCH_WHEN_SLOT_FREES,
            delete_batch_seconds=WORKER_DELETE_BATCH_SECONDS,
            receive_ahead=WORKER_RECEIVE_AHEAD,
            receive_ahead_coalesce_seconds=WORKER_RECEIVE_AHEAD_COALESCE_MS / 1000,
            long_poll_seconds=WORKER_LONG_POLL_SECONDS,
            receive_ahead_predict=WORKER_RECEIVE_AHEAD_PREDICT,
        )
    )
)
DJANGO_CELERY_BEAT_TZ_AWARE = True
# The `fail` demo kind raises until this is true: "deploying the fix" before a DLQ replay.
DEMO_FAILURES_FIXED = env_bool("DEMO_FAILURES_FIXED", False)
# A message replayed this often stays in its DLQ (the replay Lambda reads the same variable).
DLQ_MAX_REPLAYS = env_int("DLQ_MAX_REPLAYS", 3)

# --- Publishing: the time budget and the outbox relay (api/jobs/outbox.py) -----------------------------
# A request waits on SQS at most PUBLISH_BUDGET_SECONDS; past it the Job stays pending for the relay. The
# budget must fit well inside gunicorn's worker timeout (bin/start-api passes API_TIMEOUT_SECONDS to it).
API_TIMEOUT_SECONDS = env_int("API_TIMEOUT_SECONDS", 30)
PUBLISH_BUDGET = publish_budget(env_float("PUBLISH_BUDGET_SECONDS", 5.0), server_timeout=API_TIMEOUT_SECONDS)
OUTBOX_RELAY = RelayConfig(
    sweep_seconds=env_float("OUTBOX_SWEEP_SECONDS", 2.0),
    sweep_max_seconds=env_float("OUTBOX_SWEEP_MAX_SECONDS", 60.0),
    retry_seconds=env_float("OUTBOX_RETRY_SECONDS", 2.0),
    retry_max_seconds=env_float("OUTBOX_RETRY_MAX_SECONDS", 300.0),
    batch=env_int("OUTBOX_BATCH", 100),
)
# After SQS failed a request's publish, the process's requests skip theirs for one budget (false: every
# request tries; bench/ compares the two).
PUBLISH_FAST_PATH_PAUSE = env_bool("PUBLISH_FAST_PATH_PAUSE", True)
# The relay's liveness file: touched after every sweep, working or failing; `manage.py outbox_relay --check` is
# the ECS health check. (OUTBOX_RELAY_HEARTBEAT_FILE, its earlier documented name, still works.)
OUTBOX_RELAY_LIVENESS_FILE = env_str(
    "OUTBOX_RELAY_LIVENESS_FILE",
    env_str("OUTBOX_RELAY_HEARTBEAT_FILE", "/tmp/outbox-relay-liveness"),  # noqa: S108
)

# --- Operations: the queues page and `manage.py queues` (api/ops) ------------------------------------
# Age of the oldest message and throughput are CloudWatch AWS/SQS metrics: on AWS its default endpoint;
# locally the SQS emulator (devstack/sqs_emulator.py) publishes and serves them at the SQS endpoint.
CLOUDWATCH_ENDPOINT_URL = env_str("CLOUDWATCH_ENDPOINT_URL", None)
OPS_REFRESH_SECONDS = env_int("OPS_REFRESH_SECONDS", 5)  # how often the page fetches new numbers
OPS_THROUGHPUT_MINUTES = env_int("OPS_THROUGHPUT_MINUTES", 15)  # the throughput chart's window
OPS_LATEST_JOBS = env_int("OPS_LATEST_JOBS", 15)


# --- Logging ---------------------------------------------------------------------------------------
# Plain text locally; JSON lines in production (api/settings/production.py), with task and job ids.
LOG_LEVEL = env_str("LOG_LEVEL", "INFO")
LOG_FORMAT = env_str("LOG_FORMAT", "plain")
LOGGING = logging_config(log_format=LOG_FORMAT, level=LOG_LEVEL)

# --- The jobs API's bearer tokens (api/jobs/auth.py) ------------------------------------------------
# Comma-separated; injected from Secrets Manager in production, where the api refuses to start without one
# (API_TOKENS_REQUIRED). Empty (local, tests): the jobs API is open, and says so in the log at start-up.
API_TOKENS = env_list("API_TOKENS", [])
API_TOKENS_REQUIRED = False
