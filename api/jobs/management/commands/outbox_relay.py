"""`manage.py outbox_relay`: publish committed Jobs the request did not publish, and release the Jobs of lost
workers (api/jobs/lost_workers.py); safe to run several."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from api.jobs.lost_workers import sweep_lost_workers
from api.jobs.relay_loop import RelayLoop, liveness_problem

logger = logging.getLogger("api.jobs.relay_loop")


class Command(BaseCommand):
    help = "Run the outbox relay's sweep until SIGTERM/SIGINT (or --max-seconds)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--max-seconds", type=float, default=None, help="stop after this long")
        parser.add_argument("--check", action="store_true", help="health check: exit 1 unless a relay swept lately")

    def handle(self, *args, max_seconds: float | None = None, check: bool = False, **options) -> None:
        liveness = Path(settings.OUTBOX_RELAY_LIVENESS_FILE)
        if check:
            if problem := liveness_problem(liveness, settings.OUTBOX_RELAY):
                raise CommandError(problem, returncode=1)
            self.stdout.write("outbox relay: healthy")
            return
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        config = settings.OUTBOX_RELAY
        logger.info(
            "outbox relay started: sweep every %g s (up to %g s while failing), publish budget %g s",
            config.sweep_seconds,
            config.sweep_max_seconds,
            settings.PUBLISH_BUDGET.seconds,
        )
        loop = RelayLoop(liveness=liveness, lost_sweep=sweep_lost_workers)
        loop.run(stop, max_seconds=max_seconds)
        logger.info(
            "outbox relay stopped after %d sweeps; published %d; released %d Jobs of lost workers",
            loop.sweeps,
            loop.published,
            loop.released,
        )
