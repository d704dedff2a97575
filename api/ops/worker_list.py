"""The workers page's and `manage.py workers`' one reading of the worker registry: alive, lost or stopped."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

from workers.models import WorkerRegistration
from workers.registry.writer import registry_keep

ALIVE, LOST, STOPPED = "alive", "lost", "stopped"
ORDER = {ALIVE: 0, LOST: 1, STOPPED: 2}


@dataclass
class RunningTask:
    task_id: str
    name: str
    since: str
    job_id: int | None = None
    running_for: str = ""  # "12 s", "3 min": for the page and the command
    job_state: str = ""  # its Job's state now: a lost worker's Job is `queued` again once the sweep released it


@dataclass
class WorkerRow:
    worker_id: str
    status: str
    nodename: str
    host: str
    pid: int
    queues: list[str]
    concurrency: int
    prefetch: int
    version: str
    started_at: str
    last_poll_at: str
    renewed_at: str
    seconds_since_renewal: float
    seconds_since_poll: float
    up_for: str
    last_poll_ago: str
    lost_after_seconds: int
    renewals: int
    stopped_at: str | None
    counts: dict
    running: list[RunningTask] = field(default_factory=list)


@dataclass
class WorkersReport:
    at: str
    workers: list[WorkerRow]

    def as_dict(self) -> dict:
        totals = {status: sum(1 for w in self.workers if w.status == status) for status in ORDER}
        return {"at": self.at, "totals": totals, "workers": [asdict(w) for w in self.workers]}


def status_of(row: WorkerRegistration, now: datetime) -> str:
    """Stopped if it said so; lost once the last poll its row shows is older than the bound the worker wrote
    into it (a dead worker writes no more; a live one whose loop is stuck writes no newer poll)."""
    if row.stopped_at is not None:
        return STOPPED
    if (now - row.last_poll_at).total_seconds() > row.lost_after_seconds:
        return LOST
    return ALIVE


def _job_ids(task_ids: set[str]) -> dict[str, tuple[int, str]]:
    """The Job (if any) of each running task and its state now, read by task id."""
    if not task_ids:
        return {}
    from api.jobs.models import Job

    jobs = Job.objects.filter(task_id__in=task_ids).values_list("pk", "task_id", "state")
    return {str(task_id): (pk, state) for pk, task_id, state in jobs}


def _row(row: WorkerRegistration, status: str, now: datetime, jobs: dict[str, tuple[int, str]]) -> WorkerRow:
    # A lost or stopped worker's times end at its last poll: its tasks ran that long when it was last seen.
    until = now if status == ALIVE else row.last_poll_at
    return WorkerRow(
        worker_id=row.worker_id,
        status=status,
        nodename=row.nodename,
        host=row.host,
        pid=row.pid,
        queues=list(row.queues),
        concurrency=row.concurrency,
        prefetch=row.prefetch,
        version=row.version,
        started_at=row.started_at.isoformat(),
        last_poll_at=row.last_poll_at.isoformat(),
        renewed_at=row.renewed_at.isoformat(),
        seconds_since_renewal=round(max(0.0, (now - row.renewed_at).total_seconds()), 1),
        seconds_since_poll=round(max(0.0, (now - row.last_poll_at).total_seconds()), 1),
        up_for=_age(row.started_at.isoformat(), until),
        last_poll_ago=_age(row.last_poll_at.isoformat(), now),
        lost_after_seconds=row.lost_after_seconds,
        renewals=row.renewals,
        stopped_at=row.stopped_at.isoformat() if row.stopped_at else None,
        counts=dict(row.counts),
        running=[
            RunningTask(
                **task,
                job_id=jobs.get(task["task_id"], (None, ""))[0],
                job_state=jobs.get(task["task_id"], (None, ""))[1],
                running_for=_age(task["since"], until),
            )
            for task in row.running
        ],
    )


def workers_report(now: datetime | None = None) -> WorkersReport:
    """Every registered worker not yet pruned, alive first, then lost (with the tasks it had), then stopped.
    Raises the database's error when the registry cannot be read."""
    now = now or datetime.now(UTC)
    rows = list(WorkerRegistration.objects.filter(renewed_at__gte=now - registry_keep()))
    jobs = _job_ids({task["task_id"] for row in rows for task in row.running})
    workers = [_row(row, status_of(row, now), now, jobs) for row in rows]
    workers.sort(key=lambda w: (ORDER[w.status], w.nodename, w.started_at))
    return WorkersReport(at=now.isoformat(), workers=workers)


def _age(iso: str, now: datetime) -> str:
    seconds = max(0, int((now - datetime.fromisoformat(iso)).total_seconds()))
    return f"{seconds} s" if seconds < 120 else f"{seconds // 60} min" if seconds < 7200 else f"{seconds // 3600} h"


def format_text(report: WorkersReport) -> str:
    """The command's plain-text table: one line per worker, one indented line per running task."""
    if not report.workers:
        return "no workers registered (a worker registers at its first poll)"
    lines = []
    for w in report.workers:
        c = w.counts
        lines.append(
            f"{w.status.upper():8} {w.nodename} pid {w.pid} on {','.join(w.queues)}  "
            f"concurrency {w.concurrency} prefetch {w.prefetch}  up {w.up_for}  last poll {w.last_poll_ago} ago  "
            f"{c.get('window_minutes', 15)} min: {c.get('done', 0)} done, {c.get('failed', 0)} failed, "
            f"{c.get('retried', 0)} retried  ({w.version})"
        )
        for t in w.running:
            job = f" job {t.job_id}" if t.job_id is not None else ""
            if job and w.status == LOST:
                job += f" (now {t.job_state})"
            lines.append(f"         running {t.name}[{t.task_id}]{job} for {t.running_for}")
    return "\n".join(lines)
