"""Which errors mean "the database is down" rather than "the task failed": decided here, and only here."""

from __future__ import annotations

import functools
import importlib
import logging
from collections.abc import Iterator
from contextlib import contextmanager

from celery.exceptions import Reject

from core.env import EnvError, env_list

DEPENDENCY_ERRORS_ENV = "WORKER_DEPENDENCY_ERRORS"
# Connection-class exceptions of the database drivers in use (Django wraps psycopg's in its own).
DEFAULT_DEPENDENCY_ERRORS = (
    "django.db.utils.OperationalError",
    "django.db.utils.InterfaceError",
    "psycopg.OperationalError",
    "psycopg.InterfaceError",
)
# A listed class is still the task's own failure when the server answered with an SQLSTATE outside these:
# OperationalError also carries a deadlock (40P01), a statement timeout (57014) or a lock timeout (55P03).
# No SQLSTATE at all (refused, reset, closed connection) or class 08 (connection exception), or the
# server shutting down (57P01-57P03), is an outage.
OUTAGE_SQLSTATE_PREFIXES = ("08", "57P01", "57P02", "57P03")
SQLITE_CANTOPEN = 14  # SQLite's only outage; "database is locked" (5, 6) is contention, the task's own failure
DATABASE = "database"


class DependencyDown(Reject):
    """Raised in the pool child instead of a dependency error: Celery hands the message back (requeue, which
    the channel turns into visibility 0), counts no failure and spends no retry; the worker's main process
    sees it in workers/gate_request.py and pauses receiving (workers/dependency_gate.py)."""

    dependency = DATABASE

    def __init__(self, reason=None, requeue=True):
        super().__init__(reason, requeue)

    def __repr__(self):  # Celery's one log line for the task
        return f"handed back, {self.dependency} unreachable: {self.reason}"


@functools.cache
def dependency_error_classes() -> tuple[type[BaseException], ...]:
    """The classes named by WORKER_DEPENDENCY_ERRORS (comma-separated dotted names), or the defaults.
    A name that does not import is refused (EnvError), so a typo fails at start-up, not in an outage."""
    classes = []
    for dotted in env_list(DEPENDENCY_ERRORS_ENV, list(DEFAULT_DEPENDENCY_ERRORS)):
        module, _, name = dotted.rpartition(".")
        try:
            cls = getattr(importlib.import_module(module), name) if module else None
        except (ImportError, AttributeError):
            cls = None
        if not (isinstance(cls, type) and issubclass(cls, BaseException)):
            raise EnvError(
                f"environment variable {DEPENDENCY_ERRORS_ENV}: {dotted!r} is not an importable exception class"
            )
        classes.append(cls)
    return tuple(classes)


def _driver_error(exc: BaseException) -> BaseException:
    """The driver's own error under Django's wrapper (Django raises its class `from` the driver's)."""
    seen = exc
    for _ in range(5):
        if hasattr(seen, "sqlstate") or hasattr(seen, "sqlite_errorcode"):
            return seen
        nxt = seen.__cause__ or seen.__context__
        if nxt is None:
            break
        seen = nxt
    return exc


def is_dependency_error(exc: BaseException) -> bool:
    """True when `exc` says the database cannot be reached, not that this task's work went wrong."""
    if isinstance(exc, DependencyDown) or not isinstance(exc, dependency_error_classes()):
        return False
    driver = _driver_error(exc)
    if getattr(driver, "sqlite_errorcode", None) is not None:
        return driver.sqlite_errorcode == SQLITE_CANTOPEN
    sqlstate = getattr(driver, "sqlstate", None)
    return sqlstate is None or sqlstate.startswith(OUTAGE_SQLSTATE_PREFIXES)


def dependency_down(exc: BaseException) -> DependencyDown:
    first_line = (str(exc).strip().splitlines() or [""])[0]
    return DependencyDown(f"{type(exc).__name__}: {first_line}")


@contextmanager
def handed_back_on_dependency_error() -> Iterator[None]:
    """Turn a dependency error raised inside into DependencyDown; anything else passes through unchanged."""
    try:
        yield
    except Exception as exc:
        if is_dependency_error(exc):
            raise dependency_down(exc) from exc
        raise


class _NoTracebackForHandBack(logging.Filter):
    """Celery logs every Reject with its traceback ("Task … reject requeue=True: …"); for a hand-back the one
    line says all (the gate logs the outage once)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], DependencyDown):
            record.exc_info, record.exc_text = None, None
        return True


def quiet_hand_back_logs() -> None:
    """Install the filter on Celery's task-trace logger (idempotent); the pool children inherit it."""
    trace_logger = logging.getLogger("celery.app.trace")
    if not any(isinstance(f, _NoTracebackForHandBack) for f in trace_logger.filters):
        trace_logger.addFilter(_NoTracebackForHandBack())
