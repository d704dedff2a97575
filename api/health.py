"""GET /healthz: the process is up and its database answers (the ALB health check)."""

from django.db import connection
from django.http import JsonResponse

HEALTH_PATH = "/healthz"


def healthz(request):
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as exc:  # any database failure makes the task unhealthy
        return JsonResponse({"status": "unhealthy", "database": str(exc)}, status=503)
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
