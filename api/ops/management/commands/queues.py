"""manage.py queues [--watch [SECONDS]] [--count N] [--json]: the queues page's numbers as a table or JSON.

Exits 1 when a queue of the (last) refresh could not be read, all or only some of them, or CloudWatch's metrics
(the ages, the throughput): the table is still shown, with the error beside each queue it could not read, and
what failed is named on stderr.
"""

from __future__ import annotations

import json
import time

from django.core.management.base import BaseCommand, CommandError

from api.ops.queue_stats import SOURCES, OldestAge, QueuesSnapshot, human_age
from api.ops.services import EXPIRED_WINDOW_MINUTES, queues_snapshot
from core.dlq.summary import format_age

COLUMNS = (
    "queue",
    "visible",
    "in flight",
    "delayed",
    "oldest age",
    "deleted/min",
    "dlq depth",
    "dlq oldest",
    f"expired {EXPIRED_WINDOW_MINUTES}m",
    "expired",
    "error",
)
CLEAR_SCREEN = "\x1b[H\x1b[2J"


def _na(value) -> str:
    return "n/a" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def _age(age: OldestAge) -> str:
    """As `dlq summary` says an age; "empty" when SQS counts no message in the queue now."""
    return "empty" if age.basis == "empty" else format_age(age.seconds)


def _oldest_point_age(snapshot: QueuesSnapshot) -> str:
    ages = [
        seconds
        for q in snapshot.queues
        for age in (q.oldest, q.dlq_oldest)
        if (seconds := age.point_age_seconds(snapshot.at)) is not None
    ]
    return f"; its datapoints are up to {human_age(max(ages))} old" if ages else "; no datapoint yet"


def format_table(snapshot: QueuesSnapshot) -> str:
    rows = [
        (
            q.key,
            _na((q.counts or {}).get("visible")),
            _na((q.counts or {}).get("in_flight")),
            _na((q.counts or {}).get("delayed")),
            _age(q.oldest),
            _na(q.deleted_last_minute),
            _na(q.dlq_depth),
            _age(q.dlq_oldest),
            _na(q.expired_recent),
            _na(q.expired_total),
            q.error or "",
        )
        for q in snapshot.queues
    ]
    widths = [max(len(str(cell)) for cell in column) for column in zip(COLUMNS, *rows, strict=True)]
    text_columns = (0, len(COLUMNS) - 1)  # queue and error left-aligned, numbers right-aligned
    lines = [
        "  ".join(
            cell.ljust(width) if i in text_columns else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in [COLUMNS, *rows]
    ]
    notes = [
        f"at {snapshot.at:%Y-%m-%d %H:%M:%S} UTC; SQS {snapshot.endpoints.get('sqs', '?')}, "
        f"CloudWatch {snapshot.endpoints.get('cloudwatch', '?')}",
        f"counts: {SOURCES['counts']}",
        f"oldest age, dlq oldest: {SOURCES['oldest_age']}{_oldest_point_age(snapshot)}",
        f"deleted/min: {SOURCES['throughput']}, latest datapoint",
        f"expired: {SOURCES['expired']}, last {EXPIRED_WINDOW_MINUTES} min and in all",
    ]
    if snapshot.metrics_error:
        notes.append(f"CloudWatch failed: {snapshot.metrics_error}")
    return "\n".join(lines + [""] + notes)


def unread(snapshot: QueuesSnapshot) -> str | None:
    """What could not be read, for the exit message; None when everything was."""
    failed = [q.key for q in snapshot.queues if q.error]
    problems = []
    if failed:
        problems.append(
            f"could not read {len(failed)} of {len(snapshot.queues)} queues: {', '.join(failed)} (see the error column)"
        )
    if snapshot.metrics_error:
        problems.append(f"could not read CloudWatch's metrics (ages, deleted/min): {snapshot.metrics_error}")
    return "; ".join(problems) or None


class Command(BaseCommand):
    help = "The numbers of every topology queue (the /ops/queues page's) as a table, or JSON for scripts."

    def add_arguments(self, parser):
        parser.add_argument(
            "--watch",
            nargs="?",
            type=float,
            const=5.0,
            metavar="SECONDS",
            help="refresh every SECONDS (default 5) until Ctrl-C or --count",
        )
        parser.add_argument("--count", type=int, help="with --watch: stop after this many refreshes")
        parser.add_argument(
            "--json", action="store_true", dest="as_json", help="one JSON object per refresh (JSON lines)"
        )

    def handle(self, *args, watch: float | None, count: int | None, as_json: bool, **options):
        if watch is not None and watch <= 0:
            raise CommandError("--watch takes a number of seconds above 0")
        if count is not None and count < 1:
            raise CommandError("--count takes a number above 0")
        if count is not None and watch is None:
            raise CommandError("--count goes with --watch")
        clear = watch is not None and not as_json and self.stdout.isatty()
        shown, snapshot = 0, None
        try:
            while True:
                snapshot = queues_snapshot()
                self._show(snapshot, as_json=as_json, clear=clear)
                shown += 1
                if watch is None or (count is not None and shown >= count):
                    break
                time.sleep(watch)
        except KeyboardInterrupt:
            pass
        if snapshot is not None and (failure := unread(snapshot)):
            raise CommandError(failure)

    def _show(self, snapshot: QueuesSnapshot, *, as_json: bool, clear: bool) -> None:
        if as_json:
            self.stdout.write(json.dumps(snapshot.as_dict()))
            return
        self.stdout.write((CLEAR_SCREEN if clear else "") + format_table(snapshot) + "\n")
