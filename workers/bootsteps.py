"""Worker bootsteps: the polling heartbeat file lives exactly as long as the consumer."""

from __future__ import annotations

from celery import bootsteps

from workers import delete_health
from workers.health import poll_heartbeat


class PollHeartbeatFile(bootsteps.StartStopStep):
    """A worker is healthy only after its first successful poll, and never once its consumer stops.
    (The channel touches the file: workers/transport/polls.py.)"""

    requires = ("celery.worker.consumer.connection:Connection",)

    def start(self, parent) -> None:
        delete_health.unhealthy_after()  # a bad WORKER_DELETE_FAILURE_SECONDS stops the worker here, not at an ack
        poll_heartbeat.clear()
        delete_health.clear()  # a new channel starts with no failed deletes

    def stop(self, parent) -> None:
        poll_heartbeat.clear()

    shutdown = stop


class VisibilityHeartbeatStep(bootsteps.StartStopStep):
    """Runs the visibility heartbeat (workers/visibility.py) while the consumer runs."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, parent, **kwargs):
        super().__init__(parent, **kwargs)
        self.heartbeat = None

    def start(self, parent) -> None:
        from celery.worker import state
        from django.conf import settings

        from workers.celery_config import heartbeat_client_config
        from workers.sqs_clients import new_sqs_client
        from workers.topology import get_topology
        from workers.visibility import VisibilityHeartbeat, heartbeat_interval

        if self.heartbeat is None:
            topology = get_topology()
            sqs = new_sqs_client(
                endpoint_url=settings.SQS_ENDPOINT_URL,
                region=settings.SQS_BROKER.region,
                config=heartbeat_client_config(heartbeat_interval(topology)),
            )
            self.heartbeat = VisibilityHeartbeat(
                sqs=sqs,
                topology=topology,
                held=lambda: [*state.active_requests, *state.reserved_requests],
            )
        self.heartbeat.start()

    def stop(self, parent) -> None:
        if self.heartbeat is not None:
            self.heartbeat.stop()

    shutdown = stop


class TaskProtectionStep(bootsteps.StartStopStep):
    """On ECS (ECS_AGENT_URI set), keeps the task protected from scale-in while the worker runs or holds tasks
    (workers/task_protection.py); elsewhere it does nothing."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, parent, **kwargs):
        super().__init__(parent, **kwargs)
        self.protection = None

    def start(self, parent) -> None:
        from celery.worker import state

        from workers.task_protection import ProtectionSettings, TaskProtection, agent_uri, holds_tasks

        settings = ProtectionSettings.from_env()  # checked on every worker, so a bad value fails before ECS
        uri = agent_uri()
        if uri is None:
            return
        if self.protection is None:
            self.protection = TaskProtection(
                uri=uri,
                busy=lambda: holds_tasks(state),
                settings=settings,
            )
        self.protection.start()

    def stop(self, parent) -> None:
        if self.protection is not None:
            self.protection.stop()

    shutdown = stop
