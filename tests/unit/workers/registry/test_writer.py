"""The registry's writer thread: the event loop never waits on the database, and the newest snapshot wins."""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime

import pytest
from django.db import OperationalError

from workers.registry.snapshot import WorkerIdentity, WorkerSnapshot
from workers.registry.writer import RegistryWriter, lost_after, registry_interval, stopped

IDENTITY = WorkerIdentity(nodename="worker@test", queues=("default",), concurrency=2, prefetch=2)
JOIN = 10  # seconds a test waits for the writer thread at most (a bound, not a speed goal)


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Database:
    """A fake store: hangs while `hung` is clear, refuses while `refusals` > 0, records what it wrote."""

    def __init__(self):
        self.hung = threading.Event()
        self.hung.set()
        self.refusals = 0
        self.entered = threading.Event()
        self.written: list[tuple[float, int]] = []
        self.done = threading.Condition()

    def write(self, snapshot: WorkerSnapshot, renewals: int) -> None:
        self.entered.set()
        assert self.hung.wait(JOIN), "the test never released the hung database"
        if self.refusals:
            self.refusals -= 1
            raise OperationalError("connection refused")
        with self.done:
            self.written.append((snapshot.last_poll_at.timestamp(), renewals))
            self.done.notify_all()

    def wait_for(self, count: int) -> None:
        with self.done:
            assert self.done.wait_for(lambda: len(self.written) >= count, timeout=JOIN), self.written


def snapshot_at(tick: float) -> WorkerSnapshot:
    return WorkerSnapshot(identity=IDENTITY, last_poll_at=datetime.fromtimestamp(tick, UTC))


def written_at_first_tick(interval: float) -> tuple[RegistryWriter, Database]:
    """A writer on the real clock whose database answers, started and written once, at tick 1000."""
    db = Database()
    writer = RegistryWriter(snapshot=snapshot_at, write=db.write, interval=interval)
    writer.start()
    writer.renew(1000.0)
    db.wait_for(1)
    return writer, db


@pytest.fixture
def setup():
    clock, db = Clock(), Database()
    taken: list[float] = []

    def take(tick: float) -> WorkerSnapshot:
        taken.append(tick)
        return snapshot_at(tick)

    writer = RegistryWriter(snapshot=take, write=db.write, interval=15, clock=clock)
    writer.start()
    yield writer, clock, db, taken
    db.hung.set()
    writer.stop(timeout=JOIN)


def test_at_most_one_write_per_interval_however_often_the_liveness_ticks(setup):
    writer, clock, db, taken = setup
    # GIVEN a first tick, written at once
    writer.renew(1000.0)
    db.wait_for(1)
    # WHEN ticks come every second for a minute, then one more at 75 s
    for second in range(1, 61):
        clock.now = float(second)
        writer.renew(1000.0 + second)
    clock.now = 75.0
    writer.renew(1075.0)
    _wait_until(lambda: db.written[-1][0] == 1075.0)
    # THEN at most one write per 15 s (0, 15, 30, 45, 60, 75), the newest tick last, renewals counted
    assert len(db.written) <= 6
    assert [n for _tick, n in db.written] == list(range(1, len(db.written) + 1))


def test_a_hung_database_never_holds_the_event_loop_and_the_newest_snapshot_is_written(setup):
    writer, clock, db, taken = setup
    # GIVEN a database that hangs on the first write
    db.hung.clear()
    writer.renew(1000.0)
    assert db.entered.wait(JOIN)

    # WHEN the liveness ticks go on for five more intervals while the write hangs (on another thread, so a
    # tick that waited on the write would show as a thread still alive)
    def ticks() -> None:
        for n in range(1, 6):
            clock.now = 15.0 * n
            writer.renew(1000.0 + 15 * n)

    loop = threading.Thread(target=ticks)
    loop.start()
    loop.join(JOIN)
    # THEN every tick returned while the write was still hung
    assert not loop.is_alive()
    assert not db.hung.is_set()
    # WHEN the database answers again
    db.hung.set()
    db.wait_for(2)
    # THEN the hung write lands, then only the newest tick: nothing queued up behind the hang
    assert db.written == [(1000.0, 1), (1075.0, 2)]
    assert taken == [1000.0, 1075.0]


def test_a_task_starting_between_ticks_is_written_once_the_interval_allows(setup):
    writer, clock, db, taken = setup
    # GIVEN a worker written at its first tick
    writer.renew(1000.0)
    db.wait_for(1)
    # WHEN a task starts 15 s later, with no tick since (a long poll in flight)
    clock.now = 15.0
    writer.changed()
    # THEN the row is written again (the new task shows), with the last tick it saw
    db.wait_for(2)
    assert db.written[1] == (1000.0, 2)


def test_tasks_starting_and_ending_between_writes_wake_the_thread_once():
    # GIVEN a writer on the real clock (an interval of 1 s), written at its first tick, its thread back asleep
    writer, db = written_at_first_tick(interval=1.0)
    _wait_until(lambda: writer.wakeups == 1)
    # WHEN 100 tasks start or end a millisecond apart, with a liveness tick every 10 of them, within the interval
    pause = threading.Event()
    for n in range(100):
        writer.changed()
        if n % 10 == 0:
            writer.renew(1000.0 + n)
        pause.wait(0.001)
    wakeups = writer.wakeups
    # THEN the thread woke a few times at most, not once per call (each wake-up costs the worker's main process a
    # GIL hand-off and a context switch, twice per task); the changes are written once the interval allows, with the
    # newest tick
    _wait_until(lambda: db.written[-1][0] == 1090.0)
    assert wakeups <= 3
    writer.stop(timeout=JOIN)


def test_a_refusing_database_is_logged_once_and_the_next_snapshot_is_written(setup, caplog):
    writer, clock, db, _taken = setup
    caplog.set_level(logging.WARNING, logger="workers.registry.writer")
    # GIVEN a database that refuses the next two writes
    db.refusals = 2
    for n in range(3):
        clock.now = 15.0 * n
        writer.renew(1000.0 + 15 * n)
        if n < 2:
            _wait_until(lambda n=n: writer.failures == n + 1)
    # THEN the third one is written, counted as the first renewal; one warning for the outage, one for its end
    db.wait_for(1)
    _wait_until(lambda: writer.renewals == 1)
    assert db.written == [(1030.0, 1)]
    messages = [r.getMessage() for r in caplog.records]
    assert sum("cannot write" in m for m in messages) == 1
    assert sum("writing again" in m for m in messages) == 1


def test_a_clean_stop_writes_the_stopped_row_but_a_hung_database_cannot_hold_the_shutdown():
    # GIVEN a writer whose database answers, after one tick
    writer, db = written_at_first_tick(interval=15)
    # WHEN the worker stops THEN its stopped row is written
    assert writer.stop(lambda tick: stopped(snapshot_at(tick)), timeout=JOIN) is True
    assert db.written == [(1000.0, 1), (1000.0, 2)]

    # GIVEN a writer whose database hangs
    hung = Database()
    hung.hung.clear()
    writer = RegistryWriter(snapshot=snapshot_at, write=hung.write, interval=15)
    writer.start()
    writer.renew(1000.0)
    assert hung.entered.wait(JOIN)
    # WHEN the worker stops THEN stop gives up after its timeout and says the row was not written
    assert writer.stop(lambda tick: stopped(snapshot_at(tick)), timeout=0.2) is False
    hung.hung.set()


def test_the_lost_bound_covers_two_missed_renewals_after_the_longest_tick_gap():
    # 15 s renewals, a 20 s long poll + 1 s polling interval between two liveness ticks at worst, 5 s to write
    assert lost_after(15, 21) == 56
    assert lost_after(1, 21) == 28


@pytest.mark.parametrize("value", ["0", "-1", "301", "soon"])
def test_a_bad_interval_is_refused_at_start_up(monkeypatch, value):
    monkeypatch.setenv("WORKER_REGISTRY_SECONDS", value)
    with pytest.raises(ValueError, match="WORKER_REGISTRY_SECONDS"):
        registry_interval()


def _wait_until(condition) -> None:
    event = threading.Event()
    for _ in range(JOIN * 100):
        if condition():
            return
        event.wait(0.01)
    raise AssertionError("condition never held")
