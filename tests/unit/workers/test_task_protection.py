"""Unit tests of ECS task protection (workers/task_protection.py) with a fake clock and a fake agent."""

from __future__ import annotations

import logging

import pytest

from core.env import EnvError
from workers.task_protection import AgentError, ProtectionSettings, TaskProtection, agent_uri


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _protection(busy: list[bool], puts: list[dict], *, fail: list[bool] | None = None, clock=None):
    def put(uri, body):
        if fail and fail[0]:
            raise AgentError('HTTP 400: {"Code": "AccessDeniedException"}')
        puts.append(body)
        return {"ProtectionEnabled": body["ProtectionEnabled"]}

    settings = ProtectionSettings(minutes=5, renew_seconds=60, idle_seconds=10)
    return TaskProtection(uri="http://agent/api/x", busy=lambda: busy[0], settings=settings, put=put, clock=clock)


def test_short_tasks_in_a_row_do_not_flap_protection():
    # GIVEN a worker that is busy, idle for 3 s, busy again, many times (a stream of short tasks)
    clock, busy, puts = Clock(), [False], []
    protection = _protection(busy, puts, clock=clock)

    # WHEN the thread steps through 50 s of that, every 0.5 s
    for i in range(100):
        clock.now = i * 0.5
        busy[0] = (i % 8) < 2  # 1 s busy, 3 s idle
        protection.step()

    # THEN protection was set once and never cleared (never 10 s idle), no renewal due yet
    assert puts == [{"ProtectionEnabled": True, "ExpiresInMinutes": 5}]


def test_busy_renews_every_interval_and_idle_clears_once_after_the_hysteresis():
    # GIVEN a worker busy for 130 s, then idle
    clock, busy, puts = Clock(), [True], []
    protection = _protection(busy, puts, clock=clock)
    for second in range(0, 131):
        clock.now = float(second)
        protection.step()
    busy[0] = False

    # WHEN it stays idle for 20 s
    for second in range(131, 151):
        clock.now = float(second)
        protection.step()

    # THEN set at 0, renewed at 60 and 120, cleared once 10 s after it went idle
    assert [p["ProtectionEnabled"] for p in puts] == [True, True, True, False]
    assert puts[-1] == {"ProtectionEnabled": False}


def test_a_failing_agent_is_logged_once_per_state_and_never_raises(caplog):
    # GIVEN an agent that refuses (a task role without ecs:UpdateTaskProtection)
    clock, busy, puts, fail = Clock(), [True], [], [True]
    protection = _protection(busy, puts, fail=fail, clock=clock)

    # WHEN the busy worker steps for 100 s
    with caplog.at_level(logging.WARNING, logger="workers.task_protection"):
        for second in range(100):
            clock.now = float(second)
            protection.step()
        # AND then the agent accepts again
        fail[0] = False
        clock.now = 200.0
        protection.step()

    # THEN one warning for the failure, a few paced retries, one line when it works again
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2 and "AccessDeniedException" in warnings[0] and "works again" in warnings[1]
    assert protection.protected and puts == [{"ProtectionEnabled": True, "ExpiresInMinutes": 5}]


def test_settings_are_checked_at_start(monkeypatch):
    # GIVEN a renewal interval longer than the protection it renews
    monkeypatch.setenv("WORKER_PROTECTION_MINUTES", "1")
    monkeypatch.setenv("WORKER_PROTECTION_RENEW_SECONDS", "90")
    # WHEN the settings are read THEN they are refused, naming both
    with pytest.raises(EnvError, match=r"WORKER_PROTECTION_RENEW_SECONDS=90.0 .*\(WORKER_PROTECTION_MINUTES\)"):
        ProtectionSettings.from_env()


def test_outside_ecs_there_is_no_agent(monkeypatch):
    monkeypatch.delenv("ECS_AGENT_URI", raising=False)
    assert agent_uri() is None
    monkeypatch.setenv("ECS_AGENT_URI", "file:///etc/passwd")
    with pytest.raises(EnvError, match="not an http"):
        agent_uri()


def test_contract_celery_worker_state_tracks_running_reserved_and_scheduled_requests():
    # GIVEN Celery's worker state, which protection reads from its own thread (celery 5.7: WeakSets), empty
    # (other tests of this process may have left requests in the real sets)
    import weakref

    from celery.worker import state

    from workers.task_protection import holds_tasks

    # (Celery binds these sets as default arguments of task_reserved & co: clear them, don't replace them.)
    left = {}
    for name in ("active_requests", "reserved_requests", "scheduled_requests"):
        assert isinstance(getattr(state, name), weakref.WeakSet), name
        left[name] = list(getattr(state, name))
        getattr(state, name).clear()
    try:
        _reserve_accept_ready(state, holds_tasks)
    finally:
        for name, requests in left.items():
            getattr(state, name).update(requests)


def _reserve_accept_ready(state, holds_tasks) -> None:
    request = type("Request", (), {"id": "contract-test", "name": "jobs.noop"})()

    # WHEN a request is reserved, accepted, then ready
    assert not holds_tasks(state)
    state.task_reserved(request)
    reserved = holds_tasks(state)
    state.task_accepted(request)
    running = holds_tasks(state)
    state.task_ready(request, successful=True)

    # THEN the worker holds a task exactly until it is ready (an upgrade renaming these sets fails here)
    assert reserved and running and not holds_tasks(state)
    assert {"active_requests", "reserved_requests", "scheduled_requests"} <= set(vars(state))
