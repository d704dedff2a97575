"""The operations app: the queues page, its JSON, the DLQ replay from the page, and `manage.py queues`."""

from django.apps import AppConfig


class OpsConfig(AppConfig):
    name = "api.ops"
    label = "ops"
