"""WSGI entry point for gunicorn."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "api.settings.local")
application = get_wsgi_application()

from api.deploy_mode import warn_if_http_only  # noqa: E402  (after Django is set up)
from api.jobs.auth import warn_if_open  # noqa: E402

warn_if_http_only()
warn_if_open()
