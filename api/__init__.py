"""The Django project: the producer that stores Jobs and publishes their tasks to SQS."""

# Load the Celery app with Django so shared_task binds to it (Celery's Django example).
from workers.celery_app import app as celery_app

__all__ = ("celery_app",)
