"""The lost-worker sweep: Jobs left `running` by a worker that died whole (SIGKILL, OOM, a lost Fargate task).

A pool child's death is reported by its parent (workers.gate_request.run_lost); a dead main process reports
nothing. Its registry row stops being renewed and turns lost (workers/registry/, the bound is in the row),
so this sweep finds Jobs `running` on such a worker and records the loss (api/jobs/services.py
job_mark_worker_lost): back to `queued` (SQS delivers the message again after its visibility timeout) or
`dead_lettered` when that was its last allowed receive.

Safe to run from several places at once: each change is a compare-and-set on the Job's state, worker and
attempt, so a second sweep finds nothing left to do and a redelivery that already started the Job elsewhere
is never overwritten. Bounded: at most `limit` Jobs per sweep, oldest start first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from api.jobs.models import Job, JobState
from workers.models import WorkerRegistration
from workers.registry.writer import registry_keep

SWEEP_LIMIT = 100  # Jobs looked at per sweep; the rest wait for the next one
# A Job running on a worker with no registry row at all (it died before its first write, or the row was
# pruned) is lost once it started this long ago and still no row names its worker.
MISSING_ROW_SECONDS = 300


@dataclass
class LostSweep:
    """What one sweep did."""

    lost_workers: int = 0
    checked: int = 0
    requeued: list[int] = field(default_factory=list)
    dead_lettered: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class LostWorker:
    """The dead worker a Job ran on, as the sweep tells it (the history's words)."""

    nodename: str
    pid: int | None
    last_seen: datetime | None  # its row's last poll; None when it never wrote a row
    bound_seconds: int

    def describe(self, now: datetime) -> str:
        if self.last_seen is None:
            return f"{self.nodename}: no registry row for {self.bound_seconds} s"
        stale = int((now - self.last_seen).total_seconds())
        return (
            f"{self.nodename} pid {self.pid}: last seen {self.last_seen:%H:%M:%S} UTC, "
            f"stale {stale} s > its bound {self.bound_seconds} s"
        )


def _stale(row: WorkerRegistration, now: datetime) -> bool:
    """The same rule as the workers page (api/ops/worker_list.status_of): lost past the row's own bound."""
    return row.stopped_at is None and (now - row.last_poll_at).total_seconds() > row.lost_after_seconds


def sweep_lost_workers(*, now: datetime | None = None, limit: int = SWEEP_LIMIT) -> LostSweep:
    """Record the loss on each Job `running` on a worker that is lost (or has no row past MISSING_ROW_SECONDS).

    A Job is left alone when a live worker of the same node name started before the Job did (a worker
    restarted under the same name may be running it now); the compare-and-set leaves it alone when it was
    started again meanwhile (another attempt, another worker)."""
    from api.jobs.services import job_mark_worker_lost

    now = now or datetime.now(UTC)
    rows = list(
        WorkerRegistration.objects.filter(renewed_at__gte=now - registry_keep()).only(
            "nodename", "pid", "last_poll_at", "lost_after_seconds", "stopped_at", "started_at"
        )
    )
    alive_since: dict[str, datetime] = {}  # node name -> its earliest live worker's start
    lost: dict[str, WorkerRegistration] = {}  # node name -> its latest lost row
    for row in rows:
        if _stale(row, now):
            if row.nodename not in lost or row.last_poll_at > lost[row.nodename].last_poll_at:
                lost[row.nodename] = row
        elif row.stopped_at is None:
            seen = alive_since.get(row.nodename)
            alive_since[row.nodename] = min(seen, row.started_at) if seen else row.started_at
    known = {row.nodename for row in rows}
    result = LostSweep(lost_workers=len(lost))

    running = Job.objects.filter(state=JobState.RUNNING).exclude(worker_hostname="")
    # What the loop below skips is excluded here too, so skipped Jobs never fill a sweep's limit.
    for node, since in alive_since.items():
        running = running.exclude(worker_hostname=node, started_at__gte=since)
    for node, row in lost.items():
        running = running.exclude(
            worker_hostname=node, started_at__gt=row.last_poll_at + timedelta(seconds=row.lost_after_seconds)
        )
    candidates = running.filter(worker_hostname__in=list(lost)) if lost else running.none()
    missing = running.exclude(worker_hostname__in=list(known)).filter(
        started_at__lt=now - timedelta(seconds=MISSING_ROW_SECONDS)
    )
    jobs = list(
        (candidates | missing)
        .order_by("started_at", "id")
        .values("pk", "worker_hostname", "worker_pid", "attempts", "started_at")[:limit]
    )
    for job in jobs:
        result.checked += 1
        node = job["worker_hostname"]
        since = alive_since.get(node)
        if since is not None and job["started_at"] is not None and since <= job["started_at"]:
            continue  # a live worker of that name may be running it
        row = lost.get(node)
        if (
            row is not None
            and job["started_at"] is not None
            and job["started_at"] > row.last_poll_at + timedelta(seconds=row.lost_after_seconds)
        ):
            continue  # started after that row was already lost: not by it
        worker = (
            LostWorker(node, row.pid, row.last_poll_at, row.lost_after_seconds)
            if row is not None
            else LostWorker(node, None, None, MISSING_ROW_SECONDS)
        )
        state = job_mark_worker_lost(
            job_id=job["pk"],
            attempts=job["attempts"],
            worker_hostname=node,
            started_at=job["started_at"],
            lost=worker.describe(now),
            worker=f"{node}:{job['worker_pid']}" if job["worker_pid"] else node,
        )
        if state == JobState.QUEUED:
            result.requeued.append(job["pk"])
        elif state == JobState.DEAD_LETTERED:
            result.dead_lettered.append(job["pk"])
    return result
