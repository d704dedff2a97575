"""What every part shares and none owns: the queue topology, the Celery envelope, the environment, SQS and DLQ helpers."""
