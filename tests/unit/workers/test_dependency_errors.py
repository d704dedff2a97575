"""Which errors are "the database is down" (hand the message back) and which are the task's own failure."""

from __future__ import annotations

import logging
import pickle
import sqlite3

import psycopg
import psycopg.errors
import pytest
from celery.exceptions import Reject
from django.db.utils import InterfaceError, OperationalError

from core.env import EnvError
from workers.dependency_errors import (
    DEPENDENCY_ERRORS_ENV,
    DependencyDown,
    dependency_error_classes,
    handed_back_on_dependency_error,
    is_dependency_error,
    quiet_hand_back_logs,
)


@pytest.fixture(autouse=True)
def _fresh_classes():
    dependency_error_classes.cache_clear()
    yield
    dependency_error_classes.cache_clear()


def wrapped(driver_error: BaseException, django_class=OperationalError) -> BaseException:
    """As Django raises it: its own class, `from` the driver's error."""
    try:
        try:
            raise driver_error
        except Exception as exc:
            raise django_class(*exc.args) from exc
    except Exception as outer:
        return outer


@pytest.mark.parametrize(
    "exc",
    [
        wrapped(psycopg.OperationalError("connection failed: Connection refused")),
        wrapped(psycopg.OperationalError("consuming input failed: server closed the connection unexpectedly")),
        wrapped(psycopg.InterfaceError("the connection is closed"), InterfaceError),
        wrapped(psycopg.errors.AdminShutdown("terminating connection due to administrator command")),
        wrapped(psycopg.errors.ConnectionFailure("connection failure")),  # SQLSTATE 08006
        psycopg.OperationalError("raw driver error, not wrapped"),
    ],
    ids=["refused", "closed-mid-query", "interface-closed", "admin-shutdown", "class-08", "unwrapped"],
)
def test_a_lost_or_refused_connection_is_a_dependency_error(exc):
    # GIVEN an error that says the database cannot be reached WHEN classified THEN it is the dependency's
    assert is_dependency_error(exc)


@pytest.mark.parametrize(
    "exc",
    [
        ValueError("bad input"),
        wrapped(psycopg.errors.DeadlockDetected("deadlock detected")),  # an OperationalError, SQLSTATE 40P01
        wrapped(psycopg.errors.QueryCanceled("canceling statement due to statement timeout")),  # 57014
        wrapped(sqlite3.OperationalError("database is locked")),
        DependencyDown("already handed back"),
    ],
    ids=["own-input", "deadlock", "statement-timeout", "sqlite-locked", "already-converted"],
)
def test_the_tasks_own_failure_is_not(exc):
    # GIVEN an error of the task's own making (its input, its queries' contention)
    exc_cause = exc.__cause__
    if isinstance(exc_cause, sqlite3.OperationalError):
        exc_cause.sqlite_errorcode = 5  # SQLITE_BUSY, as sqlite3 sets it
    # WHEN classified THEN it stays the task's failure (retried, then the DLQ)
    assert not is_dependency_error(exc)


def test_the_classes_are_configurable_in_one_place(monkeypatch):
    # GIVEN WORKER_DEPENDENCY_ERRORS naming another driver's connection error only
    monkeypatch.setenv(DEPENDENCY_ERRORS_ENV, "builtins.ConnectionRefusedError")
    # WHEN errors are classified THEN only that class counts
    assert is_dependency_error(ConnectionRefusedError("refused"))
    assert not is_dependency_error(wrapped(psycopg.OperationalError("connection failed")))


def test_a_misspelt_class_is_refused_naming_the_variable(monkeypatch):
    # GIVEN a typo in the setting
    monkeypatch.setenv(DEPENDENCY_ERRORS_ENV, "django.db.utils.OperationalErorr")
    # WHEN it is read (at start-up) THEN it is refused with the variable and the name
    with pytest.raises(EnvError, match=r"WORKER_DEPENDENCY_ERRORS.*OperationalErorr"):
        dependency_error_classes()


def test_the_guard_hands_back_dependency_errors_and_passes_the_rest():
    # WHEN the database is unreachable inside the guard THEN it becomes a requeueing Reject
    with pytest.raises(DependencyDown) as caught, handed_back_on_dependency_error():
        raise wrapped(psycopg.OperationalError("connection failed: Connection refused"))
    assert isinstance(caught.value, Reject) and caught.value.requeue is True
    assert "OperationalError: connection failed" in caught.value.reason
    # AND the task's own error goes on unchanged, to autoretry and the DLQ as before
    with pytest.raises(ValueError), handed_back_on_dependency_error():
        raise ValueError("bad input")


def test_dependency_down_survives_the_pool_pipe():
    # GIVEN the exception as the pool child sends it to the main process (pickled, inside an ExceptionInfo)
    from billiard.einfo import ExceptionInfo

    try:
        raise DependencyDown("OperationalError: connection failed")
    except DependencyDown:
        einfo = ExceptionInfo()
    # WHEN it crosses the pipe THEN the main process still sees a DependencyDown that requeues
    received = pickle.loads(pickle.dumps(einfo)).exception  # noqa: S301  (our own bytes, as billiard does)
    assert isinstance(received, DependencyDown)
    assert (received.reason, received.requeue) == ("OperationalError: connection failed", True)


def test_a_hand_back_is_logged_without_its_traceback(caplog):
    # GIVEN the filter on Celery's trace logger
    quiet_hand_back_logs()
    quiet_hand_back_logs()  # idempotent
    trace_logger = logging.getLogger("celery.app.trace")
    assert sum(type(f).__name__ == "_NoTracebackForHandBack" for f in trace_logger.filters) == 1
    # WHEN Celery logs a hand-back with exc_info, and a real failure with exc_info
    try:
        raise DependencyDown("OperationalError: connection failed")
    except DependencyDown as exc:
        trace_logger.warning("Task t[1] %r", exc, exc_info=True)
    try:
        raise ValueError("bad input")
    except ValueError:
        trace_logger.error("Task t[2] raised", exc_info=True)
    # THEN the hand-back is one line, the failure keeps its traceback
    handed, failed = caplog.records[-2:]
    assert handed.exc_info is None and "handed back, database unreachable" in handed.getMessage()
    assert failed.exc_info is not None
