"""BaseTask tells a dependency error (hand back, no retry spent) from the task's own failure (retries as before)."""

from __future__ import annotations

import psycopg
import pytest
from django.db.utils import OperationalError

from core.topology import get_topology
from workers.celery_app import app

runs: list[str] = []


def _connection_refused() -> OperationalError:
    try:
        raise psycopg.OperationalError("connection failed: Connection refused")
    except psycopg.OperationalError as exc:
        try:
            raise OperationalError(*exc.args) from exc
        except OperationalError as outer:
            return outer


@app.task(bind=True, name="tests.base_task.fails")
def fails(self, *, how: str) -> None:
    runs.append(how)
    if how == "database":
        raise _connection_refused()
    raise ValueError("bad input")


@pytest.fixture(autouse=True)
def _clear_runs():
    runs.clear()


def test_a_database_outage_is_handed_back_without_spending_a_retry():
    # GIVEN a task whose database is unreachable
    # WHEN it runs
    result = fails.apply(kwargs={"how": "database"})
    # THEN it ran once, was neither retried nor failed: Celery rejects its message with requeue (a hand-back)
    assert runs == ["database"]
    assert result.state == "REJECTED"
    assert "handed back, database unreachable: OperationalError: connection failed" in repr(result.result)


def test_a_task_that_fails_on_its_own_input_retries_as_before():
    # GIVEN a task that raises on its input
    # WHEN it runs
    result = fails.apply(kwargs={"how": "input"})
    # THEN autoretry spends max_retries, then it fails (unacked on a worker: SQS redrives it to the DLQ)
    assert runs == ["input"] * (1 + get_topology().retry.max_retries)
    assert result.state == "FAILURE"
    assert isinstance(result.result, ValueError)


def test_a_message_received_while_paused_goes_back_without_touching_the_database(monkeypatch):
    # GIVEN a pool child whose worker has paused (the main process wrote the pause file)
    from workers.base_task import BaseTask
    from workers.dependency_errors import DependencyDown

    monkeypatch.setattr("workers.dependency_gate.paused_in_parent", lambda: True)
    task = fails
    task.push_request(is_eager=False)
    try:
        # WHEN Celery is about to start the task THEN it is handed back before anything runs
        with pytest.raises(DependencyDown, match="paused"):
            BaseTask.before_start(task, "t-1", (), {"how": "input"})
    finally:
        task.pop_request()
    assert runs == []
