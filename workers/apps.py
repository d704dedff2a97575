"""The workers Django app: holds the task execution records used for idempotency."""

from django.apps import AppConfig


class WorkersConfig(AppConfig):
    name = "workers"
    label = "workers"
    default_auto_field = "django.db.models.BigAutoField"
