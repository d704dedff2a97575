"""Newsletter tasks: fan out one message per subscriber, or one per batch; deliveries are idempotent."""

from __future__ import annotations

from celery import shared_task

from api.jobs.job_task import JobTask
from api.newsletter.services import newsletter_batching, newsletter_deliver, newsletter_fan_out


@shared_task(base=JobTask, name="newsletter.fan_out")
def fan_out(*, job_id: int, subject: str, page_size: int = 200) -> dict:

    return newsletter_fan_out(job_id=job_id, subject=subject, page_size=page_size)


@shared_task(base=JobTask, name="newsletter.batching")
def batching(*, job_id: int, subject: str, batch_size: int = 50) -> dict:

    return newsletter_batching(job_id=job_id, subject=subject, batch_size=batch_size)


@shared_task(name="newsletter.send_one")
def send_one(*, newsletter_id: int, subscriber_id: int) -> bool:

    return newsletter_deliver(newsletter_id=newsletter_id, subscriber_ids=[subscriber_id]) == 1


@shared_task(name="newsletter.send_batch")
def send_batch(*, newsletter_id: int, subscriber_ids: list[int]) -> int:

    return newsletter_deliver(newsletter_id=newsletter_id, subscriber_ids=subscriber_ids)
