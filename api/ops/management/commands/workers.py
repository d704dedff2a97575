"""`manage.py workers [--json] [--watch N]`: the worker registry (alive, lost, stopped), as /ops/workers shows it."""

from __future__ import annotations

import json
import time

from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError

from api.ops.worker_list import format_text, workers_report


class Command(BaseCommand):
    help = "List the workers of the registry: alive, lost (with the tasks they were running) or stopped."

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true", help="one JSON object (per refresh with --watch)")
        parser.add_argument("--watch", type=float, metavar="N", help="refresh every N seconds until interrupted")

    def handle(self, *args, **options):
        as_json, watch = options["json"], options["watch"]
        if watch is not None and watch <= 0:
            raise CommandError("--watch takes a number of seconds above 0")
        try:
            while True:
                self._show(as_json=as_json)
                if watch is None:
                    return
                time.sleep(watch)
        except KeyboardInterrupt:
            return

    def _show(self, *, as_json: bool) -> None:
        try:
            report = workers_report()
        except DatabaseError as exc:
            raise CommandError(f"cannot read the worker registry: {type(exc).__name__}: {exc}") from exc
        if as_json:
            self.stdout.write(json.dumps(report.as_dict()))
        else:
            self.stdout.write(format_text(report))
