"""The demo job kinds' work: echo, sleep, fail, flaky."""

from __future__ import annotations

import time

from django.conf import settings

from api.jobs.models import Effect, Job
from workers.idempotency import fenced_commit


class DemoFailure(RuntimeError):
    """Raised on purpose by the `fail` and `flaky` kinds."""


def demo_echo(*, message: str) -> dict:
    return {"message": message}


def demo_sleep(*, seconds: float) -> dict:
    time.sleep(seconds)
    return {"slept": seconds}


def demo_fail(*, message: str) -> dict:
    """Always fails, until the bug is "fixed" by deploying with DEMO_FAILURES_FIXED=true (DLQ replay demo)."""
    if settings.DEMO_FAILURES_FIXED:
        return {"fixed": True, "message": message}
    raise DemoFailure(message)


def demo_flaky(*, job_id: int, failures: int) -> dict:
    """Fail while the Job has been started `failures` times or fewer, then succeed."""
    attempts = Job.objects.values_list("attempts", flat=True).get(pk=job_id)
    if attempts <= failures:
        raise DemoFailure(f"planned failure {attempts} of {failures}")
    return {"attempts": attempts}


def demo_record_effect(*, task_id: str, key: str, seconds: float) -> dict:
    """Work for `seconds` outside any transaction, then record one Effect row in the task's fenced commit:
    it commits with the done mark, or not at all if another run took the claim over meanwhile."""
    time.sleep(seconds)  # the work: no transaction, no lock is held while it runs
    with fenced_commit():
        Effect.objects.create(task_id=task_id, key=key)
    return {"key": key}
