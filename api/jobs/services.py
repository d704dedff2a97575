"""Job services: submit (store, then publish after commit), cancel, and the state changes workers report."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from api.jobs.kinds import JOB_KINDS, JobInputError, parse_job_request
from api.jobs.models import Job, JobState
from api.jobs.outbox import claim_until, publish_now
from api.jobs.publisher import Attempt
from workers.publish_guards import sqs_delay_seconds

logger = logging.getLogger(__name__)


@dataclass
class Submission:
    job: Job
    attempt: Attempt | None  # the fast path's publish; None while an outer transaction defers it


def job_submit(*, kind: str, payload: object, queue: str | None = None, countdown: int = 0) -> Submission:
    """Validate and store the Job (the outbox), then publish its task within the budget once committed.

    What the fast path does not publish (SQS down or slow, the process killed) the relay's sweep
    publishes later (api/jobs/outbox.py), with the same task id.
    """
    request = parse_job_request({"kind": kind, "payload": payload, "queue": queue, "countdown": countdown})
    clean_payload, countdown = request.payload, request.countdown
    topology = settings.QUEUE_TOPOLOGY
    if queue is None:
        queue = topology.queue_for_task(JOB_KINDS[kind].task_name).key
    elif queue not in topology.queues:
        raise JobInputError(f"unknown queue {queue!r}; one of {sorted(topology.queues)}", field="queue")
    # Refuse an impossible delay before anything is stored.
    sqs_delay_seconds(queue=queue, delay=countdown, retention_seconds=topology.queue(queue).retention_seconds)

    holder: list[Attempt] = []
    now = timezone.now()
    with transaction.atomic():
        # The request holds the first publish attempt: the sweep leaves the Job alone until it is over.
        job = Job.objects.create(
            kind=kind,
            payload=clean_payload,
            queue=queue,
            countdown=countdown,
            due_at=now + timedelta(seconds=countdown) if countdown else None,
            publish_attempts=1,
            next_publish_at=claim_until(1, now),
        )
        # Published only after commit, so a worker never receives a task whose Job it cannot read.
        transaction.on_commit(lambda: holder.append(publish_now(job)))
    job.refresh_from_db()
    return Submission(job=job, attempt=holder[0] if holder else None)


def job_cancel(*, job_id: int) -> Job | None:
    """Cancel a Job not yet published (the relay then never publishes it). None: no such Job.

    A Job already published, refused or finished keeps its state; the caller tells by reading it.
    """
    now = timezone.now()
    Job.objects.filter(pk=job_id, state=JobState.PENDING).update(
        state=JobState.CANCELLED, next_publish_at=None, finished_at=now, updated_at=now
    )
    return Job.objects.filter(pk=job_id).first()


def _set_state(job_id: int, state: str, *, finished: bool = False, **fields) -> None:
    now = timezone.now()
    if finished:
        fields["finished_at"] = now
    Job.objects.filter(pk=job_id).update(state=state, updated_at=now, **fields)


def job_mark_started(*, job_id: int, task_id: str) -> None:
    now = timezone.now()
    Job.objects.filter(pk=job_id).update(
        state=JobState.RUNNING, attempts=F("attempts") + 1, started_at=now, updated_at=now
    )


def job_mark_succeeded(*, job_id: int, result: object) -> None:
    _set_state(job_id, JobState.SUCCEEDED, finished=True, result=result, error="")


def job_mark_retrying(*, job_id: int, error: str) -> None:
    _set_state(job_id, JobState.RETRYING, error=error)


def job_mark_failed(*, job_id: int, error: str) -> None:
    _set_state(job_id, JobState.FAILED, finished=True, error=error)


def job_mark_expired(*, job_id: int, detail: str = "") -> None:
    """A worker deleted the Job's message unrun because its `expires` had passed. A Job already finished (by an
    earlier copy of the message) keeps its outcome."""
    now = timezone.now()
    Job.objects.filter(pk=job_id, finished_at__isnull=True).update(
        state=JobState.EXPIRED, error=f"expired: {detail}" if detail else "expired", finished_at=now, updated_at=now
    )
