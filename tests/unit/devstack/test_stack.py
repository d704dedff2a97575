"""The local-stack harness: processes started by PID with their logs and readiness, all stopped on the way out."""

from __future__ import annotations

import os
import signal
import sys

import pytest

from devstack import processes
from devstack.stack import Processes, local_stack

SLEEPER = [sys.executable, "-c", "import time; print('up', flush=True); time.sleep(120)"]
# A process that ignores SIGTERM and has a child of its own (a worker's pool process).
STUBBORN = [
    sys.executable,
    "-c",
    "import signal, subprocess, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
    "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)']);"
    "print('up', flush=True); time.sleep(120)",
]


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_a_process_is_ready_when_its_marker_is_in_its_log_and_stop_all_stops_every_one_by_pid(tmp_path):
    # GIVEN a harness with two processes, each ready once "up" shows in its own log
    group = Processes(tmp_path, env={"MARK": "from-the-stack"})
    first = group.start("first", SLEEPER, ready="up", timeout=30)
    second = group.start("second", [*SLEEPER[:2], "import os; print(os.environ['MARK'], flush=True); " + SLEEPER[2]])
    group.wait_ready(second, "from-the-stack", timeout=30)

    # WHEN everything is stopped
    stopped = group.stop_all(grace=5)

    # THEN the last started went first, and both are gone, their logs kept
    assert [handle.name for handle, _ in stopped] == ["second", "first"]
    assert not first.alive() and not second.alive()
    assert "up" in first.log() and first.log_path.parent == tmp_path


def test_a_process_that_exits_before_it_is_ready_fails_at_once_with_its_log(tmp_path):
    group = Processes(tmp_path)
    # WHEN a process dies during start-up THEN the wait ends at once (not at its timeout) and shows the log's tail
    with pytest.raises(RuntimeError, match=r"(?s)broken exited with 3:.*bad config"):
        group.start("broken", [sys.executable, "-c", "print('bad config'); exit(3)"], ready="up", timeout=60)
    group.stop_all()


def test_sigkill_first_stops_a_process_that_ignores_sigterm_and_its_children_without_waiting_out_the_grace(tmp_path):
    # GIVEN a process that ignores SIGTERM, with a child, and a harness that stops with SIGKILL first
    group = Processes(tmp_path, grace=30, first=signal.SIGKILL)
    handle = group.start("stubborn", STUBBORN, ready="up", timeout=30)
    child = processes.wait_for(lambda: processes.children(handle.pid), timeout=10, what="the child")[0]

    # WHEN it is stopped
    group.stop(handle)

    # THEN both are gone (no 30 s wait: the test's own timeout would catch it)
    assert not handle.alive()
    processes.wait_for(lambda: _gone(child), timeout=10, what="the child to be gone")
    # AND a second stop does nothing
    assert group.stop(handle) == handle.proc.returncode


def test_a_paused_process_is_resumed_so_that_sigterm_stops_it(tmp_path):
    # GIVEN a process paused with SIGSTOP (as the soak and the fencing test pause workers)
    group = Processes(tmp_path, grace=10)
    handle = group.start("paused", SLEEPER, ready="up", timeout=30)
    processes.signal_group(handle.proc, signal.SIGSTOP)

    # WHEN the harness stops it with SIGTERM THEN it ends on SIGTERM, not on the SIGKILL after the grace
    assert group.stop(handle) == -signal.SIGTERM


def test_local_stack_starts_the_emulator_gives_fresh_queues_and_stops_it(tmp_path):
    from django.conf import settings

    from devstack.queues import sqs_client

    # GIVEN a local stack with its emulator, and a message left on a queue
    with local_stack(tmp_path, grace=5) as stack:
        urls = stack.create_queues(settings.QUEUE_TOPOLOGY)
        sqs_client(stack.endpoint).send_message(QueueUrl=urls["default"], MessageBody="left over")

        # WHEN it gives fresh queues
        urls = stack.fresh_queues(settings.QUEUE_TOPOLOGY)

        # THEN the topology's queues are there again, empty
        attributes = sqs_client(stack.endpoint).get_queue_attributes(
            QueueUrl=urls["default"], AttributeNames=["ApproximateNumberOfMessages"]
        )["Attributes"]
        assert attributes["ApproximateNumberOfMessages"] == "0"
        emulator = stack.emulator
    # AND on the way out the emulator was stopped
    assert emulator is not None and not emulator.alive()
