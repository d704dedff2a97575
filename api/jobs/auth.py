"""Bearer-token authentication of the jobs API: `Authorization: Bearer <token>`, one of settings.API_TOKENS.

Tokens come from Secrets Manager in production (infra/secrets.py), where the api does not start without one.
With none configured (local settings, tests) the API is open, and the log says so at start-up (warn_if_open).
"""

from __future__ import annotations

import hmac
import logging
from functools import wraps

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, JsonResponse

logger = logging.getLogger("api.jobs.auth")

OPEN_WARNING = "API_TOKENS is empty: the jobs API accepts requests without a token (local development only)"


def _token_of(request: HttpRequest) -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def token_is_valid(token: str, tokens: list[str]) -> bool:
    """Compared with every configured token in constant time: how far a guess matches is never timed."""
    given = token.encode()
    matches = [hmac.compare_digest(given, known.encode()) for known in tokens]
    return any(matches)


def _unauthorized(message: str) -> JsonResponse:
    response = JsonResponse({"error": message}, status=401)
    response["WWW-Authenticate"] = 'Bearer realm="jobs"'
    return response


def token_required(view):
    """401 in JSON unless the request carries one of settings.API_TOKENS (none configured: open)."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs):
        tokens = settings.API_TOKENS
        if tokens:
            token = _token_of(request)
            if token is None:
                return _unauthorized("authentication required: send `Authorization: Bearer <token>`")
            if not token_is_valid(token, tokens):
                return _unauthorized("invalid token")
        return view(request, *args, **kwargs)

    return wrapper


def warn_if_open() -> bool:
    """At the api's start-up: refuses to serve without a token where one is required (production), else logs
    OPEN_WARNING when no token is configured; True if it did."""
    if not settings.API_TOKENS:
        if settings.API_TOKENS_REQUIRED:
            raise ImproperlyConfigured(
                "API_TOKENS is required by the api in production (the jobs API's bearer tokens, injected from "
                "Secrets Manager: infra/secrets.py)"
            )
        logger.warning(OPEN_WARNING)
        return True
    return False
