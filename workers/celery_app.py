"""The Celery app, shared by the api and the workers; configured from Django settings (CELERY_*)."""

from __future__ import annotations

import os

from celery import Celery

# The local defaults; on ECS the task definition sets api.settings.production.
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "api.settings.local")

app = Celery("celery_sqs_reference", task_cls="workers.base_task:BaseTask")
# Every CELERY_* Django setting, built from the topology in workers/celery_config.py.
app.config_from_object("django.conf:settings", namespace="CELERY")
# Imports each installed Django app's tasks module (api/jobs/tasks.py, api/newsletter/tasks.py) once Django is ready.
app.autodiscover_tasks()

import workers.signals  # noqa: E402,F401  (connects the start-up checks and the unraisable hook)
from workers.bootsteps import (  # noqa: E402
    PollLivenessFile,
    TaskProtectionStep,
    VisibilityHeartbeatStep,
    WorkerRegistryStep,
)

app.steps["consumer"].add(PollLivenessFile)
app.steps["consumer"].add(VisibilityHeartbeatStep)
app.steps["consumer"].add(TaskProtectionStep)
app.steps["consumer"].add(WorkerRegistryStep)
