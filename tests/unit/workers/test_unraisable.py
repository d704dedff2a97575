"""Unit tests of workers/unraisable.py: a soft time limit lost in __del__ aborts the child."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest
from celery.exceptions import SoftTimeLimitExceeded

from workers import unraisable

REPO_ROOT = Path(__file__).resolve().parents[3]


class _Exited(Exception):
    def __init__(self, code: int):
        self.code = code


def _unraisable(exc: BaseException) -> SimpleNamespace:
    return SimpleNamespace(exc_type=type(exc), exc_value=exc, exc_traceback=None, err_msg=None, object="obj")


@pytest.fixture
def exits(monkeypatch):
    def fake_exit(code):
        raise _Exited(code)

    monkeypatch.setattr(unraisable.os, "_exit", fake_exit)
    # logging.shutdown() would close handlers pytest still uses
    monkeypatch.setattr(unraisable.logging, "shutdown", lambda: None)


@pytest.fixture
def default_hook(monkeypatch):
    calls = []
    monkeypatch.setattr(sys, "__unraisablehook__", calls.append)
    return calls


def test_soft_time_limit_aborts_with_70(exits, default_hook):
    # GIVEN an unraisable SoftTimeLimitExceeded
    event = _unraisable(SoftTimeLimitExceeded())
    # WHEN the hook handles it
    with pytest.raises(_Exited) as excinfo:
        unraisable.abort_on_soft_time_limit(event)
    # THEN the process exits at once with code 70, without the default report
    assert excinfo.value.code == 70 == unraisable.ABORT_EXIT_CODE
    assert default_hook == []


@pytest.mark.parametrize("exc", [ValueError("x"), KeyboardInterrupt(), TimeoutError()])
def test_other_exceptions_go_to_default_hook(exits, default_hook, exc):
    # GIVEN an unraisable exception that is not the soft limit
    event = _unraisable(exc)
    # WHEN the hook handles it
    unraisable.abort_on_soft_time_limit(event)
    # THEN the default hook gets it and nothing exits
    assert default_hook == [event]


def test_install_sets_the_hook(monkeypatch):
    # GIVEN the interpreter's hook
    monkeypatch.setattr(sys, "unraisablehook", sys.__unraisablehook__)
    # WHEN installed
    unraisable.install()
    # THEN it is ours
    assert sys.unraisablehook is unraisable.abort_on_soft_time_limit


def _run(code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_soft_limit_in_del_exits_70_in_a_real_process():
    # GIVEN a process with the hook installed
    # WHEN SoftTimeLimitExceeded is raised inside a __del__
    result = _run("""
        from celery.exceptions import SoftTimeLimitExceeded
        from workers import unraisable
        unraisable.install()

        class Doomed:
            def __del__(self):
                raise SoftTimeLimitExceeded()

        Doomed()
        print("ran on past the limit")
    """)
    # THEN it exits with 70 before running on
    assert result.returncode == 70, result.stderr
    assert "ran on past the limit" not in result.stdout


def test_other_error_in_del_is_only_reported_in_a_real_process():
    # GIVEN a process with the hook installed
    # WHEN a ValueError is raised inside a __del__
    result = _run("""
        from workers import unraisable
        unraisable.install()

        class Doomed:
            def __del__(self):
                raise ValueError("boom")

        Doomed()
        print("carried on")
    """)
    # THEN Python reports it and the process carries on
    assert result.returncode == 0, result.stderr
    assert "carried on" in result.stdout
    assert "ValueError: boom" in result.stderr
