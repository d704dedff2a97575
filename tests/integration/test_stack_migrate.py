"""A stack's new SQLite database, copied from the template the first stack's `manage.py migrate` left, is fully
migrated: Django finds nothing to apply."""

from __future__ import annotations

import subprocess
import sys

from devstack import sqlite_template
from devstack.stack import REPO_ROOT, LocalStack


def _stack(tmp_path, name: str) -> LocalStack:
    env = {
        "DJANGO_SETTINGS_MODULE": "api.settings.local",
        "QUEUE_TOPOLOGY": str(REPO_ROOT / "queues.yml"),  # local's, not the test topology this session exports
        "DATABASE_URL": "",
        "SQLITE_PATH": str(tmp_path / name),
    }
    return LocalStack(tmp_path / f"{name}-logs", env=env)


def test_the_second_stack_copies_a_fully_migrated_database(tmp_path, monkeypatch):
    # GIVEN an empty template cache, and a first stack that migrated its new SQLite file
    monkeypatch.setattr(sqlite_template, "CACHE_DIR", tmp_path / "cache")
    first = _stack(tmp_path, "first.sqlite3")
    first.workdir.mkdir()
    first.migrate()
    assert list(first.workdir.glob("migrate-*.log")), "the first stack ran manage.py migrate"

    # WHEN a second stack migrates its own new file
    second = _stack(tmp_path, "second.sqlite3")
    second.workdir.mkdir()
    second.migrate()

    # THEN it started no migrate of its own, and Django finds nothing left to apply in the copy
    assert not list(second.workdir.glob("migrate-*.log"))
    check = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--check"],
        cwd=REPO_ROOT,
        env={**second.env, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert check.returncode == 0, check.stdout + check.stderr
