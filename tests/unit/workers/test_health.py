"""The liveness file and the health check command that reads it."""

from __future__ import annotations

import os
import threading
import time

import pytest

from workers import healthcheck
from workers.health import Liveness, liveness_age, liveness_path


@pytest.fixture
def liveness_file(tmp_path, monkeypatch):
    path = tmp_path / "liveness"
    monkeypatch.setenv("WORKER_LIVENESS_FILE", str(path))
    monkeypatch.setenv("WORKER_HEALTH_MAX_AGE", "30")
    return path


def test_fresh_liveness_file_is_healthy(liveness_file):
    # GIVEN a liveness file just touched
    Liveness("worker").touch()
    # WHEN checked THEN healthy, exit 0
    assert healthcheck.main(["worker"]) == 0


def test_stale_liveness_file_is_unhealthy(liveness_file, capsys):
    # GIVEN a liveness file touched 31 s ago (max 30)
    liveness_file.write_text(f"{time.time() - 31}\n")
    # WHEN checked THEN unhealthy, exit 1, with the age and the limit
    assert healthcheck.main(["worker"]) == 1
    assert "max 30 s" in capsys.readouterr().err


def test_missing_or_garbled_liveness_file_is_unhealthy(liveness_file, capsys):
    # GIVEN no file, then a garbled one THEN unhealthy both times
    assert healthcheck.main(["worker"]) == 1
    assert f"no liveness file at {liveness_file}" in capsys.readouterr().err
    liveness_file.write_text("not a time")
    assert healthcheck.main(["worker"]) == 1


def test_touches_are_throttled_tell_the_listeners_and_clear_removes_the_file(liveness_file):
    # GIVEN a liveness file with a listener
    liveness = Liveness("worker")
    heard: list[float] = []
    liveness.listeners.append(heard.append)
    liveness.touch()
    first = liveness_file.read_text()
    # WHEN touched again within a second THEN the file is not rewritten and the listener not called again
    liveness.touch()
    assert liveness_file.read_text() == first
    assert len(heard) == 1 and heard[0] == pytest.approx(float(first), abs=0.001)
    # WHEN cleared THEN the file is gone
    liveness.clear()
    assert not os.path.exists(liveness_file)


def test_the_old_documented_variable_still_names_the_file(tmp_path, monkeypatch):
    # GIVEN a deployment that still sets the name the README documented before (WORKER_HEARTBEAT_FILE)
    monkeypatch.delenv("WORKER_LIVENESS_FILE", raising=False)
    monkeypatch.setenv("WORKER_HEARTBEAT_FILE", str(tmp_path / "old"))
    # THEN it is honoured; and the new name wins when both are set
    assert liveness_path("worker") == tmp_path / "old"
    monkeypatch.setenv("WORKER_LIVENESS_FILE", str(tmp_path / "new"))
    assert liveness_path("worker") == tmp_path / "new"


def test_usage_error_is_exit_2():
    assert healthcheck.main([]) == 2
    assert healthcheck.main(["api"]) == 2


def test_a_check_reading_while_the_file_is_rewritten_never_finds_it_empty(liveness_file, monkeypatch):
    # GIVEN a process touching its liveness file as fast as it can (the once-a-second throttle off)
    monkeypatch.setattr("workers.health.THROTTLE_SECONDS", 0.0)
    liveness = Liveness("worker")
    liveness.touch()
    done = threading.Event()

    def touch_until_done() -> None:
        while not done.is_set():
            liveness.touch()

    toucher = threading.Thread(target=touch_until_done)
    toucher.start()
    # WHEN the health check reads it 3000 times meanwhile (ECS runs it every 30 s, at any moment)
    try:
        ages = [liveness_age("worker") for _ in range(3000)]
    finally:
        done.set()
        toucher.join(10)
    # THEN it always reads a time: never an empty or half-written file, which it would report as "no liveness file"
    # and ECS would count as a failed check (a beat failed its check in CI, 2026-12-02, while it ticked every second)
    assert ages.count(None) == 0
