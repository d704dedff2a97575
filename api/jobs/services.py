"""Job services: submit (store, then publish after commit), cancel, and the state changes workers report.

Every state change is a compare-and-set on the state it was decided from, so a late or duplicated report
never overwrites a later truth (a "retrying" from a duplicate run after "succeeded"), and each appends a
JobEvent: the history the detail page shows. What a change cannot do is recorded as an event too.
"""

from __future__ import annotations

import logging
import traceback
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from api.jobs.kinds import JOB_KINDS, JobInputError, parse_job_request
from api.jobs.models import Job, JobEvent, JobState
from api.jobs.outbox import claim_until, publish_now
from api.jobs.publisher import Attempt
from workers.delivery import Delivery
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
        job_event(job.pk, JobState.PENDING, f"stored; due at {job.due_at:%H:%M:%S}" if job.due_at else "stored")
        # Published only after commit, so a worker never receives a task whose Job it cannot read.
        transaction.on_commit(lambda: holder.append(publish_now(job)))
    job.refresh_from_db()
    return Submission(job=job, attempt=holder[0] if holder else None)


TRACEBACK_CHARS = 4000  # the tail of a traceback, where the failing line is
ERROR_CHARS = 1000
CAS_ATTEMPTS = 3  # a lost compare-and-set means another report just landed: look again

# Not started yet: a cancel still stops it (the worker reads the state before it runs the task).
CANCELLABLE = frozenset({JobState.PENDING, JobState.QUEUED, JobState.DELAYED, JobState.RETRYING})
# A start, retry or failure report changes these; a Job finished otherwise keeps its outcome.
UNFINISHED = frozenset(
    {JobState.PENDING, JobState.QUEUED, JobState.DELAYED, JobState.RUNNING, JobState.RETRYING, JobState.FAILED}
)
STARTABLE = UNFINISHED | {JobState.DEAD_LETTERED}  # a worker received it again: it is out of the DLQ
NEVER_SUCCEEDS = frozenset({JobState.SUCCEEDED, JobState.CANCELLED})  # cancelled: it never started


def job_event(job_id: int, state: str, detail: str = "", worker: str = "") -> None:
    JobEvent.objects.create(job_id=job_id, state=state, detail=detail[:500], worker=worker[:255])


def _set_and_record(job_id: int, query, fields: dict, *, state: str, detail: str, worker: str = "") -> bool:
    """The compare-and-set `query.update(**fields)` and its history entry in one transaction: one commit per
    report, as before the history existed. The UPDATE comes first, so SQLite takes its write lock at once."""
    with transaction.atomic():
        if not query.update(**fields):
            return False
        job_event(job_id, state, detail, worker)
    return True


def exception_summary(exc: BaseException) -> str:
    """The one line kept in Job.error (the queues page groups DLQ messages by it)."""
    return f"{type(exc).__name__}: {exc}"[:ERROR_CHARS]


def short_traceback(exc: BaseException) -> str:
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return text if len(text) <= TRACEBACK_CHARS else "…" + text[-(TRACEBACK_CHARS - 1) :]


def job_cancel(*, job_id: int) -> Job | None:
    """Cancel a Job that has not started: pending (the relay then never publishes it), queued, delayed or
    retrying (the worker that receives its message deletes it unrun). None: no such Job.

    A Job running or finished keeps its state; the caller tells by reading it.
    """
    for _ in range(CAS_ATTEMPTS):
        now = timezone.now()
        seen = Job.objects.filter(pk=job_id).values_list("state", flat=True).first()
        if seen not in CANCELLABLE:
            break
        # A compare-and-set on the state seen: a worker that started it meanwhile wins; a move to another state
        # that has not started (the relay's publish: pending -> queued) is looked at again.
        fields = dict(
            state=JobState.CANCELLED, next_publish_at=None, next_attempt_at=None, finished_at=now, updated_at=now
        )
        query = Job.objects.filter(pk=job_id, state=seen)
        if _set_and_record(job_id, query, fields, state=JobState.CANCELLED, detail=f"cancelled while {seen}"):
            break
    return Job.objects.filter(pk=job_id).first()


def job_mark_started(*, job_id: int, delivery: Delivery) -> bool:
    """A worker is about to run the Job's task. False: the Job was cancelled, so the worker must not run it
    (the message is then deleted and the discard recorded here).

    A Job in the DLQ that a worker receives again was moved back (a replay); the replay Lambda's counter
    header says how often, and the highest seen is kept (a duplicated delivery does not count twice). A Job
    already finished (a duplicate delivery after its success) keeps its state; the start is an event.
    """
    for _ in range(CAS_ATTEMPTS):
        job = Job.objects.filter(pk=job_id).only("state", "replays").first()
        if job is None:
            return True
        if job.state == JobState.CANCELLED:
            _record_cancel_honoured(job_id, delivery)
            return False
        now = timezone.now()
        fields = dict(
            attempts=F("attempts") + 1,
            started_at=now,
            updated_at=now,
            worker_hostname=delivery.hostname[:255],
            worker_pid=delivery.pid,
            receive_count=delivery.receive_count or 0,
        )
        replayed = delivery.replays > job.replays
        if replayed:
            fields.update(replays=delivery.replays, replayed_at=now)
        if job.state in STARTABLE:
            fields.update(state=JobState.RUNNING, next_attempt_at=None, finished_at=None)
        detail = f"started, receive {delivery.receive_count or '?'}"
        if replayed:
            detail += f", replayed ×{delivery.replays}"
        if job.state not in STARTABLE:
            detail = f"duplicate delivery {detail} (stays {job.state})"
        query = Job.objects.filter(pk=job_id, state=job.state)
        state = fields.get("state", job.state)
        if _set_and_record(job_id, query, fields, state=state, detail=detail, worker=delivery.worker):
            return True
    return True


def _record_cancel_honoured(job_id: int, delivery: Delivery) -> None:
    from workers.models import DiscardedMessage, DiscardReason

    task_id = Job.objects.filter(pk=job_id).values_list("task_id", flat=True).first() or ""
    detail = "its Job was cancelled before it started"
    logger.warning(
        "task cancelled: %s[%s] on queue %s was deleted without running (%s)",
        delivery.task_name,
        task_id,
        delivery.queue,
        detail,
    )
    with transaction.atomic():
        DiscardedMessage.objects.create(
            task_id=task_id,
            task_name=delivery.task_name,
            queue=delivery.queue,
            reason=DiscardReason.CANCELLED,
            detail=detail,
        )
        job_event(job_id, JobState.CANCELLED, "received after its cancel: deleted without running", delivery.worker)


def job_mark_succeeded(*, job_id: int, result: object) -> None:
    now = timezone.now()
    fields = dict(
        state=JobState.SUCCEEDED, result=result, error="", traceback="", next_attempt_at=None, finished_at=now
    )
    query = Job.objects.filter(pk=job_id).exclude(state__in=NEVER_SUCCEEDS)
    if not _set_and_record(job_id, query, {**fields, "updated_at": now}, state=JobState.SUCCEEDED, detail="succeeded"):
        job_event(job_id, _state_of(job_id), "duplicate success")


def job_mark_retrying(*, job_id: int, exc: BaseException, retry_in: object = None, worker: str = "") -> None:
    """A run failed and Celery published its retry: due `retry_in` seconds (or at that datetime) from now."""
    now = timezone.now()
    next_attempt_at = _when(retry_in, now)
    error = exception_summary(exc)
    fields = dict(
        state=JobState.RETRYING,
        error=error,
        traceback=short_traceback(exc),
        next_attempt_at=next_attempt_at,
        updated_at=now,
    )
    due = f" at {next_attempt_at:%H:%M:%S}" if next_attempt_at else ""
    query = Job.objects.filter(pk=job_id, state__in=UNFINISHED)
    if not _set_and_record(
        job_id, query, fields, state=JobState.RETRYING, detail=f"{error}; retry{due}", worker=worker
    ):
        job_event(job_id, _state_of(job_id), f"late retry report ignored: {error}", worker)


def job_mark_failed(
    *, job_id: int, exc: BaseException, delivery: Delivery, max_receive_count: int | None = None
) -> None:
    """A run failed with its retries spent; the message is rejected, and SQS delivers it again until its
    receive count reaches the queue's maxReceiveCount. A failure on that last receive is the one after
    which SQS moves the message to the DLQ (at its next receive, after the visibility timeout): the Job is
    `dead_lettered` from then. A failure with no receive count known stays `failed`."""
    now = timezone.now()
    error = exception_summary(exc)
    count = delivery.receive_count
    of = ReceivePosition(count, _max_receive_count(job_id) if max_receive_count is None else max_receive_count)
    fields = dict(error=error, traceback=short_traceback(exc), next_attempt_at=None, finished_at=now, updated_at=now)
    if of.last:
        fields.update(state=JobState.DEAD_LETTERED, dead_lettered_at=now, dlq_receive_count=count)
    else:
        fields.update(state=JobState.FAILED)
    detail = f"{error}; {of}" + ("; SQS moves it to the DLQ" if of.last else "; SQS delivers it again")
    query = Job.objects.filter(pk=job_id, state__in=UNFINISHED)
    if not _set_and_record(job_id, query, fields, state=fields["state"], detail=detail, worker=delivery.worker):
        job_event(job_id, _state_of(job_id), f"late failure report ignored: {error}; {of}", delivery.worker)


def job_mark_run_lost(*, job_id: int, exc: BaseException, delivery: Delivery) -> None:
    """The pool process running the Job died (no handler ran in it) and Celery handed the message back: on the
    last receive its queue allows, SQS moves it to the DLQ at the next receive, so the Job is `dead_lettered`;
    before that it is delivered again (its next start says so), and only the history records the loss."""
    error = exception_summary(exc)
    count = delivery.receive_count
    of = ReceivePosition(count, _max_receive_count(job_id))
    if not of.last:
        job_event(job_id, _state_of(job_id), f"run lost: {error}; {of}; SQS delivers it again", delivery.worker)
        return
    now = timezone.now()
    fields = dict(
        state=JobState.DEAD_LETTERED,
        error=error,
        traceback="",
        dead_lettered_at=now,
        dlq_receive_count=count,
        next_attempt_at=None,
        finished_at=now,
        updated_at=now,
    )
    query = Job.objects.filter(pk=job_id, state=JobState.RUNNING)
    detail = f"run lost: {error}; {of}; SQS moves it to the DLQ"
    if not _set_and_record(job_id, query, fields, state=JobState.DEAD_LETTERED, detail=detail, worker=delivery.worker):
        job_event(job_id, _state_of(job_id), f"late lost-run report ignored: {error}; {of}", delivery.worker)


def job_mark_worker_lost(
    *, job_id: int, attempts: int, worker_hostname: str, started_at: datetime | None, lost: str, worker: str = ""
) -> str | None:
    """The whole worker running the Job died (api/jobs/lost_workers.py found its registry row lost): no handler
    ran and nothing handed the message back, so SQS delivers it again once its visibility timeout passes, or,
    when this was the last receive its queue allows, moves it to the DLQ instead. The Job goes back to
    `queued`, or to `dead_lettered`, with a "worker lost" event; the same rule as job_mark_run_lost.

    A compare-and-set on the attempt seen (state running, that worker, that attempt count and start): a
    redelivery that started it again meanwhile wins, and a second sweep finds nothing to do. Returns the new
    state, or None when nothing changed."""
    job = Job.objects.filter(pk=job_id).only("receive_count", "queue").first()
    if job is None:
        return None
    count = job.receive_count or None
    of = ReceivePosition(count, _queue_max_receive_count(job.queue))
    now = timezone.now()
    fields: dict = dict(next_attempt_at=None, updated_at=now)
    if of.last:
        error = f"WorkerLost: the worker running it died ({lost})"[:ERROR_CHARS]
        fields.update(
            state=JobState.DEAD_LETTERED,
            error=error,
            traceback="",
            dead_lettered_at=now,
            dlq_receive_count=count,
            finished_at=now,
        )
        detail = f"worker lost: {lost}; {of}; SQS moves it to the DLQ"
    else:
        fields.update(state=JobState.QUEUED)
        detail = f"worker lost: {lost}; {of}; will be redelivered after its visibility timeout"
    query = Job.objects.filter(
        pk=job_id, state=JobState.RUNNING, worker_hostname=worker_hostname, attempts=attempts, started_at=started_at
    )
    if _set_and_record(job_id, query, fields, state=fields["state"], detail=detail, worker=worker):
        logger.warning("job %s: %s", job_id, detail)
        return fields["state"]
    return None


def job_mark_expired(*, job_id: int, detail: str = "") -> None:
    """A worker deleted the Job's message unrun because its `expires` had passed. A Job already finished (by an
    earlier copy of the message) keeps its outcome."""
    now = timezone.now()
    fields = dict(
        state=JobState.EXPIRED, error=f"expired: {detail}" if detail else "expired", finished_at=now, updated_at=now
    )
    query = Job.objects.filter(pk=job_id, finished_at__isnull=True)
    what = f"deleted unrun: {detail}" if detail else "deleted unrun"
    _set_and_record(job_id, query, fields, state=JobState.EXPIRED, detail=what)


def _max_receive_count(job_id: int) -> int | None:
    """The redrive policy's maxReceiveCount of the Job's queue, from the topology (the queues are made from it)."""
    return _queue_max_receive_count(Job.objects.filter(pk=job_id).values_list("queue", flat=True).first())


def _queue_max_receive_count(queue: str | None) -> int | None:
    spec = settings.QUEUE_TOPOLOGY.queues.get(queue or "")
    return spec.max_receive_count if spec else None


@dataclass(frozen=True)
class ReceivePosition:
    """A delivery's receive count against its queue's maxReceiveCount (None: unknown), as the history says it."""

    count: int | None
    max_receive_count: int | None

    @property
    def last(self) -> bool:
        """The last receive the redrive policy allows: a failure or loss now sends the message to the DLQ."""
        return self.count is not None and self.max_receive_count is not None and self.count >= self.max_receive_count

    def __str__(self) -> str:
        return f"receive {self.count if self.count is not None else '?'} of {self.max_receive_count or '?'}"


def _state_of(job_id: int) -> str:
    return Job.objects.filter(pk=job_id).values_list("state", flat=True).first() or ""


def _when(retry_in: object, now: datetime) -> datetime | None:
    """Celery's Retry.when: a countdown in seconds, or an ETA datetime."""
    if isinstance(retry_in, datetime):
        return retry_in if timezone.is_aware(retry_in) else timezone.make_aware(retry_in, UTC)
    if isinstance(retry_in, int | float) and not isinstance(retry_in, bool):
        return now + timedelta(seconds=retry_in)
    return None
