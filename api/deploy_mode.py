"""The start-up warning of the production settings' HTTP-only mode (DJANGO_HTTP_ONLY)."""

from __future__ import annotations

import logging

from django.conf import settings

logger = logging.getLogger("api.deploy_mode")

HTTP_ONLY_WARNING = (
    "DJANGO_HTTP_ONLY is on: serving over plain HTTP (no Secure cookies, no HTTPS redirect, no HSTS). "
    "Passwords and session cookies cross the network in clear text: for a first look only. Give the stack "
    "a certificate (context certificateArn) and this mode goes away."
)


def warn_if_http_only() -> bool:
    """Logs HTTP_ONLY_WARNING when the settings say HTTP_ONLY; True if it did."""
    if getattr(settings, "HTTP_ONLY", False):
        logger.warning(HTTP_ONLY_WARNING)
        return True
    return False
