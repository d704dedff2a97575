"""The soak's disruptions on a seeded, bounded schedule: SIGKILLs, whole-worker pauses and endpoint faults.

One thread starts and ends them, so a fault or a pause ends on time even while the soak's main thread waits
on SQS or the database. Every pause and fault has an end time; close() ends whatever is still on (SIGCONT by
process group, the proxy back to pass), and the soak calls it in a finally.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from devstack import processes
from devstack.fault_proxy import FaultProxy

# The requests a worker (and the publisher) makes on the way of a task: each can fail or lose its answer.
FAULT_ACTIONS = ("DeleteMessageBatch", "SendMessage", "ChangeMessageVisibilityBatch", "ReceiveMessage")
FAULT_KINDS = ("http_5xx", "throttle", "answer_lost", "blackhole", "latency")
TICK_SECONDS = 0.1


@dataclass(frozen=True)
class ChaosSettings:
    """How often each disruption starts (0: never) and how long pauses and faults last, in seconds."""

    kill_every: float = 4.0
    pause_every: float = 10.0
    pause_min_seconds: float = 1.0
    pause_max_seconds: float = 10.0
    fault_every: float = 3.0
    fault_max_seconds: float = 3.0

    def __post_init__(self):
        if min(self.kill_every, self.pause_every, self.fault_every) < 0:
            raise ValueError(f"soak: a negative interval in {self}")
        if not 0 < self.pause_min_seconds <= self.pause_max_seconds:
            raise ValueError(f"soak: need 0 < pause min <= pause max, got {self}")
        if self.fault_max_seconds < 1:
            raise ValueError(f"soak: fault_max_seconds must be at least 1, got {self.fault_max_seconds}")


@dataclass(frozen=True)
class Fault:
    """One fault episode: a proxy mode (narrowed to some actions and a count, or for everything) until `ends`."""

    mode: str
    seconds: float
    actions: tuple[str, ...] | None = None
    count: int | None = None
    latency_ms: float = 0
    status: int = 500

    def apply(self, proxy: FaultProxy) -> None:
        proxy.set_mode(
            self.mode, actions=self.actions, count=self.count, latency_ms=self.latency_ms, status=self.status
        )

    def __str__(self) -> str:
        narrowed = f" {'/'.join(self.actions)} x{self.count}" if self.actions else ""
        extra = f" {self.latency_ms:.0f} ms" if self.mode == "latency" else ""
        return f"{self.mode}{narrowed}{extra} for {self.seconds:.1f} s"


def _clock() -> str:
    """Wall-clock time as the workers' logs print it, to match a disruption with what the workers said."""
    return datetime.now().strftime("%H:%M:%S,%f")[:-3]


def draw_fault(rng: random.Random, max_seconds: float) -> Fault:
    """A random fault: one of FAULT_KINDS, lasting 1 to max_seconds."""
    kind = rng.choice(FAULT_KINDS)
    seconds = rng.uniform(1, max_seconds)
    if kind in ("blackhole", "latency"):  # every request, for the whole episode
        return Fault(kind, seconds, latency_ms=rng.uniform(100, 1000) if kind == "latency" else 0)
    action = rng.choice(FAULT_ACTIONS)
    return Fault(kind, seconds, actions=(action,), count=rng.randint(1, 3), status=rng.choice((500, 503)))


@dataclass
class Tally:
    kills: int = 0
    pauses: int = 0
    long_pauses: int = 0  # longer than the lease
    fault_episodes: int = 0


@dataclass
class _Pause:
    pgid: int
    ends: float


class Chaos:
    """Kills, pauses and faults the soak's workers on a schedule drawn from `rng`, from its own thread.

    `workers()` returns the workers that may be disrupted (each the leader of its process group). At most one
    worker is paused at a time, so the other (running, or restarting after a kill) takes its messages over;
    kills spare the paused one.
    """

    def __init__(
        self,
        settings: ChaosSettings,
        *,
        rng: random.Random,
        workers: Callable[[], list],
        proxy: FaultProxy | None,
        lease_seconds: float,
        log: Callable[[str], None] = lambda line: print(line, flush=True),
    ):
        self.settings = settings
        self.rng = rng
        self.workers = workers
        self.proxy = proxy
        self.lease_seconds = lease_seconds
        self.log = log
        self.tally = Tally()
        self._pause: _Pause | None = None
        self._fault_ends: float | None = None
        self._next = {"kill": float("inf"), "pause": float("inf"), "fault": float("inf")}  # set by start()
        self._stop = threading.Event()
        self._lock = threading.Lock()  # around every start and end, so close() never races the thread
        self._thread: threading.Thread | None = None

    # --- control ----------------------------------------------------------------------------------------------

    def start(self) -> Chaos:
        now = time.monotonic()
        self._next = {
            "kill": self._first(now, self.settings.kill_every),
            "pause": self._first(now, self.settings.pause_every),
            "fault": self._first(now, self.settings.fault_every),
        }
        self._thread = threading.Thread(target=self._run, name="soak-chaos", daemon=True)
        self._thread.start()
        return self

    @property
    def active(self) -> bool:
        """A pause or a fault is on now."""
        with self._lock:
            return self._pause is not None or self._fault_ends is not None

    def close(self) -> None:
        """Stop starting disruptions and end the ones on now: SIGCONT the paused worker, the proxy to pass."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self._lock:
            self._end_pause()
            self._end_fault()

    # --- the schedule -----------------------------------------------------------------------------------------

    def _first(self, now: float, every: float) -> float:
        return now + self.rng.uniform(0.5, 1.0) * every if every > 0 else float("inf")

    def _run(self) -> None:
        try:
            while not self._stop.wait(TICK_SECONDS):
                with self._lock:
                    if self._stop.is_set():
                        return
                    self._step(time.monotonic())
        finally:
            with self._lock:
                self._end_pause()
                self._end_fault()

    def _step(self, now: float) -> None:
        if self._pause is not None and now >= self._pause.ends:
            self._end_pause()
        if self._fault_ends is not None and now >= self._fault_ends:
            self._end_fault()
        if now >= self._next["kill"]:
            self._kill()
            self._next["kill"] = now + self.settings.kill_every
        if now >= self._next["pause"] and self._pause is None:
            # The next pause is counted from this one's end (_end_pause), so a worker runs between two pauses.
            self._next["pause"] = float("inf") if self._start_pause(now) else now + self.settings.pause_every
        if now >= self._next["fault"] and self._fault_ends is None and self.proxy is not None:
            self._start_fault(now)
            self._next["fault"] = now + self.settings.fault_every

    def _candidates(self) -> list:
        paused = self._pause.pgid if self._pause is not None else None
        return [proc for proc in self.workers() if proc.poll() is None and proc.pid != paused]

    def _kill(self) -> None:
        candidates = self._candidates()
        if not candidates:
            return
        victim = self.rng.choice(candidates)
        children = processes.children(victim.pid)
        if children and self.rng.random() < 0.6:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.rng.choice(children), signal.SIGKILL)  # a pool child mid-task
        else:
            processes.signal_group(victim, signal.SIGKILL)  # the whole worker
        self.tally.kills += 1

    def _start_pause(self, now: float) -> bool:
        candidates = self._candidates()
        if not candidates:
            return False
        victim = self.rng.choice(candidates)
        seconds = self.rng.uniform(self.settings.pause_min_seconds, self.settings.pause_max_seconds)
        try:
            os.killpg(victim.pid, signal.SIGSTOP)  # the main process and its pool: a frozen container
        except ProcessLookupError:
            return False
        self._pause = _Pause(victim.pid, now + seconds)
        longer = seconds > self.lease_seconds
        self.tally.long_pauses += longer  # before `pauses`: a reader that sees the pause sees its kind
        self.tally.pauses += 1
        past = " (past the lease)" if longer else ""
        self.log(f"soak: {_clock()} paused worker pid {victim.pid} for {seconds:.1f} s{past}")
        return True

    def _end_pause(self) -> None:
        pause, self._pause = self._pause, None
        if pause is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pause.pgid, signal.SIGCONT)
            self._next["pause"] = time.monotonic() + self.settings.pause_every

    def _start_fault(self, now: float) -> None:
        fault = draw_fault(self.rng, self.settings.fault_max_seconds)
        fault.apply(self.proxy)
        self._fault_ends = now + fault.seconds
        self.tally.fault_episodes += 1
        self.log(f"soak: {_clock()} fault {fault}")

    def _end_fault(self) -> None:
        if self._fault_ends is not None and self.proxy is not None:
            self.proxy.set_mode("pass")
        self._fault_ends = None
