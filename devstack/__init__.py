"""The local stack: SQS emulator, queues from the topology, and the api/worker/beat processes."""
