"""The worker's Request class: a task handed back for a dependency error pauses the worker's main process."""

from __future__ import annotations

from billiard.einfo import ExceptionWithTraceback
from celery.worker.request import Request

from workers.dependency_errors import DependencyDown
from workers.dependency_gate import dependency_gate


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
        return super().on_failure(exc_info, send_failed_event=send_failed_event, return_ok=return_ok)
