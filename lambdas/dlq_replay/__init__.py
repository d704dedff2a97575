"""Celery-aware DLQ replay: decode, filter, transform and move messages back to their source queue."""
