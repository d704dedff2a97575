"""Celery app, tasks and worker behaviour shared by the api (producer) and the workers (consumers)."""
