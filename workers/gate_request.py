"""The worker's Request class: a task handed back for a dependency error pauses the worker's main process; a
Job whose pool process died records it."""

from __future__ import annotations

import logging

from billiard.einfo import ExceptionWithTraceback
from billiard.exceptions import WorkerLostError
from celery.exceptions import TimeLimitExceeded
from celery.worker.request import Request

from workers.dependency_errors import DependencyDown
from workers.dependency_gate import dependency_gate

logger = logging.getLogger(__name__)


def record_lost_run(request: Request, exc: BaseException) -> None:
    """The pool process running a Job's task died (killed, out of memory) or hit its hard time limit: no handler ran in
    it, and Celery hands the message back. On the last receive its queue allows, that sends it to the DLQ.
    A database error is logged, never raised: this runs on the worker's event loop."""
    job_id = (request.kwargs or {}).get("job_id") if isinstance(request.kwargs, dict) else None
    if job_id is None:
        return
    from api.jobs.services import job_mark_run_lost
    from workers.delivery import delivery_of_request

    try:
        from django.db import close_old_connections

        close_old_connections()  # the main process has no request cycle to drop a broken connection
        job_mark_run_lost(job_id=job_id, exc=exc, delivery=delivery_of_request(request))
    except Exception:
        logger.exception("could not record the lost run of job %s (%s)", job_id, request.id)


class GateRequest(Request):
    """A task runs in a pool child, which cannot stop the main process's receive loop. Its outcome comes back
    to this process: Celery calls on_failure, on the event loop, for a task that raised (Reject included).
    DependencyDown closes the gate first, so the slot its hand-back frees finds the loop paused."""

    def on_failure(self, exc_info, send_failed_event=True, return_ok=False):
        exc = exc_info.exception
        if isinstance(exc, ExceptionWithTraceback):
            exc = exc.exc
        if isinstance(exc, DependencyDown):
            dependency_gate.close(exc.reason, exc.dependency)
        elif isinstance(exc, WorkerLostError | TimeLimitExceeded):
            record_lost_run(self, exc)
        return super().on_failure(exc_info, send_failed_event=send_failed_event, return_ok=return_ok)
