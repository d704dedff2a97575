"""Worker bootsteps: the liveness file lives exactly as long as the consumer; the visibility heartbeat, the
worker registry and the scale-in protection run while it runs."""

from __future__ import annotations

from celery import bootsteps

from workers import delete_health
from workers.health import poll_liveness


class PollLivenessFile(bootsteps.StartStopStep):
    """A worker is healthy only after its first successful poll, and never once its consumer stops.
    (The channel touches the file: workers/transport/polls.py.)"""

    requires = ("celery.worker.consumer.connection:Connection",)

    def start(self, parent) -> None:
        delete_health.unhealthy_after()  # a bad WORKER_DELETE_FAILURE_SECONDS stops the worker here, not at an ack
        poll_liveness.clear()
        delete_health.clear()  # a new channel starts with no failed deletes

    def stop(self, parent) -> None:
        poll_liveness.clear()

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

        from core.topology import get_topology
        from workers.celery_config import heartbeat_client_config
        from workers.sqs_clients import new_sqs_client
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


class WorkerRegistryStep(bootsteps.StartStopStep):
    """Keeps this worker's registry row (workers/registry/) renewed from its liveness ticks (and showing the
    tasks that start and end), at most one write per WORKER_REGISTRY_SECONDS, and marks it stopped at a clean
    shutdown (worker_shutdown: a consumer restart keeps the row alive)."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, parent, **kwargs):
        super().__init__(parent, **kwargs)
        self.writer = None
        self._final = None

    def start(self, parent) -> None:
        if self.writer is not None:
            return
        from functools import partial

        from celery import signals

        from workers.registry import store
        from workers.registry.snapshot import WorkerIdentity, take_snapshot
        from workers.registry.tally import task_tally
        from workers.registry.writer import RegistryWriter, lost_after, registry_interval, registry_keep, stopped

        interval, keep = registry_interval(), registry_keep()  # a bad value stops the worker here
        options = parent.app.conf.broker_transport_options
        polling = float(options.get("polling_interval", 1))
        bound = lost_after(interval, float(options["wait_time_seconds"]) + polling)
        identity = WorkerIdentity.of_consumer(parent)
        snapshot = partial(take_snapshot, identity, task_tally)
        self.writer = RegistryWriter(
            snapshot=lambda tick: snapshot(tick=tick),
            write=lambda snap, n: store.store_snapshot(snap, renewals=n, lost_after_seconds=bound),
            prune=lambda: store.prune_rows(keep=keep),
            interval=interval,
        )
        self.writer.start()
        poll_liveness.listeners.append(self.writer.renew)
        task_tally.listeners.append(self.writer.changed)

        signals.worker_shutdown.connect(lambda **_: self.mark_stopped(), weak=False)  # the end of a warm shutdown
        self._final = lambda tick: stopped(snapshot(tick=tick))

    def mark_stopped(self) -> None:
        """Once: the row says stopped (if the database takes it within a few seconds) and the thread ends."""
        from workers.registry.tally import task_tally

        if self.writer is None or self._final is None:
            return
        final, self._final = self._final, None
        poll_liveness.listeners.remove(self.writer.renew)
        task_tally.listeners.remove(self.writer.changed)
        self.writer.stop(final)

    def stop(self, parent) -> None:
        """A consumer restart (lost connection) keeps the row; the cold shutdown ECS's SIGTERM becomes
        (REMAP_SIGTERM=SIGQUIT, after the soft shutdown's wait) sends no worker_shutdown: mark it here."""
        from workers.registry.shutdown import worker_is_shutting_down

        if worker_is_shutting_down():
            self.mark_stopped()

    shutdown = stop
