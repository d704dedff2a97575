"""Receipt handles the worker is done with (workers/finished_messages.py): remembered long enough, not forever."""

from __future__ import annotations

from workers.finished_messages import FinishedMessages


def test_a_finished_handle_is_remembered_for_keep_seconds_then_forgotten():
    # GIVEN a registry that keeps handles 300 s, on a fake clock
    now = [0.0]
    finished = FinishedMessages(keep_seconds=300, clock=lambda: now[0])

    # WHEN one handle finishes at 0 s, and another at 200 s and 301 s
    finished.finish("h1")
    now[0] = 200.0
    finished.finish("h2")
    assert finished.unfinished(["h1", "h2", "h3"]) == ["h3"]
    now[0] = 301.0
    finished.finish("h3")

    # THEN the first is forgotten (no tick can still hold it), the others are still finished
    assert finished.unfinished(["h1", "h2", "h3"]) == ["h1"]
    assert "h2" in finished and "h1" not in finished


def test_nothing_to_finish_is_ignored():
    finished = FinishedMessages()
    finished.finish(None)
    finished.finish("")
    assert finished.unfinished(["x"]) == ["x"]
