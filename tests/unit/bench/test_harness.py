"""bench/harness.py's CPU readings from /proc and the filler thread beside a drain (throughput and cpu_profile)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench.harness import cpu_seconds, filling_beside, own_cpu_seconds
from devstack import processes

BURN = "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass\n"


def test_cpu_seconds_count_a_process_and_its_children_and_a_gone_process_as_nothing():
    # GIVEN a process that burned 0.3 s of CPU and started a child that burns as much, both then waiting
    child_code = BURN + "time.sleep(30)\n"
    parent_code = BURN + f"import subprocess, sys\nsubprocess.Popen([sys.executable, '-c', {child_code!r}])\n"
    parent = subprocess.Popen([sys.executable, "-c", parent_code + "time.sleep(30)\n"])
    try:
        processes.wait_for(
            lambda: cpu_seconds(parent.pid) - own_cpu_seconds(parent.pid) >= 0.2,
            timeout=10,
            what="the child to start and burn",
        )
        # WHEN read THEN the parent's own CPU counts its burn, and the total its child's too
        assert own_cpu_seconds(parent.pid) >= 0.2
        assert cpu_seconds(parent.pid) - own_cpu_seconds(parent.pid) >= 0.2
    finally:
        for child in processes.children(parent.pid):
            os.kill(child, signal.SIGKILL)
        parent.kill()
        parent.wait(10)
    # AND a process that is gone reads as no CPU, not an error
    assert own_cpu_seconds(parent.pid) == 0.0


def test_a_fill_runs_beside_the_drain_and_is_waited_for_after():
    # GIVEN a fill that only finishes once the drain has seen it start
    started, drained, finished = threading.Event(), threading.Event(), []

    def fill():
        started.set()
        drained.wait(5)
        finished.append(True)

    # WHEN the drain runs with it beside THEN the fill started while the drain ran, and ended before the block left
    with filling_beside(fill, timeout=5):
        assert started.wait(5)
        assert not finished
        drained.set()
    assert finished == [True]


def test_no_fill_is_no_thread():
    before = set(threading.enumerate())  # a thread an earlier test left may end meanwhile: only new ones count
    with filling_beside(None, timeout=5):
        assert set(threading.enumerate()) - before == set()


def test_each_thread_is_read_on_its_own_and_a_gone_one_is_none():
    from bench.cpu_profile import thread_cpu
    from bench.harness import stat_cpu_seconds

    # GIVEN a live thread of this process that burned 0.3 s of CPU, and one that burned none
    tids: dict[str, int] = {}
    burned, done = threading.Event(), threading.Event()

    def run(name: str, seconds: float):
        tids[name] = threading.get_native_id()
        end = time.thread_time() + seconds
        while time.thread_time() < end:
            pass
        if seconds:
            burned.set()
        done.wait(10)

    threads = [threading.Thread(target=run, args=("burner", 0.3)), threading.Thread(target=run, args=("idle", 0.0))]
    for t in threads:
        t.start()
    try:
        assert burned.wait(10)
        # WHEN each thread's CPU is read THEN the burner's holds its burn, the idle one's nearly nothing
        cpu = thread_cpu(os.getpid())
        assert cpu[tids["burner"]] >= 0.2
        assert cpu[tids["idle"]] < 0.1
    finally:
        done.set()
        for t in threads:
            t.join(10)
    # AND a thread that is gone reads as none, not an error (join() returns before the kernel has reaped the thread)
    task = Path(f"/proc/{os.getpid()}/task/{tids['burner']}")
    processes.wait_for(lambda: not task.exists(), timeout=5, interval=0.05, what="the kernel to reap the thread")
    assert stat_cpu_seconds(task / "stat", reaped_children=False) is None
