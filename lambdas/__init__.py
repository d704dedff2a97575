"""DLQ Lambdas: Celery-aware replay (dlq_replay) and alerts (dlq_alert); both read the queue topology."""
