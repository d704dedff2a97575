"""Unit tests of bench/cpu_placement.py: the contender on a CPU of its own, everything else on the others, with real
processes (a started child inherits the contender's CPU; a running process is moved and moved back)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from bench import cpu_placement
from bench.cpu_placement import calling_thread_on, listening_process, placement, process_on
from devstack import processes

needs_two_cpus = pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="pinning needs two CPUs")


def allowed(pid: int) -> set[int]:
    return os.sched_getaffinity(pid)


def test_the_first_cpu_goes_to_the_contender_and_the_others_to_the_rest():
    # GIVEN three CPUs WHEN placed THEN the contender has the first, the rest the others
    place = placement([5, 3, 9], enabled=True)
    assert (place.contender, place.rest) == ({3}, {5, 9})
    assert place.describe() == {"contender_cpus": [3], "rest_cpus": [5, 9]}


def test_no_placement_with_one_cpu_or_when_turned_off(monkeypatch):
    # GIVEN one CPU THEN nothing is pinned
    assert placement([0], enabled=True) is None
    # AND BENCH_PIN_CONTENDER=0 turns it off whatever the CPUs
    monkeypatch.setenv(cpu_placement.ENV, "0")
    assert placement([0, 1]) is None
    monkeypatch.setenv(cpu_placement.ENV, "1")
    assert placement([0, 1]) is not None


@needs_two_cpus
def test_a_process_started_from_the_pinned_thread_and_its_own_children_run_on_the_contender_cpu():
    place = placement(enabled=True)
    before = os.sched_getaffinity(0)
    # GIVEN the calling thread on the contender's CPU WHEN it starts a process that forks a child of its own
    with calling_thread_on(place.contender):
        proc = subprocess.Popen(
            [sys.executable, "-c", "import os, time; os.fork() or time.sleep(30); time.sleep(30)"],
        )
    try:
        # THEN the process runs on the contender's CPU, and so does its child
        assert allowed(proc.pid) == place.contender
        children = []
        for _ in range(100):
            children = [int(p) for p in Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()]
            if children:
                break
            threading.Event().wait(0.05)
        assert children and all(allowed(child) == place.contender for child in children)
        # AND the calling thread is back on its own CPUs
        assert os.sched_getaffinity(0) == before
    finally:
        for child in children:
            os.kill(child, 9)
        proc.kill()
        proc.wait()


@needs_two_cpus
def test_only_the_calling_thread_moves_not_the_process_s_other_threads():
    place = placement(enabled=True)
    seen: dict[str, set[int]] = {}
    started, release = threading.Event(), threading.Event()

    def other():
        started.set()
        release.wait(5)
        seen["other"] = os.sched_getaffinity(0)

    thread = threading.Thread(target=other)
    thread.start()
    started.wait(5)
    before = os.sched_getaffinity(0)
    # GIVEN another thread running WHEN this one runs on the contender's CPU
    with calling_thread_on(place.contender):
        release.set()
        thread.join(5)
        seen["calling"] = os.sched_getaffinity(0)
    # THEN the other thread kept its CPUs
    assert seen == {"other": before, "calling": set(place.contender)}


@needs_two_cpus
def test_a_running_process_is_moved_off_the_contender_and_back_after():
    place = placement(enabled=True)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import threading, time; threading.Thread(target=time.sleep, args=(30,)).start(); time.sleep(30)",
        ]
    )
    try:
        for _ in range(100):
            if len(cpu_placement.thread_ids(proc.pid)) == 2:
                break
            threading.Event().wait(0.05)
        own = {tid: os.sched_getaffinity(tid) for tid in cpu_placement.thread_ids(proc.pid)}
        # GIVEN a running process with two threads WHEN it is moved to the rest's CPUs
        with process_on(proc.pid, place.rest) as moved:
            # THEN every thread of it runs there
            assert moved is True
            assert {tid: os.sched_getaffinity(tid) for tid in own} == dict.fromkeys(own, set(place.rest))
        # AND after, each thread is back on its own CPUs
        assert {tid: os.sched_getaffinity(tid) for tid in own} == own
    finally:
        proc.kill()
        proc.wait()


def test_moving_nothing_is_said_not_raised():
    # GIVEN no process, or no CPUs to move to THEN nothing moves and the caller is told
    with process_on(None, frozenset({0})) as moved:
        assert moved is False
    with process_on(os.getpid(), None) as moved:
        assert moved is False
    with process_on(2**22 + 12345, frozenset({0})) as moved:  # no such PID
        assert moved is False


def test_a_listening_process_is_found_by_name_and_port_and_nothing_else():
    # GIVEN a process named by its command WHEN looked up by a port on its command line THEN found, else None
    proc = subprocess.Popen(["bash", "-c", 'exec -a "fake-server 127.0.0.1:6399" sleep 30'])
    try:
        # bash's own command line names the port too, so wait for the exec itself: comm becomes "sleep"
        processes.wait_for(
            lambda: Path(f"/proc/{proc.pid}/comm").read_text().strip() == "sleep",
            timeout=5,
            interval=0.05,
            what="the exec of sleep",
        )
        assert listening_process("sleep", 6399) == proc.pid
        assert listening_process("sleep", 6398) is None
        assert listening_process("no-such-server", 6399) is None
    finally:
        proc.kill()
        proc.wait()
