"""Newsletter services: keyset-paginated fan-out and batching, idempotent delivery, seeding."""

from __future__ import annotations

from collections.abc import Iterator

from api.newsletter.models import Delivery, Newsletter, Subscriber
from workers.celery_app import app as celery_app


def subscriber_id_pages(*, page_size: int) -> Iterator[list[int]]:
    """Active subscriber ids in pages, by keyset (id > last seen): no OFFSET scans, stable under inserts."""
    last_id = 0
    while True:
        ids = list(
            Subscriber.objects.filter(active=True, id__gt=last_id)
            .order_by("id")
            .values_list("id", flat=True)[:page_size]
        )
        if not ids:
            return
        yield ids
        last_id = ids[-1]


def newsletter_for_job(*, job_id: int, subject: str) -> Newsletter:
    newsletter, _ = Newsletter.objects.get_or_create(job_id=job_id, defaults={"subject": subject})
    return newsletter


def newsletter_fan_out(*, job_id: int, subject: str, page_size: int) -> dict:
    """One send_one message per subscriber. A retried fan-out publishes again; delivery dedupes."""
    newsletter = newsletter_for_job(job_id=job_id, subject=subject)
    published = 0
    for ids in subscriber_id_pages(page_size=page_size):
        for subscriber_id in ids:
            celery_app.send_task(
                "newsletter.send_one", kwargs={"newsletter_id": newsletter.pk, "subscriber_id": subscriber_id}
            )
            published += 1
    return {"newsletter_id": newsletter.pk, "messages": published}


def newsletter_batching(*, job_id: int, subject: str, batch_size: int) -> dict:
    """One send_batch message per page of subscribers: fewer SQS requests than a fan-out."""
    newsletter = newsletter_for_job(job_id=job_id, subject=subject)
    batches = 0
    for ids in subscriber_id_pages(page_size=batch_size):
        celery_app.send_task("newsletter.send_batch", kwargs={"newsletter_id": newsletter.pk, "subscriber_ids": ids})
        batches += 1
    return {"newsletter_id": newsletter.pk, "messages": batches}


def newsletter_deliver(*, newsletter_id: int, subscriber_ids: list[int]) -> int:
    """Record (stand-in for sending) one delivery per subscriber; a repeated delivery does nothing."""
    done = set(
        Delivery.objects.filter(newsletter_id=newsletter_id, subscriber_id__in=subscriber_ids).values_list(
            "subscriber_id", flat=True
        )
    )
    new = [Delivery(newsletter_id=newsletter_id, subscriber_id=s) for s in subscriber_ids if s not in done]
    Delivery.objects.bulk_create(new, ignore_conflicts=True)
    return len(new)


def subscribers_seed(*, count: int) -> int:
    """Make sure subscribers user1..userN@example.com exist; returns how many were added."""
    existing = set(Subscriber.objects.values_list("email", flat=True))
    new = [Subscriber(email=email) for i in range(1, count + 1) if (email := f"user{i}@example.com") not in existing]
    Subscriber.objects.bulk_create(new, ignore_conflicts=True)
    return len(new)
