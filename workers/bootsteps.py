"""Worker bootsteps: the polling heartbeat file lives exactly as long as the consumer."""

from __future__ import annotations

from celery import bootsteps

from workers.health import poll_heartbeat


class PollHeartbeatFile(bootsteps.StartStopStep):
    """A worker is healthy only after its first successful poll, and never once its consumer stops.
    (The channel touches the file: workers/sqs_transport.py.)"""

    requires = ("celery.worker.consumer.connection:Connection",)

    def start(self, parent) -> None:
        poll_heartbeat.clear()

    def stop(self, parent) -> None:
        poll_heartbeat.clear()

    shutdown = stop
