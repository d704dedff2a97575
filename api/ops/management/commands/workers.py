"""`manage.py workers [--json] [--watch N] [--count K] [--sweep]`: the worker registry (alive, lost, stopped), as
/ops/workers shows it; --sweep first releases the Jobs of lost workers (api/jobs/lost_workers.py, as the relay
does). Exits 1 when the registry cannot be read."""

from __future__ import annotations

import json
import time

from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError

from api.jobs.lost_workers import sweep_lost_workers
from api.ops.worker_list import format_text, workers_report


class Command(BaseCommand):
    help = "List the workers of the registry: alive, lost (with the tasks they were running) or stopped."

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true", help="one JSON object per refresh")
        parser.add_argument("--watch", type=float, metavar="N", help="refresh every N seconds until Ctrl-C or --count")
        parser.add_argument("--count", type=int, help="with --watch: stop after this many refreshes")
        parser.add_argument(
            "--sweep",
            action="store_true",
            help="first put the Jobs running on lost workers back to queued (dead_lettered on their last receive)",
        )

    def handle(self, *args, **options):
        as_json, watch, count = options["json"], options["watch"], options["count"]
        if watch is not None and watch <= 0:
            raise CommandError("--watch takes a number of seconds above 0")
        if count is not None and (watch is None or count < 1):
            raise CommandError("--count takes a number above 0, with --watch")
        if options["sweep"]:
            self._sweep()
        shown = 0
        try:
            while True:
                self._show(as_json=as_json, separator=watch is not None and not as_json and shown > 0)
                shown += 1
                if watch is None or (count is not None and shown >= count):
                    return
                time.sleep(watch)
        except KeyboardInterrupt:
            return

    def _sweep(self) -> None:
        try:
            swept = sweep_lost_workers()
        except DatabaseError as exc:
            raise CommandError(f"cannot sweep for lost workers: {type(exc).__name__}: {exc}") from exc
        self.stderr.write(
            f"lost-worker sweep: {swept.lost_workers} lost workers; Jobs back to queued {swept.requeued}, "
            f"dead_lettered {swept.dead_lettered}"
        )

    def _show(self, *, as_json: bool, separator: bool) -> None:
        try:
            report = workers_report()
        except DatabaseError as exc:
            raise CommandError(f"cannot read the worker registry: {type(exc).__name__}: {exc}") from exc
        if separator:
            self.stdout.write("")
        self.stdout.write(json.dumps(report.as_dict()) if as_json else format_text(report))
