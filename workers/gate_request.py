"""The worker's Request class: a task handed back for a dependency error pauses the worker's main process; a
task whose pool process died is announced (run_lost)."""

from __future__ import annotations

import logging

from billiard.einfo import ExceptionWithTraceback
from billiard.exceptions import WorkerLostError
from celery.exceptions import TimeLimitExceeded
from celery.worker.request import Request
from django.dispatch import Signal

from workers.dependency_errors import DependencyDown
from workers.dependency_gate import dependency_gate

logger = logging.getLogger(__name__)

# Sent in the worker's main process when the pool process running a task died (no handler ran in it), with the
# task's task_id, kwargs, the exception and its workers.delivery.Delivery: the app that owns the task's effects
# reacts (api/jobs/apps.py records it on the Job). workers/ never imports api/.
run_lost = Signal()


def record_lost_run(request: Request, exc: BaseException) -> None:
    """The pool process running a task died (killed, out of memory) or hit its hard time limit: no handler ran in
    it, and Celery hands the message back. A receiver's error is logged, never raised: this runs on the worker's
    event loop."""
    from django.db import close_old_connections, connection

    from workers.delivery import delivery_of_request

    try:
        if not connection.in_atomic_block:
            close_old_connections()  # the main process has no request cycle to drop a broken connection
        kwargs = request.kwargs if isinstance(request.kwargs, dict) else {}
        run_lost.send(sender=None, task_id=request.id, kwargs=kwargs, exc=exc, delivery=delivery_of_request(request))
    except Exception:
        logger.exception("could not record the lost run of %s[%s]", request.task_name, request.id)


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
