"""A sys.unraisablehook that aborts the worker child when SoftTimeLimitExceeded cannot be raised."""

from __future__ import annotations

import logging
import os
import sys

from celery.exceptions import SoftTimeLimitExceeded

logger = logging.getLogger(__name__)

# Exit code of a child aborted by the hook; the parent sees WorkerLostError and, with
# task_reject_on_worker_lost, SQS delivers the message again.
ABORT_EXIT_CODE = 70


def abort_on_soft_time_limit(unraisable) -> None:
    """Celery delivers the soft limit as an exception from a signal handler. If it lands inside a
    __del__, a weakref callback or a GC pass, Python can only report it as "unraisable" and the task
    runs on past its limit until the hard limit kills it. Abort the child at once instead."""
    if isinstance(unraisable.exc_value, SoftTimeLimitExceeded):
        logger.critical(
            "SoftTimeLimitExceeded could not be raised in the task (it hit %r); aborting this worker "
            "child so the message is delivered again",
            unraisable.object,
        )
        logging.shutdown()
        os._exit(ABORT_EXIT_CODE)
    sys.__unraisablehook__(unraisable)


def install() -> None:
    sys.unraisablehook = abort_on_soft_time_limit
