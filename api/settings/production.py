"""Production on ECS: everything from the environment, secrets injected from Secrets Manager or SSM.

HTTPS is assumed (`manage.py check --deploy` passes with no warning: tests/unit/api/test_production_settings.py):
the ALB terminates TLS and says so in X-Forwarded-Proto. DJANGO_HTTP_ONLY=true (infra sets it when the ALB
has no certificate) is a first look over plain HTTP: no Secure cookies, no redirect, no HSTS, and a warning
at start-up (api/deploy_mode.py).
"""

from __future__ import annotations

from api.log_format import logging_config
from api.settings.base import *  # noqa: F403
from api.settings.base import COLLECTED_STATIC_STORAGES, DATABASE_URL, LOG_LEVEL
from core.env import EnvError, env_bool, env_int, env_str

if not DATABASE_URL:
    raise EnvError(
        "DATABASE_URL (or DATABASE_HOST, DATABASE_PORT, DATABASE_NAME, DATABASE_USER, DATABASE_PASSWORD) is required "
        "in production (injected from Secrets Manager)"
    )
# The api refuses to start without a token (api/wsgi.py); workers, beat and migrations need none.
API_TOKENS_REQUIRED = True
SECRET_KEY = env_str("DJANGO_SECRET_KEY")  # injected from Secrets Manager; required
DEBUG = False

# One JSON object per line (CloudWatch Logs Insights reads the fields), like the Lambdas' logs.
LOG_FORMAT = env_str("LOG_FORMAT", "json")
LOGGING = logging_config(log_format=LOG_FORMAT, level=LOG_LEVEL)

# Static files: collected into STATIC_ROOT when the image is built (Dockerfile, api/settings/collectstatic.py).
WHITENOISE_USE_FINDERS = False
STORAGES = COLLECTED_STATIC_STORAGES

# --- HTTPS ------------------------------------------------------------------------------------------
# The ALB speaks HTTP to the task and sets X-Forwarded-Proto; only the ALB reaches the task.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
HTTP_ONLY = env_bool("DJANGO_HTTP_ONLY", False)
if HTTP_ONLY:
    # Over plain HTTP a browser never sends a Secure cookie back: the admin login would fail silently.
    SESSION_COOKIE_SECURE = False
    CSRF_COOKIE_SECURE = False
    SECURE_SSL_REDIRECT = False
    SECURE_HSTS_SECONDS = 0
else:
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_SSL_REDIRECT = True  # /healthz answers before this (api.health.HealthCheckMiddleware comes first)
    SECURE_HSTS_SECONDS = env_int("DJANGO_HSTS_SECONDS", 31_536_000)  # a year, as Django's check asks
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_HSTS_INCLUDE_SUBDOMAINS", True)
    # Preloading is a request to the browsers' built-in lists that takes months to undo: a domain owner's
    # decision (DJANGO_HSTS_PRELOAD=true), not a default. Without it, Django's reminder W021 is silenced.
    SECURE_HSTS_PRELOAD = env_bool("DJANGO_HSTS_PRELOAD", False)
    if not SECURE_HSTS_PRELOAD:
        SILENCED_SYSTEM_CHECKS = ["security.W021"]
