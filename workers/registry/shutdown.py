"""Whether the worker is shutting down (warm or cold), as Celery's signal handlers record it."""

from __future__ import annotations


def worker_is_shutting_down() -> bool:
    """Celery's handlers set `state.should_stop` (warm) or `state.should_terminate` (cold) to the exit code,
    which may be 0; `state.maybe_shutdown()` reads them the same way."""
    from celery.worker import state

    return any(flag is not None and flag is not False for flag in (state.should_stop, state.should_terminate))
