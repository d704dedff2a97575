"""Job services: submit (store, then publish after commit) and the state changes workers report."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from api.jobs.kinds import JOB_KINDS, JobInputError
from api.jobs.models import Job, JobState
from workers.celery_app import app as celery_app
from workers.publish_guards import PublishRefused, sqs_delay_seconds

logger = logging.getLogger(__name__)


@dataclass
class PublishOutcome:
    """What happened when the Job's task was published (after the transaction committed)."""

    refused: PublishRefused | None = None  # a guard refused it: the client must change the request
    broker_error: str | None = None  # the broker could not be reached: the client may retry later


@dataclass
class Submission:
    job: Job
    outcome: PublishOutcome | None  # None while an outer transaction defers the publish


def job_submit(*, kind: str, payload: object, queue: str | None = None, countdown: int = 0) -> Submission:
    """Validate, store the Job, and publish its task once the transaction commits."""
    job_kind = JOB_KINDS.get(kind) if isinstance(kind, str) else None
    if job_kind is None:
        raise JobInputError(f"unknown kind {kind!r}; one of {sorted(JOB_KINDS)}")
    clean_payload = job_kind.clean(kind, payload)
    topology = settings.QUEUE_TOPOLOGY
    if queue is None:
        queue = topology.queue_for_task(job_kind.task_name).key
    elif not isinstance(queue, str) or queue not in topology.queues:
        raise JobInputError(f"unknown queue {queue!r}; one of {sorted(topology.queues)}")
    if isinstance(countdown, bool) or not isinstance(countdown, int) or countdown < 0:
        raise JobInputError(f"countdown must be a non-negative integer (seconds), got {countdown!r}")
    # Refuse an impossible delay before anything is stored.
    sqs_delay_seconds(queue=queue, delay=countdown, retention_seconds=topology.queue(queue).retention_seconds)

    holder: list[PublishOutcome] = []
    with transaction.atomic():
        job = Job.objects.create(kind=kind, payload=clean_payload, queue=queue, countdown=countdown)
        # Published only after commit, so a worker never receives a task whose Job it cannot read.
        transaction.on_commit(lambda: holder.append(job_publish(job_id=job.pk)))
    job.refresh_from_db()
    return Submission(job=job, outcome=holder[0] if holder else None)


def job_publish(*, job_id: int) -> PublishOutcome:
    """Send the Job's task to SQS; record a refusal or a broker failure on the Job instead of losing it."""
    job = Job.objects.get(pk=job_id)
    spec = settings.QUEUE_TOPOLOGY.queue(job.queue)
    try:
        celery_app.send_task(
            JOB_KINDS[job.kind].task_name,
            kwargs={"job_id": job.pk, **job.payload},
            task_id=str(job.task_id),
            queue=job.queue,
            countdown=job.countdown or None,
            # The limits of the queue it is sent to, which the client may have chosen over the task's
            # routed one: the queue's visibility timeout (or heartbeat) is sized for these.
            time_limit=spec.time_limit,
            soft_time_limit=spec.soft_time_limit,
        )
    except PublishRefused as exc:
        logger.warning("job %s refused at publish: %s", job.pk, exc)
        _set_state(job.pk, JobState.REFUSED, error=str(exc), finished=True)
        return PublishOutcome(refused=exc)
    except Exception as exc:  # kombu OperationalError, botocore errors: the broker did not take it
        logger.error("job %s could not be published: %r", job.pk, exc)
        error = f"broker unreachable, the task was not queued: {type(exc).__name__}: {exc}"
        _set_state(job.pk, JobState.PUBLISH_FAILED, error=error, finished=True)
        return PublishOutcome(broker_error=error)
    # A fast worker may already have started it: only a pending Job becomes queued.
    Job.objects.filter(pk=job.pk, state=JobState.PENDING).update(state=JobState.QUEUED, updated_at=timezone.now())
    return PublishOutcome()


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
