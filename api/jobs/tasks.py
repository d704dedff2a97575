"""Demo tasks: echo, sleep, fail, flaky. Each is a thin call to a named service."""

from __future__ import annotations

from celery import shared_task

from api.jobs.demo_services import demo_echo, demo_fail, demo_flaky, demo_record_effect, demo_sleep
from api.jobs.job_task import JobTask


@shared_task(name="jobs.noop")
def noop() -> None:
    """Does nothing: what one task costs the broker and the worker (bench/)."""


@shared_task(base=JobTask, name="jobs.echo")
def echo(*, job_id: int, message: str) -> dict:

    return demo_echo(message=message)


@shared_task(base=JobTask, name="jobs.sleep")
def sleep(*, job_id: int, seconds: float) -> dict:

    return demo_sleep(seconds=seconds)


@shared_task(base=JobTask, name="jobs.fail")
def fail(*, job_id: int, message: str = "this task always fails") -> dict:

    return demo_fail(message=message)


@shared_task(base=JobTask, name="jobs.flaky")
def flaky(*, job_id: int, failures: int) -> dict:
    """Fails its first `failures` attempts, then succeeds: shows retries with backoff."""

    return demo_flaky(job_id=job_id, failures=failures)


@shared_task(bind=True, name="jobs.record_effect", idempotent=True)
def record_effect(self, *, key: str, seconds: float = 0.0) -> dict:
    """Idempotent by task id: however often SQS delivers it, and even if a paused run wakes up after another
    took its claim over, one Effect row (the README's example; used by the soak)."""

    return demo_record_effect(task_id=self.request.id, key=key, seconds=seconds)
