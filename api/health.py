"""GET /healthz: the process is up and its database answers (the ALB health check)."""

import logging

from django.db import connection
from django.http import JsonResponse

HEALTH_PATH = "/healthz"
logger = logging.getLogger(__name__)


def healthz(request):
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception:  # any database failure makes the task unhealthy
        # The detail goes to the log, never to the internet: error text names hosts, users and databases.
        logger.exception("healthz: the database did not answer SELECT 1")
        return JsonResponse({"status": "unhealthy"}, status=503)
    return JsonResponse({"status": "ok"})


class HealthCheckMiddleware:
    """Answers /healthz before anything reads the Host header: the ALB's health check sends the task's
    private IP as Host, which ALLOWED_HOSTS (the public name) rightly refuses for every other path."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path == HEALTH_PATH and request.method in ("GET", "HEAD"):
            return healthz(request)
        return self.get_response(request)
