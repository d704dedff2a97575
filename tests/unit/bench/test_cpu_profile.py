"""Unit tests of bench/cpu_profile.py's bookkeeping: py-spy's collapsed stacks split by process, CPU per thread
of the worker's main process, and the SQS worker variants drained side by side."""

from __future__ import annotations

import pytest

from bench import cpu_profile
from devstack.processes import REPO_ROOT

MAIN, CHILD = 100, 200
SEND = f"{REPO_ROOT}/workers/delete_batches.py"
ROOT = 'process 100:"python -m celery worker"'
CHILD_ROOT = f'{ROOT};process 200:"python -m celery worker"'


def _stack(*frames: str, count: int) -> str:
    return ";".join(frames) + f" {count}"


def test_top_entries_split_main_and_children_and_count_self_and_total(tmp_path):
    # GIVEN collapsed stacks of a worker (pid 100) and one pool child (pid 200), as `py-spy record -f raw -s` writes
    collapsed = tmp_path / "worker.collapsed"
    loop = "create_loop (/x/site-packages/kombu/asynchronous/hub.py:372)"
    collapsed.write_text(
        "\n".join(
            [
                _stack(ROOT, "main (celery/__main__.py:10)", loop, f"_send ({SEND}:181)", count=6),
                _stack(ROOT, "main (celery/__main__.py:10)", loop, count=4),
                _stack(CHILD_ROOT, "workloop (/x/site-packages/billiard/pool.py:351)", count=3),
                "not a stack line",
            ]
        )
    )
    # WHEN its top entries are read
    top = cpu_profile.top_entries(collapsed, main_pid=MAIN)
    # THEN the main process and the children are apart, each with its own sample count
    assert top["main"]["samples"] == 10 and top["children"]["samples"] == 3
    # AND self shares go to the innermost frame, per function (line numbers dropped, paths shortened)
    assert top["main"]["self"] == [
        ["_send (workers/delete_batches.py)", 60.0],
        ["create_loop (kombu/asynchronous/hub.py)", 40.0],
    ]
    # AND the total shares leave out the frames under which everything runs
    assert top["main"]["total"] == [["_send (workers/delete_batches.py)", 60.0]]
    assert top["children"]["self"] == [["workloop (billiard/pool.py)", 100.0]]


def test_top_entries_of_a_missing_file_are_empty(tmp_path):
    # GIVEN py-spy wrote nothing (it could not attach) THEN there are no entries, and no error
    assert cpu_profile.top_entries(tmp_path / "missing.collapsed", main_pid=MAIN) == {}


def test_per_thread_names_each_thread_and_counts_new_threads_from_zero():
    # GIVEN per-thread CPU at ready and at the drain's end: the delete thread started after ready, one thread ended
    before = {1: 1.0, 2: 0.5, 3: 0.2}
    after = {1: 2.5, 2: 0.5, 4: 0.7}
    names = {1: "MainThread", 2: "visibility-heartbeat", 4: "sqs-delete-batches"}
    # WHEN CPU per 1000 tasks is worked out for 500 tasks
    spent = cpu_profile.per_thread(before, after, names, 500)
    # THEN each thread has its own figure, largest first; the ended thread counts nothing after its last reading
    assert spent == {"MainThread": 3.0, "sqs-delete-batches": 1.4, "visibility-heartbeat": 0.0, "ended": 0.0}
    assert list(spent)[:2] == ["MainThread", "sqs-delete-batches"]


def test_variants_are_the_shipped_worker_then_each_named_environment(monkeypatch):
    # GIVEN two variants in BENCH_PROFILE_VARIANTS
    monkeypatch.setenv(cpu_profile.VARIANTS_ENV, "w05:WORKER_DELETE_BATCH_SECONDS=0.5; both:A=1,B=two")
    # THEN the worker as shipped comes first, then each variant with its variables
    assert cpu_profile.variants() == {
        "sqs_worker": {},
        "w05": {"WORKER_DELETE_BATCH_SECONDS": "0.5"},
        "both": {"A": "1", "B": "two"},
    }


@pytest.mark.parametrize("text", ["no-colon", "name:", ":A=1", "name:A", "name:=1"])
def test_a_malformed_variant_is_refused_with_its_text(text):
    # GIVEN a variant that names no variable, or no name THEN it is refused, saying which
    with pytest.raises(ValueError, match="is not name:VAR=value"):
        cpu_profile.variants(text)
