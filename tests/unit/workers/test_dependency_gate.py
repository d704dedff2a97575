"""Unit tests of the dependency gate: close, probe with backoff, reopen; the channel parked meanwhile; health."""

from __future__ import annotations

import json
import logging
import os
import pickle
import time
from unittest import mock

import pytest
from billiard.einfo import ExceptionInfo
from celery.contrib.testing.mocks import TaskMessage
from celery.worker.request import create_request_cls

from workers import dependency_gate as gate_module
from workers import healthcheck
from workers.dependency_errors import DependencyDown
from workers.dependency_gate import DependencyGate, dependency_down_message, pause_file, paused_in_parent
from workers.health import Liveness


class CountingLiveness:
    def __init__(self):
        self.touches = 0

    def touch(self) -> None:
        self.touches += 1


class ProbeScript:
    """A database that fails `failures` probes, then answers; records the seconds waited before each probe."""

    def __init__(self, failures: int):
        self.failures, self.calls, self.waited, self._since_last = failures, 0, [], 0.0

    def wait(self, seconds: float) -> None:
        self._since_last += seconds

    def __call__(self) -> str | None:
        self.calls += 1
        self.waited.append(self._since_last)
        self._since_last = 0.0
        return "OperationalError: connection refused" if self.calls <= self.failures else None


@pytest.fixture(autouse=True)
def liveness_file(tmp_path, monkeypatch):
    path = tmp_path / "liveness"
    monkeypatch.setenv("WORKER_LIVENESS_FILE", str(path))
    return path


def make_gate(probe: ProbeScript, *, first: float = 1, maximum: float = 5):
    spawned: list = []
    gate = DependencyGate(
        probe=probe,
        first_delay=first,
        max_delay=maximum,
        liveness=CountingLiveness(),
        wait=probe.wait,
        spawn=spawned.append,  # the probe thread's body, run by the test
    )
    return gate, spawned


class Watcher:
    def __init__(self):
        self.reopened = 0

    def on_reopen(self) -> None:
        self.reopened += 1


def gate_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "workers.dependency_gate"]


def test_close_probe_with_backoff_reopen_one_line_each(caplog):
    caplog.set_level(logging.WARNING, logger="workers.dependency_gate")
    # GIVEN an open gate, a channel watching it, and a database that fails 5 probes before it answers
    probe = ProbeScript(failures=5)
    gate, spawned = make_gate(probe)
    watcher = Watcher()
    gate.watch(watcher.on_reopen)

    # WHEN two tasks fail on the database, one after the other
    assert gate.close("OperationalError: connection failed: Connection refused") is True
    assert gate.close("OperationalError: server closed the connection") is False

    # THEN it is closed once: one line, one probe thread, the pause written for the health check
    assert gate.closed and len(spawned) == 1
    assert gate_lines(caplog) == [
        "dependency down: database (OperationalError: connection failed: Connection refused): paused receiving; "
        "running tasks finish or fail, unstarted ones are handed back; probing every 1-5 s"
    ]
    pause = json.loads(pause_file().read_text())
    assert (pause["dependency"], pause["pid"]) == ("database", os.getpid())

    # WHEN the probe thread runs until the database answers
    spawned[0]()

    # THEN it probed with doubling waits capped at the maximum, and reopened once, waking the watcher
    assert probe.waited == [1, 2, 4, 5, 5, 5]
    assert not gate.closed and watcher.reopened == 1
    assert not pause_file().exists()
    assert len(gate_lines(caplog)) == 2
    assert gate_lines(caplog)[1].startswith("dependency back: database answered after ")
    assert gate_lines(caplog)[1].endswith("(6 probe(s)): resumed receiving")
    # AND the liveness file was kept fresh while it waited
    assert gate.liveness.touches >= 6

    # WHEN the database fails again later THEN the gate closes again (a new pause, a new line)
    assert gate.close("OperationalError: again") is True
    assert len(gate_lines(caplog)) == 3


def test_closed_again_right_after_a_reopen_it_waits_the_longest_delay_first():
    # GIVEN a gate that just reopened (the probe answered)
    probe = ProbeScript(failures=0)
    gate, spawned = make_gate(probe, first=1, maximum=5)
    gate.close("OperationalError: refused")
    spawned[0]()
    assert probe.waited == [1]
    # WHEN a task fails on the database again at once (the probe sees a database the tasks do not)
    gate.close("OperationalError: refused")
    spawned[1]()
    # THEN the next probe waits the maximum: a flapping dependency pauses the worker, it does not churn
    assert probe.waited == [1, 5]


def test_a_long_wait_touches_the_liveness_file_every_few_seconds():
    # GIVEN a gate whose next probe is 30 s away
    probe = ProbeScript(failures=0)
    gate, spawned = make_gate(probe, first=30, maximum=30)
    gate.close("OperationalError: refused")
    # WHEN it waits THEN the liveness file is touched at least every LIVENESS_SECONDS (the health check stays fresh)
    spawned[0]()
    assert gate.liveness.touches >= 30 / gate_module.LIVENESS_SECONDS


def test_probe_delays_are_validated():
    with pytest.raises(ValueError, match="WORKER_DEPENDENCY_PROBE_SECONDS"):
        DependencyGate(first_delay=10, max_delay=5)


def test_probe_database_answers_with_a_fresh_connection(db):
    # GIVEN the test database WHEN probed THEN it answers (None), on a connection of its own
    assert gate_module.probe_database() is None


def test_probe_database_reports_why_not(settings, db):
    # GIVEN a database URL where nothing listens
    from devstack.processes import free_port

    db = {**settings.DATABASES["default"]}
    dead = {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": "x",
        "USER": "postgres",
        "HOST": "127.0.0.1",
        "PORT": free_port(),
    }
    with mock.patch("django.db.connections.settings", {"default": {**db, **dead, "OPTIONS": {}}}):
        # WHEN probed THEN it says why, without raising
        assert "OperationalError" in gate_module.probe_database(timeout=1)


# --- the channel: parked while closed, resumed on the event loop when the gate reopens -------------------


def test_a_closed_gate_parks_the_receive_loop_until_it_reopens(make_channel, monkeypatch):
    # GIVEN a channel consuming `default` and a gate the database has closed
    probe = ProbeScript(failures=1)
    gate, spawned = make_gate(probe)
    monkeypatch.setattr("workers.transport.dependency_pause.dependency_gate", gate)
    channel, receives = make_channel()
    channel._active_queues.append("default")
    gate.close("OperationalError: refused")

    # WHEN its loop comes round, and again when the fallback timer fires
    channel._schedule_queue("default")
    channel.hub.run_later()
    channel.hub.run_soon()

    # THEN no ReceiveMessage: the loop waits, parked (one loop per queue, as for a busy slot)
    assert receives == []
    assert list(channel.pacer.waiting) == ["default"]

    # WHEN the database answers (the probe thread reopens the gate)
    spawned[0]()
    # THEN the resume is scheduled on the event loop, and the loop receives once
    assert [cb.__name__ for cb, _args in channel.hub.soon] == ["_resume_after_gate"]
    channel.hub.run_soon()
    channel.hub.run_soon()
    assert receives == ["default"]
    assert not channel.pacer.waiting


def test_a_closed_gate_stops_the_receives_ahead_too(make_channel, monkeypatch):
    from tests.unit.workers.test_fetch_when_slot_frees import consuming_channel

    # GIVEN a worker of 4 slots whose queue is hot: 3 tasks running, the loop's receive out for the 4th
    gate, _spawned = make_gate(ProbeScript(failures=1))
    monkeypatch.setattr("workers.transport.dependency_pause.dependency_gate", gate)
    channel, sqs, delivered = consuming_channel(make_channel, prefetch=4)
    sqs.answer(3)
    channel.hub.run_soon()
    assert [c["count"] for c in sqs.calls] == [4, 1]

    # WHEN the database goes away, and a task ends (handed back, as a DependencyDown is)
    gate.close("OperationalError: refused")
    channel.basic_reject(delivered[0].delivery_tag, requeue=False)
    channel.hub.run_soon()

    # THEN no receive goes out ahead of the loop: an outage spends no receives
    assert len(sqs.calls) == 2


def test_an_open_gate_changes_nothing(make_channel, monkeypatch):
    # GIVEN an open gate
    gate, _spawned = make_gate(ProbeScript(failures=0))
    monkeypatch.setattr("workers.transport.dependency_pause.dependency_gate", gate)
    channel, receives = make_channel()
    channel._active_queues.append("default")
    # WHEN the loop comes round THEN it receives at once
    channel._schedule_queue("default")
    assert receives == ["default"]


def test_a_requeued_message_is_visible_again_at_once(make_channel):
    """Contract (kombu 5.7): QoS.reject(requeue=True) -> Channel._restore -> _put(redelivered) -> _hand_back,
    which the hand-back of a DependencyDown relies on."""
    # GIVEN a message the worker holds
    from kombu import Producer

    channel, _receives = make_channel()
    Producer(channel).publish({"n": 1}, routing_key="default", exchange="", serializer="json")
    message = channel.basic_get("default", no_ack=False)
    # WHEN Celery rejects it with requeue
    channel.basic_reject(message.delivery_tag, requeue=True)
    # THEN SQS has it visible again now, not after the visibility timeout
    url = channel._new_queue("default")
    again = make_channel.client.receive_message(QueueUrl=url, WaitTimeSeconds=0)
    assert len(again.get("Messages", [])) == 1


# --- the main process learns of it: Celery's Request ---------------------------------------------------------


def test_the_main_process_closes_the_gate_and_hands_the_message_back(monkeypatch):
    """Contract (Celery 5.7): a pool child's failure reaches the main process as Request.on_success((True,
    ExceptionInfo, runtime)) of the class create_request_cls() builds on Task.Request, which calls
    on_failure; for Reject(requeue=True) Celery rejects with requeue and records no failure."""
    import api.jobs.tasks  # noqa: F401  (registers the tasks, as the worker's autodiscovery does)
    import api.newsletter.tasks  # noqa: F401
    from workers.celery_app import app
    from workers.registry.request import RegistryRequest

    gate, _spawned = make_gate(ProbeScript(failures=0))
    monkeypatch.setattr("workers.gate_request.dependency_gate", gate)
    task = app.tasks["jobs.record_effect"]
    assert task.Request == "workers.registry.request:RegistryRequest"  # a GateRequest that also counts outcomes
    Req = create_request_cls(RegistryRequest, task, mock.Mock(), "worker@test", None, app=app)
    on_reject, on_ack = mock.Mock(), mock.Mock()
    failures = []
    monkeypatch.setattr(task.backend, "mark_as_failure", lambda *a, **k: failures.append(a))
    request = Req(TaskMessage("jobs.record_effect", id="t-1"), app=app, task=task, on_reject=on_reject, on_ack=on_ack)

    # GIVEN the child's outcome for a task that hit the database while it was down, as it crosses the pipe
    try:
        raise DependencyDown("OperationalError: connection failed")
    except DependencyDown:
        einfo = pickle.loads(pickle.dumps(ExceptionInfo()))  # noqa: S301  (our own bytes, as billiard does)
    # WHEN the main process receives it
    request.on_success((True, einfo, 0.01))

    # THEN the gate is closed and the message handed back (requeue), neither acked nor failed
    assert gate.closed
    on_reject.assert_called_once()
    assert on_reject.call_args.args[2] is True  # requeue
    on_ack.assert_not_called()
    assert failures == []


# --- health -------------------------------------------------------------------------------------------------


def test_health_reports_dependency_down_and_stays_healthy(liveness_file):
    # GIVEN a worker that polls (fresh liveness file) and has paused on its database
    Liveness("worker").touch()
    gate, _spawned = make_gate(ProbeScript(failures=0))
    gate.close("OperationalError: connection failed: Connection refused")

    # WHEN the ECS health check runs
    ok, message = healthcheck.check("worker")

    # THEN it says why the worker does not receive, and passes: a new task could not reach the database either
    assert ok is True
    assert message.startswith("worker dependency down: database (paused since ")
    assert "Connection refused" in message


def test_a_stale_liveness_file_is_unhealthy_even_while_paused(liveness_file):
    # GIVEN a paused worker whose liveness file is old (its gate thread died, or the process hangs)
    liveness_file.write_text(f"{time.time() - 1000:.3f}\n")
    gate, _spawned = make_gate(ProbeScript(failures=0))
    gate.close("OperationalError: refused")
    # WHEN checked THEN it is unhealthy, as any worker that stopped polling
    ok, message = healthcheck.check("worker")
    assert ok is False and "unhealthy" in message


def test_a_pause_left_by_a_dead_process_is_ignored(liveness_file):
    # GIVEN a pause file of a process that is gone, and a fresh liveness file
    Liveness("worker").touch()
    pause_file().write_text(json.dumps({"dependency": "database", "since": time.time(), "pid": 2**22 + 12345}))
    # WHEN checked THEN the worker is plainly healthy, and a pool child does not think it is paused
    assert dependency_down_message() is None
    assert healthcheck.check("worker")[1].startswith("worker healthy")
    assert paused_in_parent() is False


def test_a_pool_child_sees_its_parents_pause():
    # GIVEN a pause written by this process's parent (the worker's main process, for a pool child)
    pause_file().write_text(json.dumps({"dependency": "database", "since": time.time(), "pid": os.getppid()}))
    # WHEN the child asks THEN it is paused
    assert paused_in_parent() is True
