"""A stack's new SQLite database is a copy of a migrated template when nothing the schema depends on changed."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

import pytest

from devstack.sqlite_template import migrated_copy, schema_key


def _project(root: Path) -> Path:
    (root / "api" / "jobs" / "migrations").mkdir(parents=True)
    (root / "workers" / "migrations").mkdir(parents=True)
    (root / "api" / "jobs" / "migrations" / "0001_initial.py").write_text("ops = 1\n")
    (root / "workers" / "migrations" / "0001_initial.py").write_text("ops = 2\n")
    (root / "uv.lock").write_text("django==5.2\n")
    return root


def _fake_migrate(target: Path, calls: list[Path]):
    def migrate() -> None:
        calls.append(target)
        target.write_bytes(b"migrated schema")

    return migrate


def test_the_first_stack_migrates_and_the_next_gets_a_copy(tmp_path):
    # GIVEN no template yet
    cache, calls = tmp_path / "cache", []
    first, second = tmp_path / "a.sqlite3", tmp_path / "b.sqlite3"

    # WHEN two stacks each want a migrated database under the same key
    copied_first = migrated_copy(first, "k1", _fake_migrate(first, calls), cache_dir=cache)
    copied_second = migrated_copy(second, "k1", _fake_migrate(second, calls), cache_dir=cache)

    # THEN only the first migrated; the second holds the same bytes without migrating
    assert (copied_first, copied_second) == (False, True)
    assert calls == [first]
    assert second.read_bytes() == b"migrated schema"


def test_another_key_migrates_again(tmp_path):
    # GIVEN a template for one key
    cache, calls = tmp_path / "cache", []
    migrated_copy(tmp_path / "a.sqlite3", "k1", _fake_migrate(tmp_path / "a.sqlite3", calls), cache_dir=cache)

    # WHEN a stack wants a database under another key (a migration changed)
    copied = migrated_copy(tmp_path / "b.sqlite3", "k2", _fake_migrate(tmp_path / "b.sqlite3", calls), cache_dir=cache)

    # THEN it migrates rather than copy the other schema
    assert copied is False and len(calls) == 2


def test_an_existing_database_is_never_replaced(tmp_path):
    # GIVEN a database file with data in it
    target = tmp_path / "db.sqlite3"
    target.write_bytes(b"somebody's jobs")

    # WHEN a template copy is asked for at that path
    # THEN it is refused and the file is untouched
    with pytest.raises(FileExistsError):
        migrated_copy(target, "k1", lambda: None, cache_dir=tmp_path / "cache")
    assert target.read_bytes() == b"somebody's jobs"


def test_a_failed_migration_leaves_no_template(tmp_path):
    # GIVEN a migration that fails
    cache = tmp_path / "cache"

    def broken() -> None:
        raise RuntimeError("migrate failed (exit 1)")

    # WHEN the first stack migrates
    with pytest.raises(RuntimeError):
        migrated_copy(tmp_path / "a.sqlite3", "k1", broken, cache_dir=cache)

    # THEN the next one migrates again instead of copying a broken schema
    calls: list[Path] = []
    assert (
        migrated_copy(tmp_path / "b.sqlite3", "k1", _fake_migrate(tmp_path / "b.sqlite3", calls), cache_dir=cache)
        is False
    )
    assert calls


@pytest.mark.parametrize(
    "change",
    [
        lambda root: (root / "api" / "jobs" / "migrations" / "0002_more.py").write_text("ops = 3\n"),
        lambda root: (root / "workers" / "migrations" / "0001_initial.py").write_text("ops = 20\n"),
        lambda root: (root / "uv.lock").write_text("django==5.3\n"),
    ],
    ids=["new migration", "edited migration", "new lock"],
)
def test_the_key_changes_with_what_the_schema_depends_on(tmp_path, change):
    # GIVEN a project's key
    root = _project(tmp_path)
    before = schema_key("api.settings.local", root)

    # WHEN a migration or the lock changes
    change(root)

    # THEN the key changes; the settings module is part of it too
    assert schema_key("api.settings.local", root) != before
    assert schema_key("api.settings.test", root) != schema_key("api.settings.local", root)


def _stack_wants_a_database(cache: str, target: str, log: str) -> None:
    def migrate() -> None:
        with open(log, "a") as f:
            f.write("migrated\n")
        time.sleep(0.5)  # long enough for the other process to be waiting on the lock
        Path(target).write_bytes(b"migrated schema")

    migrated_copy(Path(target), "k1", migrate, cache_dir=Path(cache))


def test_stacks_starting_together_migrate_once(tmp_path):
    # GIVEN no template, and three processes that each start a stack at the same moment (the smoke benchmarks)
    log = tmp_path / "migrations.log"
    ctx = multiprocessing.get_context("spawn")
    procs = [
        ctx.Process(target=_stack_wants_a_database, args=(str(tmp_path / "cache"), str(tmp_path / f"{n}.db"), str(log)))
        for n in range(3)
    ]

    # WHEN they all want a migrated database
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=60)

    # THEN one migrated, the others waited for it and copied its result
    assert [proc.exitcode for proc in procs] == [0, 0, 0]
    assert log.read_text() == "migrated\n"
    assert all((tmp_path / f"{n}.db").read_bytes() == b"migrated schema" for n in range(3))
