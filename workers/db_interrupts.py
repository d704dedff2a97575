"""A query cut short by a soft time limit (billiard raises it from a signal handler, mid-query) leaves its PostgreSQL
connection mid-command: the next query on it fails with "another command is already in progress", an
OperationalError the dependency gate takes for a database outage (it pauses the worker and hands the task back,
spending a receive). Such connections are closed, so the next query opens a fresh one."""

from __future__ import annotations


def discard_interrupted_connections() -> list[str]:
    """Close each open database connection of this process that no longer answers `SELECT 1`; their aliases."""
    from django.db import connections

    closed = []
    for conn in connections.all(initialized_only=True):
        if conn.connection is not None and not conn.is_usable():
            conn.close()
            closed.append(conn.alias)
    return closed


def discard_if_cut_short(exc: BaseException | None) -> None:
    """After a task's soft time limit (wherever it fired: before_start, the task, a handler), before anything else
    touches the database."""
    from celery.exceptions import SoftTimeLimitExceeded

    if isinstance(exc, SoftTimeLimitExceeded):
        discard_interrupted_connections()
