"""The soak's disruptions: bounded, drawn from a seed, and always ended (a paused group resumed, the proxy back to
pass), on real process groups and a real fault proxy."""

from __future__ import annotations

import random
import signal
import subprocess
from pathlib import Path

import pytest

from devstack import processes
from devstack.fault_proxy import FaultProxy
from devstack.soak_chaos import FAULT_ACTIONS, FAULT_KINDS, Chaos, ChaosSettings, draw_fault

NEVER = 0  # an interval of 0: that disruption never starts


def _state(proc: subprocess.Popen) -> str:
    """The kernel's state letter for a process: T when stopped."""
    return Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


@pytest.fixture
def sleepers():
    """Two processes, each the leader of its own process group, as the soak's workers are."""
    procs = [processes.start(["sleep", "60"]) for _ in range(2)]
    yield procs
    for proc in procs:
        processes.signal_group(proc, signal.SIGCONT)
        processes.stop(proc, grace=1)


def test_settings_refuse_impossible_bounds():
    with pytest.raises(ValueError, match="pause min"):
        ChaosSettings(pause_min_seconds=5, pause_max_seconds=2)
    with pytest.raises(ValueError, match="negative"):
        ChaosSettings(kill_every=-1)


def test_faults_drawn_from_a_seed_are_the_same_each_time_and_bounded():
    # GIVEN two generators with the same seed
    first, second = random.Random(7), random.Random(7)
    # WHEN 200 faults are drawn from each
    drawn = [draw_fault(first, 3) for _ in range(200)]
    # THEN they are the same, every kind appears, each lasts 1 to 3 s, and narrowed ones hit 1-3 requests
    assert drawn == [draw_fault(second, 3) for _ in range(200)]
    assert {fault.mode for fault in drawn} == set(FAULT_KINDS)
    assert all(1 <= fault.seconds <= 3 for fault in drawn)
    narrowed = [fault for fault in drawn if fault.actions]
    assert narrowed and all(set(f.actions) <= set(FAULT_ACTIONS) and 1 <= f.count <= 3 for f in narrowed)


def test_a_pause_stops_a_whole_process_group_and_close_resumes_it(sleepers):
    # GIVEN chaos that only pauses, for 30 s (longer than this test waits)
    settings = ChaosSettings(kill_every=NEVER, fault_every=NEVER, pause_every=0.2, pause_min_seconds=30,
                             pause_max_seconds=30)  # fmt: skip
    chaos = Chaos(settings, rng=random.Random(1), workers=lambda: sleepers, proxy=None, lease_seconds=4).start()
    try:
        # WHEN the first pause starts
        processes.wait_for(lambda: chaos.tally.pauses == 1, timeout=10, what="a pause")
        # (the tally counts the SIGSTOP once sent; the kernel marks the group stopped a moment later)
        processes.wait_for(lambda: any(_state(proc) == "T" for proc in sleepers), timeout=10, what="a stop")
        paused = [proc for proc in sleepers if _state(proc) == "T"]
        # THEN exactly one of the two is stopped (the other keeps working), and it counts as past the lease
        assert len(paused) == 1
        assert chaos.tally.long_pauses == 1
    finally:
        # WHEN the soak ends before the pause does
        chaos.close()
    # THEN the paused group runs again, and nothing is on any more
    assert _state(paused[0]) != "T"
    assert not chaos.active


def test_a_pause_ends_by_itself_after_its_time(sleepers):
    # GIVEN chaos whose pauses last 0.3 s, one every 30 s
    settings = ChaosSettings(kill_every=NEVER, fault_every=NEVER, pause_every=30, pause_min_seconds=0.3,
                             pause_max_seconds=0.3)  # fmt: skip
    chaos = Chaos(settings, rng=random.Random(1), workers=lambda: sleepers, proxy=None, lease_seconds=4)
    chaos.start()
    chaos._next["pause"] = 0  # now, rather than 15-30 s from now
    try:
        processes.wait_for(lambda: chaos.tally.pauses == 1, timeout=10, what="a pause")
        # WHEN its time passes
        # THEN both processes run again without close()
        processes.wait_for(lambda: not chaos.active, timeout=5, what="the pause to end")
        assert [_state(proc) for proc in sleepers].count("T") == 0
        assert chaos.tally.long_pauses == 0
    finally:
        chaos.close()


def test_kills_sigkill_a_live_worker_group(sleepers):
    # GIVEN chaos that only kills, every 0.2 s
    settings = ChaosSettings(kill_every=0.2, pause_every=NEVER, fault_every=NEVER)
    live = lambda: [proc for proc in sleepers if proc.poll() is None]  # noqa: E731
    chaos = Chaos(settings, rng=random.Random(1), workers=live, proxy=None, lease_seconds=4).start()
    try:
        # WHEN both have been hit
        processes.wait_for(lambda: not live(), timeout=10, what="both killed")
    finally:
        chaos.close()
    # THEN each died of SIGKILL, and each kill was counted
    assert [proc.wait(5) for proc in sleepers] == [-signal.SIGKILL, -signal.SIGKILL]
    assert chaos.tally.kills == 2


def test_a_fault_is_set_on_the_proxy_and_close_puts_it_back_to_pass(sleepers):
    # GIVEN a fault proxy (nothing behind it: only its mode matters) and chaos that only faults, for 30 s each
    proxy = FaultProxy(processes.free_port(), http=True).start()
    settings = ChaosSettings(kill_every=NEVER, pause_every=NEVER, fault_every=0.2, fault_max_seconds=30)
    chaos = Chaos(settings, rng=random.Random(3), workers=lambda: sleepers, proxy=proxy, lease_seconds=4).start()
    try:
        # WHEN the first fault starts
        processes.wait_for(lambda: chaos.tally.fault_episodes == 1, timeout=10, what="a fault")
        # THEN the proxy is in a fault mode (no request flows, so a counted one is not spent either)
        assert proxy.mode in FAULT_KINDS
        assert chaos.active
        # WHEN the soak ends first
        chaos.close()
        # THEN the proxy passes again
        assert proxy.mode == "pass"
        assert not chaos.active
    finally:
        chaos.close()
        proxy.stop()
