"""Production on ECS: everything from the environment, secrets injected from Secrets Manager or SSM."""

from __future__ import annotations

from api.settings.base import *  # noqa: F403
from api.settings.base import DATABASE_URL
from workers.env import EnvError, env_str

if not DATABASE_URL:
    raise EnvError(
        "DATABASE_URL (or DATABASE_HOST, DATABASE_PORT, DATABASE_NAME, DATABASE_USER, DATABASE_PASSWORD) is required "
        "in production (injected from Secrets Manager)"
    )
SECRET_KEY = env_str("DJANGO_SECRET_KEY")  # injected from Secrets Manager; required
DEBUG = False
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
