"""`manage.py outbox_relay`: publish committed Jobs the request did not publish (safe to run several)."""

from __future__ import annotations

import logging
import signal
import threading

from django.conf import settings
from django.core.management.base import BaseCommand

from api.jobs.relay_loop import RelayLoop

logger = logging.getLogger("api.jobs.relay_loop")


class Command(BaseCommand):
    help = "Run the outbox relay's sweep until SIGTERM/SIGINT (or --max-seconds)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--max-seconds", type=float, default=None, help="stop after this long")

    def handle(self, *args, max_seconds: float | None = None, **options) -> None:
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
        loop = RelayLoop()
        loop.run(stop, max_seconds=max_seconds)
        logger.info("outbox relay stopped after %d sweeps; published %d", loop.sweeps, loop.published)
