"""Exactly one beat: django-celery-beat's scheduler, ticking only while it holds a lease in the database.

A second beat (a deploy overlap, a task ECS thinks is dead) stays on standby: it renews nothing and sends
nothing, and takes over within one lease period once the holder stops renewing. The holder renews with a
compare-and-set before every tick, so a holder that lost its lease (paused, partitioned) stops sending.

PostgreSQL and SQLite behave the same: the lease is an ordinary row. (An advisory lock would hand over
faster, at the moment the holder's connection drops, but exists only on PostgreSQL and is tied to one
connection that Django may recycle.) On SQLite every beat must share the database file, so this only
guards beats on one machine.
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone
from django_celery_beat.schedulers import DatabaseScheduler

from core.env import env_int
from workers.health import Liveness
from workers.owner import process_owner

logger = logging.getLogger(__name__)

LEASE_NAME = "beat"


class BeatLeaseHolder:
    """Acquire or renew the beat lease; True while this process holds it."""

    def __init__(self, seconds: int):
        self.seconds = seconds
        self.owner = f"{process_owner()}:{uuid.uuid4().hex[:8]}"
        self.holding = False

    def hold(self) -> bool:
        from workers.models import BeatLease

        now = timezone.now()
        until = now + timedelta(seconds=self.seconds)
        got = bool(
            BeatLease.objects.filter(name=LEASE_NAME)
            .filter(Q(owner=self.owner) | Q(expires_at__lt=now))
            .update(owner=self.owner, expires_at=until)
        )
        if not got:
            try:
                with transaction.atomic():
                    BeatLease.objects.create(name=LEASE_NAME, owner=self.owner, expires_at=until)
                got = True
            except IntegrityError:
                got = False
        if got != self.holding:
            logger.warning("beat %s: %s the lease", self.owner, "acquired" if got else "lost (standby)")
            self.holding = got
        return got

    def release(self) -> None:
        from workers.models import BeatLease

        BeatLease.objects.filter(name=LEASE_NAME, owner=self.owner).delete()
        self.holding = False


class LockedDatabaseScheduler(DatabaseScheduler):
    """DatabaseScheduler that sends only while it holds the beat lease, and proves liveness every tick."""

    def __init__(self, *args, **kwargs):
        self.lease = BeatLeaseHolder(env_int("BEAT_LEASE_SECONDS", 15))
        self.liveness = Liveness("beat")
        super().__init__(*args, **kwargs)

    def tick(self, *args, **kwargs):
        self.liveness.touch()
        if not self.lease.hold():
            return min(self.max_interval, max(1, self.lease.seconds / 3))
        return min(super().tick(*args, **kwargs), max(1, self.lease.seconds / 3))

    def close(self):
        try:
            super().close()
        finally:
            if self.lease.holding:
                self.lease.release()  # a clean stop hands over at once
