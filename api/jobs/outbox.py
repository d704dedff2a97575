"""The outbox relay: publish committed Jobs that are not yet published, once per attempt, however many relays run.

The Job row is the record of intent. Each publish attempt is claimed first by a compare-and-set on
`next_publish_at` (and `state = pending`), which also moves it to the attempt's retry time: a relay
that dies mid-attempt leaves the Job to the next sweep after that time, and two relays that saw the same
row cannot both claim it. The request's fast path claims the first attempt when it creates the Job.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Case, F, Q, Value, When
from django.utils import timezone

from api.jobs.models import Job, JobEvent, JobState
from api.jobs.publisher import Attempt, Publish, publish_within_budget, send_job_task

logger = logging.getLogger(__name__)

CLAIM_MARGIN_SECONDS = 2.0  # beyond the budget: a claimed attempt is over before anyone may claim the next


def claim_until(attempts: int, now: datetime) -> datetime:
    """When attempt number `attempts` may be followed by the next: its backoff, never inside its budget."""
    delay = max(settings.OUTBOX_RELAY.retry_delay(attempts), settings.PUBLISH_BUDGET.seconds + CLAIM_MARGIN_SECONDS)
    return now + timedelta(seconds=delay)


def claim(job_id: int, *, seen_next_publish_at: datetime | None, attempts: int, now: datetime) -> bool:
    """Take the Job's next publish attempt if no one else has since we looked (compare-and-set)."""
    match = Q(next_publish_at=seen_next_publish_at) if seen_next_publish_at else Q(next_publish_at__isnull=True)
    claimed = Job.objects.filter(match, pk=job_id, state=JobState.PENDING, publish_attempts=attempts).update(
        publish_attempts=F("publish_attempts") + 1,
        next_publish_at=claim_until(attempts + 1, now),
        updated_at=now,
    )
    return claimed == 1


def record(job_id: int, attempt: Attempt) -> None:
    """Write what an attempt came to; only a still-pending Job changes (a cancel or a worker may have won)."""
    now = timezone.now()
    pending = Job.objects.filter(pk=job_id, state=JobState.PENDING)
    if attempt.published:
        # One statement: a pending Job becomes queued (delayed while its countdown runs); one a fast worker
        # already started, or a cancel reached, keeps its state.
        state = Case(
            When(state=JobState.PENDING, due_at__gt=now, then=Value(JobState.DELAYED)),
            When(state=JobState.PENDING, then=Value(JobState.QUEUED)),
            default=F("state"),
        )
        with transaction.atomic():  # the change and its history entry: one commit
            if Job.objects.filter(pk=job_id, published_at__isnull=True).update(
                state=state, published_at=now, next_publish_at=None, publish_error="", updated_at=now
            ):
                current = Job.objects.filter(pk=job_id).values_list("state", flat=True).first() or ""
                JobEvent.objects.create(job_id=job_id, state=current, detail="published: SQS accepted the message")
    elif attempt.refused is not None:
        logger.warning("job %s refused at publish: %s", job_id, attempt.refused)
        with transaction.atomic():
            if pending.update(
                state=JobState.REFUSED,
                error=str(attempt.refused),
                next_publish_at=None,
                finished_at=now,
                updated_at=now,
            ):
                JobEvent.objects.create(job_id=job_id, state=JobState.REFUSED, detail=str(attempt.refused)[:500])
    else:
        pending.update(publish_error=attempt.error or "", updated_at=now)


class FastPathPause:
    """After the broker failed a request's publish, this process's requests skip theirs for one budget.

    While SQS is down each request would otherwise wait for its timeouts, tying up gunicorn's workers; with
    the pause one request per budget pays that, and the others answer `pending` at once for the relay.
    """

    def __init__(self, clock=time.monotonic):
        self.clock = clock
        self.failed_at: float | None = None
        self._lock = threading.Lock()

    def skip(self, budget: float) -> float | None:
        """Seconds since the failure that pauses the fast path, or None to try."""
        with self._lock:
            if self.failed_at is None:
                return None
            since = self.clock() - self.failed_at
            return since if since < budget else None

    def record(self, attempt: Attempt) -> None:
        with self._lock:
            self.failed_at = self.clock() if attempt.broker_down else None


fast_path_pause = FastPathPause()


def publish_now(job: Job, *, publish: Publish = send_job_task, pause: FastPathPause = fast_path_pause) -> Attempt:
    """The fast path, right after the commit: one attempt within the budget, its outcome on the Job."""
    budget = settings.PUBLISH_BUDGET.seconds
    if settings.PUBLISH_FAST_PATH_PAUSE and (since := pause.skip(budget)) is not None:
        attempt = Attempt(
            error=f"not tried: SQS failed a publish {since:.1f} s ago; the relay will publish it", broker_down=True
        )
    else:
        attempt = publish_within_budget(job, publish=publish, budget=budget, on_late=lambda late: record(job.pk, late))
        pause.record(attempt)
        if attempt.error:
            logger.warning("job %s not published yet (the relay will retry): %s", job.pk, attempt.error)
    record(job.pk, attempt)
    return attempt


@dataclass
class Sweep:
    """What one sweep did."""

    due: int = 0
    claimed: int = 0
    published: int = 0
    refused: int = 0
    broker_error: str | None = None  # set when the sweep stopped early: SQS failed or did not answer
    failed_ids: list[int] = field(default_factory=list)


def due_jobs(now: datetime, limit: int) -> list[tuple[int, datetime | None, int]]:
    """Pending Jobs whose next attempt is due, oldest first: (id, next_publish_at, publish_attempts).

    Rows without next_publish_at (stored before the outbox existed, never published) count once they are
    older than a claimed attempt, so an old api's own publish in flight is not raced.
    """
    stale = now - timedelta(seconds=settings.PUBLISH_BUDGET.seconds + CLAIM_MARGIN_SECONDS)
    rows = Job.objects.filter(
        Q(next_publish_at__lte=now) | Q(next_publish_at__isnull=True, created_at__lte=stale),
        state=JobState.PENDING,
    ).order_by(F("next_publish_at").asc(nulls_first=True), "id")
    return list(rows.values_list("id", "next_publish_at", "publish_attempts")[:limit])


def sweep_once(*, publish: Publish = send_job_task, now: datetime | None = None) -> Sweep:
    """Claim and publish every due Job (up to the batch); stop at the first broker failure.

    A failure about one Job (not the broker) backs that Job off and the sweep goes on.

    One failure is enough to know SQS is down: the rest stay due for the next sweep, which the caller
    backs off (api/jobs/relay_loop.py), so an outage costs one attempt per sweep, not one per Job.
    """
    now = now or timezone.now()
    result = Sweep()
    rows = due_jobs(now, settings.OUTBOX_RELAY.batch)
    result.due = len(rows)
    for job_id, seen, attempts in rows:
        if not claim(job_id, seen_next_publish_at=seen, attempts=attempts, now=timezone.now()):
            continue  # another relay (or a cancel) got there first
        result.claimed += 1
        job = Job.objects.filter(pk=job_id).first()
        if job is None:
            continue
        attempt = publish_within_budget(
            job, publish=publish, budget=settings.PUBLISH_BUDGET.seconds, on_late=lambda late, i=job_id: record(i, late)
        )
        record(job_id, attempt)
        if attempt.published:
            result.published += 1
        elif attempt.refused is not None:
            result.refused += 1
        else:
            result.failed_ids.append(job_id)
            if attempt.broker_down:
                result.broker_error = attempt.error
                break
    return result
