"""Where a CPU benchmark's processes run: the contender under test alone on one CPU; the emulator, the proxies, the
producers, the Redis server and the benchmark itself on the others, as in production, where SQS is not on the
worker's host.

On this 2-core machine the emulator (moto, about half a core to a core while a worker drains) shares the worker's
cores when the scheduler places them freely: the worker's main process and pool children were then preempted and
woken across cores, and its CPU per 1000 no-op tasks read 1.24-1.74 s against 0.82-0.92 s with the worker on a core
of its own and everything else on the other (bench.cpu_profile, 2026-12-03). Celery on Redis, whose broker is a
C server using little CPU, barely moved (0.84-1.08 either way). BENCH_PIN_CONTENDER=0: the scheduler places
everything, as before 2026-12-03.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

ENV = "BENCH_PIN_CONTENDER"


@dataclass(frozen=True)
class Placement:
    contender: frozenset[int]  # the worker (its pool children inherit it) or the raw loop's thread
    rest: frozenset[int]  # everything else

    def describe(self) -> dict[str, list[int]]:
        return {"contender_cpus": sorted(self.contender), "rest_cpus": sorted(self.rest)}


def placement(cpus: Iterable[int] | None = None, *, enabled: bool | None = None) -> Placement | None:
    """The first CPU this process may use for the contender, the others for the rest; None with fewer than two CPUs
    or when BENCH_PIN_CONTENDER=0."""
    if enabled is None:
        enabled = os.environ.get(ENV, "1") != "0"
    allowed = sorted(os.sched_getaffinity(0) if cpus is None else cpus)
    if not enabled or len(allowed) < 2:
        return None
    return Placement(contender=frozenset(allowed[:1]), rest=frozenset(allowed[1:]))


@contextlib.contextmanager
def calling_thread_on(cpus: frozenset[int] | None) -> Iterator[None]:
    """Run the calling thread (only it: Linux's affinity is per thread) on `cpus`; processes and threads it starts
    meanwhile inherit them. Its own affinity again after. None: unchanged."""
    if cpus is None:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def thread_ids(pid: int) -> list[int]:
    try:
        return [int(task.name) for task in Path(f"/proc/{pid}/task").iterdir()]
    except OSError:
        return []


@contextlib.contextmanager
def process_on(pid: int | None, cpus: frozenset[int] | None) -> Iterator[bool]:
    """Move every thread of a running process (the Redis server) to `cpus`, and each back to its own CPUs after.
    Yields whether it was moved (False: no such process, no CPUs given, or not allowed to)."""
    previous: dict[int, set[int]] = {}
    try:
        if pid is not None and cpus is not None:
            for tid in thread_ids(pid):
                with contextlib.suppress(OSError):
                    before = os.sched_getaffinity(tid)
                    os.sched_setaffinity(tid, cpus)
                    previous[tid] = before
        yield bool(previous)
    finally:
        for tid, before in previous.items():
            with contextlib.suppress(OSError):  # a thread that ended meanwhile
                os.sched_setaffinity(tid, before)


def listening_process(name: str, port: int) -> int | None:
    """The PID of a local process called `name` whose command line names `port` (redis-server 127.0.0.1:6379)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            comm = (entry / "comm").read_text().strip()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if comm == name and f":{port}" in cmdline:
            return int(entry.name)
    return None
