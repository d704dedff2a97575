"""What every part shares and none owns: the queue topology, the envelope, the environment, SQS helpers."""
