"""The worker's Request class: each task's outcome, seen in the main process, goes into the registry's tally."""

from __future__ import annotations

from functools import wraps

from billiard.einfo import ExceptionWithTraceback
from celery.exceptions import Retry

from workers.dependency_errors import DependencyDown
from workers.gate_request import GateRequest
from workers.registry.tally import task_tally


def _exception(exc_info):
    exc = exc_info.exception
    return exc.exc if isinstance(exc, ExceptionWithTraceback) else exc


class RegistryRequest(GateRequest):
    """Celery's strategy does not use this class as is: `create_request_cls` subclasses it per task type and
    replaces `on_success` (celery/worker/request.py, 5.7.0), so an override here would never run. The
    subclass hook wraps that replacement instead: a success is counted after Celery handled it. Failures
    still come through `on_failure` here (the replacement calls it for a failed run)."""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "on_success" in cls.__dict__:
            cls.on_success = _counting_success(cls.__dict__["on_success"])

    def on_accepted(self, pid, time_accepted):
        super().on_accepted(pid, time_accepted)
        task_tally.started()  # the registry shows it at its next write (at most one per interval)

    def on_failure(self, exc_info, send_failed_event=True, return_ok=False):
        result = super().on_failure(exc_info, send_failed_event=send_failed_event, return_ok=return_ok)
        exc = _exception(exc_info)
        if isinstance(exc, Retry):
            task_tally.add("retried")
        elif not isinstance(exc, DependencyDown):  # handed back for an outage: not the task's failure
            task_tally.add("failed")
        return result


def _counting_success(on_success):
    @wraps(on_success)
    def wrapper(self, failed__retval__runtime, **kwargs):
        result = on_success(self, failed__retval__runtime, **kwargs)
        if not failed__retval__runtime[0]:  # a failed run went on to on_failure, which counted it
            task_tally.add("done")
        return result

    return wrapper


RegistryRequest.on_success = _counting_success(GateRequest.on_success)  # used as is outside the strategy
