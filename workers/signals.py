"""Celery signal handlers: start-up checks for worker and beat, the unraisable hook in each child, and the
record of each task Celery discards without running it."""

from __future__ import annotations

from celery import signals

from workers import discards, unraisable


def _run_checks(sender=None, worker: bool = False, **_kwargs) -> None:
    import django
    from django.conf import settings

    from core.topology import get_topology
    from workers.startup_checks import run_startup_checks

    django.setup()
    # The sender (the WorkController, or beat's Service) carries the app: no import of workers.celery_app, which
    # imports this module.
    run_startup_checks(sender.app, get_topology(), dir(settings), worker=sender if worker else None)


def _run_worker_checks(sender=None, **kwargs) -> None:
    _run_checks(sender, worker=True, **kwargs)


# StartupRefused is a SystemExit: Celery's signal dispatch logs ordinary exceptions and carries on,
# but lets this one through, so the process exits non-zero before it consumes anything.
signals.worker_init.connect(_run_worker_checks, weak=False)


@signals.worker_init.connect(weak=False)
def _warm_sqs_model(**_kwargs) -> None:
    """Before the pool forks: its processes start with the SQS model parsed (workers/transport/boto_loader.py)."""
    from workers.transport.boto_loader import warm

    warm()


signals.beat_init.connect(_run_checks, weak=False)


@signals.worker_process_init.connect(weak=False)
def _install_unraisable_hook(**_kwargs) -> None:
    unraisable.install()


# Sent in the worker's main process when Celery acks a task it will not run (expired or revoked).
signals.task_revoked.connect(discards.on_task_revoked, weak=False)
