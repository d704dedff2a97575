"""The heartbeat file and the health check command that reads it."""

from __future__ import annotations

import os
import time

import pytest

from workers import healthcheck
from workers.health import Heartbeat


@pytest.fixture
def heartbeat_file(tmp_path, monkeypatch):
    path = tmp_path / "heartbeat"
    monkeypatch.setenv("WORKER_HEARTBEAT_FILE", str(path))
    monkeypatch.setenv("WORKER_HEALTH_MAX_AGE", "30")
    return path


def test_fresh_heartbeat_is_healthy(heartbeat_file):
    # GIVEN a heartbeat just written
    Heartbeat("worker").beat()
    # WHEN checked THEN healthy, exit 0
    assert healthcheck.main(["worker"]) == 0


def test_stale_heartbeat_is_unhealthy(heartbeat_file, capsys):
    # GIVEN a heartbeat written 31 s ago (max 30)
    heartbeat_file.write_text(f"{time.time() - 31}\n")
    # WHEN checked THEN unhealthy, exit 1, with the age and the limit
    assert healthcheck.main(["worker"]) == 1
    assert "max 30 s" in capsys.readouterr().err


def test_missing_or_garbled_heartbeat_is_unhealthy(heartbeat_file):
    # GIVEN no file, then a garbled one THEN unhealthy both times
    assert healthcheck.main(["worker"]) == 1
    heartbeat_file.write_text("not a time")
    assert healthcheck.main(["worker"]) == 1


def test_beats_are_throttled_and_clear_removes_the_file(heartbeat_file):
    # GIVEN a heartbeat
    heartbeat = Heartbeat("worker")
    heartbeat.beat()
    first = heartbeat_file.read_text()
    # WHEN it beats again within a second THEN the file is not rewritten
    heartbeat.beat()
    assert heartbeat_file.read_text() == first
    # WHEN cleared THEN the file is gone
    heartbeat.clear()
    assert not os.path.exists(heartbeat_file)


def test_usage_error_is_exit_2():
    assert healthcheck.main([]) == 2
    assert healthcheck.main(["api"]) == 2
