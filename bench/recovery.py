"""Recovery: how soon another worker runs a task whose worker died (SIGKILL) or was told to stop (SIGTERM).

(a) SIGKILL of a whole worker running a long task, two queues of one topology side by side:
    - `high_priority` WITH the visibility heartbeat: a short visibility timeout, extended every few seconds;
    - `default` WITHOUT it: the visibility timeout covers the longest task (time limit + margin), the old advice.
    Two workers start together; the one that takes the task (a `jobs.sleep` Job) is SIGKILLed with its pool a
    random 1..1+heartbeat s after the task started (the same delay for both modes in a repetition). The clock
    starts at the SIGKILL and stops at the task's second start (`Job.started_at`, written by the other worker).
(b) SIGTERM of a worker whose every slot runs a long task (prefetch multiplier 1: it holds nothing else), with
    a short soft-shutdown window (WORKER_SOFT_SHUTDOWN_SECONDS); a second worker idles beside it. The clock starts
    at the SIGTERM and stops when the second worker starts each handed-back task.

Workers talk to the endpoint through the counting proxy, so each repetition also reports how many times the
endpoint delivered the task's message: one more than the runs means a SIGKILLed worker's long poll, still open
in the emulator, took it (and one visibility timeout passed before it came back). That is reported, not hidden.
"""

from __future__ import annotations

import os
import random
import signal
import statistics
import sys
import time
from typing import Any

from bench.harness import (
    WORKER_READY,
    Progress,
    Stack,
    is_smoke,
    print_table,
    ratio,
    size,
    stack,
    wait_until,
    write_results,
)
from devstack import processes
from devstack.processes import REPO_ROOT

HEARTBEAT_QUEUE, PLAIN_QUEUE = "high_priority", "default"
# Topology rule: visibility >= 2 x heartbeat + margin. Smoke: shorter, so the run stays under a minute.
HB_VISIBILITY, HB_INTERVAL = (4, 1) if is_smoke() else (6, 2)
MARGIN = 1
CONCURRENCY = 2  # a free slot keeps a long poll open while the task runs, as on a real worker
SOFT_WINDOW = 3  # (b): WORKER_SOFT_SHUTDOWN_SECONDS of the worker told to stop
SEED = 4242


def topology(plain_time_limit: int) -> dict[str, Any]:
    """The bench profile: heartbeat queue with a short visibility timeout; plain queue sized by the old advice."""
    return {
        "visibility_margin_seconds": MARGIN,
        "queues": {
            HEARTBEAT_QUEUE: {
                "visibility_timeout": HB_VISIBILITY,
                "visibility_heartbeat_seconds": HB_INTERVAL,
                "soft_time_limit": 110,
                "time_limit": 120,
                "max_receive_count": 20,
            },
            PLAIN_QUEUE: {
                "visibility_timeout": plain_time_limit + MARGIN + 1,  # the check asks for more than limit + margin
                "visibility_heartbeat_seconds": 0,
                "soft_time_limit": plain_time_limit - 1,
                "time_limit": plain_time_limit,
                "max_receive_count": 20,
            },
        },
    }


def start_workers(bench: Stack, names: list[str], env: dict[str, str] | None = None) -> list:
    """bin/start-worker, several at once (each takes seconds to start on a busy machine), until all are ready."""
    worker_env = {
        "WORKER_QUEUES": f"{HEARTBEAT_QUEUE},{PLAIN_QUEUE}",
        "WORKER_CONCURRENCY": str(CONCURRENCY),
        "WORKER_SOFT_SHUTDOWN_SECONDS": "1",
        **(env or {}),
    }
    workers = [bench.start(name, [str(REPO_ROOT / "bin" / "start-worker")], env=worker_env) for name in names]

    def all_ready() -> bool:
        for proc in workers:
            if proc.poll() is not None:
                raise RuntimeError(f"a worker exited with {proc.returncode}:\n{proc.log_path.read_text()[-3000:]}")
        return all(WORKER_READY in proc.log_path.read_text(errors="replace") for proc in workers)

    started = time.monotonic()
    wait_until(all_ready, timeout=90, what="the workers to be ready", interval=0.05)
    print(f"  [recovery] {len(workers)} worker(s) ready in {time.monotonic() - started:.1f} s", flush=True)
    return workers


def slug(label: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in label).strip("-")


def kill(proc) -> None:
    """SIGKILL the worker and its pool at once (an ECS task killed outright)."""
    processes.stop(proc, grace=0, first=signal.SIGKILL)


# A publish that outlasts the request's budget leaves the Job pending, and its late answer still records it queued
# (api/jobs/outbox.py on_late): on a starved machine (the smoke run beside the tests, at nice 10) wait for that.
LATE_PUBLISH_SECONDS = 60


def submit_sleep(queue: str, seconds: float):
    from api.jobs.services import job_submit

    job = job_submit(kind="sleep", payload={"seconds": seconds}, queue=queue).job
    deadline = time.monotonic() + LATE_PUBLISH_SECONDS
    while job.state == "pending" and time.monotonic() < deadline:
        time.sleep(0.2)
        job.refresh_from_db()
    if job.state in ("pending", "refused"):  # pending: SQS took it neither within the budget nor late
        raise RuntimeError(f"the sleep job was not queued: {job.as_dict()}")
    return job


def job(pk: int):
    from api.jobs.models import Job

    return Job.objects.get(pk=pk)


def holder(workers: list, task_id: str):
    """The worker whose log says it received the task."""
    for proc in workers:
        if f"[{task_id}] received" in proc.log_path.read_text(errors="replace"):
            return proc
    return None


def deliveries(bench: Stack) -> int:
    """Messages the endpoint handed out since the last reset (one message in play: its deliveries)."""
    return bench.proxy.snapshot()["messages_received"]


def sigkill_once(bench: Stack, queue: str, kill_after: float, progress: Progress, label: str) -> dict[str, Any]:
    spec = _spec(queue)
    bench.fresh_queues()  # no long poll of an earlier repetition's dead worker is left to take this message
    workers = start_workers(bench, [f"kill-{slug(label)}-a", f"kill-{slug(label)}-b"])
    bench.proxy.reset()
    task = submit_sleep(queue, seconds=min(60, spec.soft_time_limit - 0.5))  # within its limits
    running = wait_until(
        lambda: (j := job(task.pk)).attempts >= 1 and j.started_at and j,
        timeout=30,
        what="the task to start",
        progress=progress,
        status=lambda: f"{label}: waiting for the task to start",
    )
    victim = wait_until(lambda: holder(workers, str(task.task_id)), timeout=10, what="the worker holding the task")
    survivor = next(w for w in workers if w is not victim)
    time.sleep(max(0.0, running.started_at.timestamp() + kill_after - time.time()))
    ran_for = time.time() - running.started_at.timestamp()
    processes.signal_group(victim, signal.SIGKILL)
    killed_at = time.time()
    again = wait_until(
        lambda: (j := job(task.pk)).attempts >= 2 and j,
        timeout=3 * spec.visibility_timeout + 30,
        what=f"the task to run again ({label})",
        progress=progress,
        status=lambda: f"{label}: {time.time() - killed_at:.0f} s since SIGKILL",
        interval=0.05,
    )
    recovery = again.started_at.timestamp() - killed_at
    delivered = deliveries(bench)
    rerun_by_survivor = holder([survivor], str(task.task_id)) is survivor
    for proc in workers:
        kill(proc)
    vt = spec.visibility_timeout
    progress(f"{label}: re-executed {recovery:.1f} s after SIGKILL (visibility {vt} s)", force=True)
    return {
        "seconds": round(recovery, 2),
        "task_ran_before_kill_s": round(ran_for, 2),
        "deliveries": delivered,
        "lost_to_dead_long_poll": max(0, delivered - 2),
        "rerun_by_other_worker": rerun_by_survivor,
    }


def sigterm_once(bench: Stack, progress: Progress, label: str) -> dict[str, Any]:
    spec = _spec(HEARTBEAT_QUEUE)
    bench.fresh_queues()
    [leaving] = start_workers(
        bench, [f"term-{slug(label)}-leaving"], env={"WORKER_SOFT_SHUTDOWN_SECONDS": str(SOFT_WINDOW)}
    )
    bench.proxy.reset()
    tasks = [submit_sleep(HEARTBEAT_QUEUE, seconds=60) for _ in range(CONCURRENCY)]
    wait_until(
        lambda: all(job(t.pk).attempts >= 1 for t in tasks),
        timeout=30,
        what="every slot of the first worker to run a task",
        progress=progress,
        status=lambda: f"{label}: waiting for the tasks to start",
    )
    [staying] = start_workers(bench, [f"term-{slug(label)}-staying"])
    leaving.send_signal(signal.SIGTERM)  # the main process only, as ECS does; bin/start-worker remaps it
    termed_at = time.time()
    exited = None

    def restarted() -> bool:
        nonlocal exited
        if exited is None and leaving.poll() is not None:
            exited = time.time() - termed_at
        return all(job(t.pk).attempts >= 2 for t in tasks)

    wait_until(
        restarted,
        timeout=SOFT_WINDOW + 3 * spec.visibility_timeout + 30,
        what=f"the handed-back tasks to start on the other worker ({label})",
        progress=progress,
        status=lambda: f"{label}: {time.time() - termed_at:.0f} s since SIGTERM",
        interval=0.05,
    )
    if exited is None:
        with_timeout = time.monotonic() + SOFT_WINDOW + 15
        while leaving.poll() is None and time.monotonic() < with_timeout:
            time.sleep(0.05)
        exited = time.time() - termed_at if leaving.poll() is not None else None
    seconds = sorted(job(t.pk).started_at.timestamp() - termed_at for t in tasks)
    delivered = deliveries(bench)
    for proc in (leaving, staying):
        kill(proc)
    progress(f"{label}: restarted {', '.join(f'{s:.1f}' for s in seconds)} s after SIGTERM", force=True)
    return {
        "seconds_per_task": [round(s, 2) for s in seconds],
        "last_task_s": round(seconds[-1], 2),
        "after_soft_window_s": round(seconds[-1] - SOFT_WINDOW, 2),
        "leaving_worker_exited_after_s": None if exited is None else round(exited, 2),
        "deliveries": delivered,
        "lost_to_dead_long_poll": max(0, delivered - 2 * len(tasks)),
        "rerun_by_other_worker": all(holder([staying], str(t.task_id)) is staying for t in tasks),
    }


def _spec(queue: str):
    from django.conf import settings

    return settings.QUEUE_TOPOLOGY.queue(queue)


def stats(values: list[float]) -> dict[str, float]:
    return {"min": round(min(values), 2), "median": round(statistics.median(values), 2), "max": round(max(values), 2)}


def main() -> int:
    reps = size("BENCH_RECOVERY_REPS", 5, 1)  # a dead long poll takes the message in about half the runs
    plain_limit = size("BENCH_RECOVERY_TIME_LIMIT", 20, 5)
    progress = Progress("recovery")
    print(
        f"recovery: {reps} repetition(s) of SIGKILL with and without the heartbeat, then of SIGTERM "
        f"(soft window {SOFT_WINDOW} s)",
        flush=True,
    )
    rng = random.Random(SEED)  # noqa: S311 (timings, not secrets)
    kills: dict[str, list[dict[str, Any]]] = {"heartbeat": [], "no_heartbeat": []}
    terms: list[dict[str, Any]] = []
    with stack("recovery", topology=topology(plain_limit), proxy=True) as bench:
        hb_vt, plain_vt = _spec(HEARTBEAT_QUEUE).visibility_timeout, _spec(PLAIN_QUEUE).visibility_timeout
        for rep in range(reps):
            kill_after = round(rng.uniform(1, 1 + HB_INTERVAL), 2)
            modes = [("heartbeat", HEARTBEAT_QUEUE), ("no_heartbeat", PLAIN_QUEUE)]
            rng.shuffle(modes)
            for mode, queue in modes:
                kills[mode].append(sigkill_once(bench, queue, kill_after, progress, f"{mode} #{rep + 1}"))
        for rep in range(reps):
            terms.append(sigterm_once(bench, progress, f"sigterm #{rep + 1}"))

    summary = {mode: stats([r["seconds"] for r in runs]) for mode, runs in kills.items()}
    # The same, over the runs in which no dead worker's long poll took the message (none, if it took it every time).
    clean = {
        f"{mode}_no_lost_delivery": stats(kept)
        for mode, runs in kills.items()
        if (kept := [r["seconds"] for r in runs if not r["lost_to_dead_long_poll"]])
    }
    term_summary = stats([r["last_task_s"] for r in terms])
    ratios = {
        "no_heartbeat_vs_heartbeat_median": ratio(summary["no_heartbeat"]["median"], summary["heartbeat"]["median"]),
        "no_heartbeat_vs_heartbeat_min": ratio(summary["no_heartbeat"]["min"], summary["heartbeat"]["min"]),
        "no_heartbeat_vs_heartbeat_median_no_lost_delivery": ratio(
            clean.get("no_heartbeat_no_lost_delivery", {}).get("median", 0),
            clean.get("heartbeat_no_lost_delivery", {}).get("median", 0),
        )
        or None,
        "sigterm_vs_sigkill_heartbeat_median": ratio(term_summary["median"], summary["heartbeat"]["median"]),
    }
    rows = []
    for mode, runs in kills.items():
        vt = hb_vt if mode == "heartbeat" else plain_vt
        for i, r in enumerate(runs):
            rows.append(
                [
                    f"SIGKILL, {mode.replace('_', ' ')}",
                    i + 1,
                    f"VT {vt} s, "
                    + (f"heartbeat {HB_INTERVAL} s" if mode == "heartbeat" else f"limit {plain_limit} s"),
                    r["task_ran_before_kill_s"],
                    r["seconds"],
                    r["deliveries"],
                    r["lost_to_dead_long_poll"],
                ]
            )
    for i, r in enumerate(terms):
        rows.append(
            [
                "SIGTERM",
                i + 1,
                f"soft window {SOFT_WINDOW} s, VT {hb_vt} s; exited after {r['leaving_worker_exited_after_s']} s",
                "",
                " / ".join(str(s) for s in r["seconds_per_task"]),
                r["deliveries"],
                r["lost_to_dead_long_poll"],
            ]
        )
    print_table(
        f"recovery (concurrency {CONCURRENCY}; seconds until another worker starts the task)",
        ["event", "rep", "settings", "task ran s", "recovered after s", "deliveries", "extra (dead poll)"],
        rows,
    )
    print_table(
        "summary (seconds)",
        ["case", "min", "median", "max"],
        [
            [k, v["min"], v["median"], v["max"]]
            for k, v in {**summary, **clean, "sigterm_last_task": term_summary}.items()
        ],
    )
    print_table("ratios", ["ratio", "value"], [[k, v] for k, v in ratios.items()])
    write_results(
        "recovery",
        {
            "repetitions": reps,
            "concurrency": CONCURRENCY,
            "sigkill": {
                "heartbeat": {"visibility_timeout_s": hb_vt, "heartbeat_s": HB_INTERVAL, "runs": kills["heartbeat"]},
                "no_heartbeat": {
                    "visibility_timeout_s": plain_vt,
                    "time_limit_s": plain_limit,
                    "margin_s": MARGIN,
                    "runs": kills["no_heartbeat"],
                },
                "summary": {**summary, **clean},
            },
            "sigterm": {
                "soft_window_s": SOFT_WINDOW,
                "visibility_timeout_s": hb_vt,
                "runs": terms,
                "summary_last_task": term_summary,
            },
            "ratios": ratios,
        },
    )
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
