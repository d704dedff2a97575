"""core/state_files.py: a state file another process reads is replaced whole, never seen empty or half-written."""

from __future__ import annotations

import threading

import pytest

from core.state_files import write_atomically


def test_a_reader_sees_the_old_content_or_the_new_never_a_partial_one(tmp_path):
    # GIVEN a state file rewritten as fast as a thread can
    path = tmp_path / "state"
    old, new = "a" * 4000, "b" * 4000
    write_atomically(path, old)
    done = threading.Event()

    def rewrite() -> None:
        while not done.is_set():
            write_atomically(path, new)
            write_atomically(path, old)

    writer = threading.Thread(target=rewrite)
    writer.start()
    # WHEN another reads it 2000 times meanwhile
    try:
        seen = {path.read_text() for _ in range(2000)}
    finally:
        done.set()
        writer.join(10)
    # THEN it only ever read one whole version or the other, and no staging file is left behind
    assert seen <= {old, new}
    assert [p.name for p in tmp_path.iterdir()] == ["state"]


def test_a_write_that_fails_raises_and_leaves_the_old_file_and_no_staging_file(tmp_path):
    # GIVEN a state file, and a directory in the way of the name it is renamed to
    path = tmp_path / "state"
    write_atomically(path, "old")
    blocked = tmp_path / "blocked"
    blocked.mkdir()
    # WHEN writing over the directory THEN the OSError is raised, nothing else changes, no staging file remains
    with pytest.raises(OSError):
        write_atomically(blocked, "new")
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocked", "state"]
