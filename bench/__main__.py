"""`make bench` / `make bench-smoke`: run every benchmark, one process each, at each injected latency (0 ms and
BENCH_LATENCY_MS), then print one summary table with the latencies side by side."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.harness import is_smoke, print_table, results_path
from bench.latency_proxy import ENV as LATENCY_ENV
from core.env import env_bool, env_float, env_list

BENCHMARKS = ["throughput", "requests", "publish_latency", "recovery", "replay"]
# Run again with a delay on every request; recovery's figures are visibility timeouts and kills, not round trips.
AT_LATENCY = ("throughput", "requests", "publish_latency", "replay")
DEFAULT_LATENCY_MS = 15  # in-region SQS answers in 10-30 ms


def latencies() -> list[float]:
    """BENCH_LATENCIES (comma-separated ms) if set; else 0 and BENCH_LATENCY_MS (15) for a full run, and only
    BENCH_LATENCY_MS for a smoke run (its figures mean nothing; the delayed path is the one worth proving)."""
    injected = env_float("BENCH_LATENCY_MS", DEFAULT_LATENCY_MS)
    listed = env_list("BENCH_LATENCIES", [])
    default = [injected] if is_smoke() else [0.0, injected]
    values = [float(v) for v in listed] if listed else default
    if not values or any(v < 0 for v in values):
        raise ValueError(f"latencies must be 0 ms or more, got {values}")
    return sorted(set(values))


@dataclass(frozen=True)
class Run:
    """One benchmark at one injected latency: one process, one JSON file."""

    name: str
    latency_ms: float

    @property
    def label(self) -> str:
        return self.name if not self.latency_ms else f"{self.name}@{self.latency_ms:g}ms"

    @property
    def env(self) -> dict[str, str]:
        return {**_ENV, LATENCY_ENV: f"{self.latency_ms:g}"}


def planned_runs(chosen: list[str], chosen_latencies: list[float]) -> list[Run]:
    """Each chosen benchmark at each latency; recovery at 0 ms only."""
    runs = []
    for name in chosen:
        at = chosen_latencies if name in AT_LATENCY else [0.0]
        runs.extend(Run(name, ms) for ms in at)
    return runs


def summary_rows(results: dict[str, dict]) -> list[list]:
    """The headline figure of each benchmark and its ratio, from the JSON each one wrote."""
    rows: list[list] = []

    def add(benchmark: str, figure: str, value, compared_with: str = "", ratio=None) -> None:
        rows.append([benchmark, figure, value, compared_with, ratio])

    t = results.get("throughput") or {}
    r = t.get("ratios", {})
    prefetch = f"worker_prefetch_{t.get('prefetch_multiplier_variant')}"
    if t.get("deep") and t.get("low_depth"):  # BENCH_THROUGHPUT_PARTS may leave them out
        deep, low = t["deep"], t["low_depth"]
        n, shallow = deep["worker"]["tasks"], low["worker"]["tasks"]
        add(
            "throughput",
            f"worker tasks/s ({n})",
            deep["worker"]["tasks_per_s"],
            f"raw boto3 {deep['raw_boto3']['tasks_per_s']}",
            r["worker_vs_raw_boto3"],
        )
        add(
            "throughput",
            f"worker tasks/s ({n})",
            deep["worker"]["tasks_per_s"],
            f"celery on redis {deep['celery_redis']['tasks_per_s']}",
            r["worker_vs_celery_redis"],
        )
        add(
            "throughput",
            f"worker before (kombu's pace) tasks/s ({shallow})",
            low["worker_before"]["tasks_per_s"],
            f"raw boto3 {low['raw_boto3']['tasks_per_s']}",
            r["low_depth_before_vs_raw"],
        )
        add(
            "throughput",
            f"worker after tasks/s ({shallow})",
            low["worker"]["tasks_per_s"],
            f"raw boto3 {low['raw_boto3']['tasks_per_s']}",
            r["low_depth_after_vs_raw"],
        )
        if prefetch in low:
            add(
                "throughput",
                f"worker, prefetch_multiplier {t['prefetch_multiplier_variant']} tasks/s ({shallow})",
                low[prefetch]["tasks_per_s"],
                f"raw boto3 {low['raw_boto3']['tasks_per_s']}",
                r["low_depth_prefetch_vs_raw"],
            )
    if deep := t.get("deep"):
        cpu = deep["worker"]["worker_cpu_s_per_1000"]
        add(
            "worker CPU",
            "s per 1000 tasks",
            cpu,
            f"celery on redis {deep['celery_redis']['worker_cpu_s_per_1000']}",
            r["worker_cpu_vs_celery_redis"],
        )
        if paced := deep.get("celery_redis_paced"):
            add(
                "worker CPU",
                "s per 1000 tasks, vs Redis fed at the worker's pace",
                cpu,
                f"celery on redis paced {paced['worker_cpu_s_per_1000']}",
                r.get("worker_cpu_vs_celery_redis_paced"),
            )
    if steady := t.get("steady_depth"):
        raw, steady_n = f"raw boto3 {steady['raw_boto3']['tasks_per_s']}", steady["raw_boto3"]["tasks"]
        variants = (
            ("worker_one_receive", "steady_one_receive_vs_raw"),
            ("worker_eager_ahead", "steady_eager_ahead_vs_raw"),
            ("worker", "steady_worker_vs_raw"),
            (prefetch, "steady_prefetch_vs_raw"),
        )
        for variant, key in variants:
            if variant in steady:
                add(
                    "throughput",
                    f"{variant.replace('_', ' ')} tasks/s, depth held at {steady['depth']} ({steady_n})",
                    steady[variant]["tasks_per_s"],
                    raw,
                    r.get(key),
                )
    if (cpu_ratio := r.get("steady_worker_cpu_vs_celery_redis")) is not None:
        from bench.throughput import steady_cpu_figures

        steady = t["steady_depth"]
        cpu, redis = steady_cpu_figures(t["deep"], steady)
        same_rounds = " (same rounds, medians)" if "celery_redis" in steady else ""
        add(
            "worker CPU",
            f"s per 1000 tasks, depth held at {steady['depth']}{same_rounds}",
            cpu,
            f"celery on redis {redis}",
            cpu_ratio,
        )
        if (paced_ratio := r.get("steady_worker_cpu_vs_celery_redis_paced")) is not None:
            from bench.throughput import median_of

            add(
                "worker CPU",
                f"s per 1000 tasks, depth held at {steady['depth']}, vs Redis fed at the worker's pace",
                cpu,
                f"celery on redis paced {median_of(steady['celery_redis_paced']['rounds_cpu_s_per_1000'])}",
                paced_ratio,
            )
    if q := results.get("requests"):
        per = q["per_task"]
        add(
            "requests",
            "per task (worker)",
            per["worker"]["total"],
            f"raw boto3 {per['raw_boto3']['total']}",
            q["ratios"]["worker_vs_raw_boto3_requests_per_task"],
        )
        prefetch = next((k for k in per if k.startswith("worker_prefetch_")), None)
        if prefetch:
            add(
                "requests",
                f"per task ({prefetch.replace('_', ' ')})",
                per[prefetch]["total"],
                f"raw boto3 {per['raw_boto3']['total']}",
                q["ratios"]["prefetch_vs_raw_boto3_requests_per_task"],
            )
        add(
            "requests",
            "$ per 1M tasks (worker)",
            per["worker"]["usd_per_million_tasks"],
            f"raw boto3 {per['raw_boto3']['usd_per_million_tasks']}",
        )
        add("requests", "idle worker, per hour per queue", q["idle"]["requests_per_hour_per_queue"], "goal ≤ 200")
    if p := results.get("publish_latency"):
        f, r = p["figures"], p["ratios"]
        raw = f"raw send_message {f['raw_send_message']['p50_ms']} / {f['raw_send_message']['p99_ms']}"
        add(
            "publish latency",
            "POST /api/jobs p50 / p99 ms",
            f"{f['post_api_jobs']['p50_ms']} / {f['post_api_jobs']['p99_ms']}",
            raw,
            r["post_vs_raw_p50"],
        )
        add(
            "publish latency",
            ".delay() p50 / p99 ms",
            f"{f['delay']['p50_ms']} / {f['delay']['p99_ms']}",
            raw,
            r["delay_vs_raw_p50"],
        )
        if bh := p.get("black_holed"):
            add(
                "publish latency",
                "POST, SQS black-holed, every POST tries, p50 / p99 ms",
                f"{bh['figure']['p50_ms']} / {bh['figure']['p99_ms']}",
                f"budget {bh['budget_ms']:.0f} ms; answers {bh['answers']}",
                bh["p99_vs_budget"],
            )
        if bhp := p.get("black_holed_fast_path_pause"):
            add(
                "publish latency",
                "POST, SQS black-holed, fast-path pause, p50 / p99 ms",
                f"{bhp['figure']['p50_ms']} / {bhp['figure']['p99_ms']}",
                f"budget {bhp['budget_ms']:.0f} ms; answers {bhp['answers']}",
                bhp["p99_vs_budget"],
            )
        if idle := p.get("idle_relay"):
            add(
                "publish latency",
                "idle outbox relay: db queries / SQS requests per minute",
                f"{idle['db_queries_per_minute']} / {round(idle['sqs_requests'] * 60 / idle['seconds'], 1)}",
                f"a sweep every {idle['sweep_seconds']:g} s",
            )
    if rec := results.get("recovery"):
        kill, term = rec["sigkill"], rec["sigterm"]
        hb, no_hb = kill["heartbeat"], kill["no_heartbeat"]
        add(
            "recovery",
            f"SIGKILL → re-run, heartbeat (VT {hb['visibility_timeout_s']} s), median s",
            kill["summary"]["heartbeat"]["median"],
            f"no heartbeat (VT {no_hb['visibility_timeout_s']} s) {kill['summary']['no_heartbeat']['median']}",
            rec["ratios"]["no_heartbeat_vs_heartbeat_median"],
        )
        add(
            "recovery",
            f"SIGTERM → other worker runs it ({term['soft_window_s']} s soft window), median s",
            term["summary_last_task"]["median"],
            "",
        )
    if rep := results.get("replay"):
        m, r = rep["methods"], rep["ratios"]
        add(
            "replay",
            "DLQ replay messages/s",
            m["replay_100_per_s"]["messages_per_s"],
            f"one by one {m['one_by_one']['messages_per_s']}",
            r["replay_vs_loop_msgs_per_s"],
        )
        add(
            "replay",
            "requests per moved message",
            m["replay_100_per_s"]["requests_per_message"],
            f"one by one {m['one_by_one']['requests_per_message']}",
        )
    return rows


def side_by_side(rows_by_latency: dict[float, list[list]]) -> tuple[list[str], list[list]]:
    """One row per (benchmark, figure), with value / compared with / ratio for each latency in turn."""
    order: list[tuple[str, str, int]] = []
    cells: dict[tuple[str, str, int], dict[float, list]] = {}
    for ms, rows in rows_by_latency.items():
        seen: dict[tuple[str, str], int] = {}
        for benchmark, figure, *rest in rows:
            # A figure may be compared with two things (two rows): the n-th row of a figure meets its n-th.
            nth = seen[(benchmark, figure)] = seen.get((benchmark, figure), 0) + 1
            key = (benchmark, figure, nth)
            if key not in cells:
                order.append(key)
                cells[key] = {}
            cells[key][ms] = rest
    header = ["benchmark", "figure"]
    for ms in rows_by_latency:
        suffix = f" +{ms:g} ms"
        header += [f"value{suffix}", f"compared with{suffix}", f"ratio{suffix}"]
    rows = [
        [*key[:2], *(cell for ms in rows_by_latency for cell in cells[key].get(ms, ["", "", None]))] for key in order
    ]
    return header, rows


def parallel() -> bool:
    """BENCH_PARALLEL (default: on for smoke runs, whose figures mean nothing; off for real ones, whose would
    suffer from sharing the CPU)."""
    return env_bool("BENCH_PARALLEL", is_smoke())


def _argv(name: str) -> list[str]:
    return [sys.executable, "-m", f"bench.{name}"]


_ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


def run_one_by_one(runs: list[Run]) -> dict[Run, int]:
    codes = {}
    for run in runs:
        started = time.monotonic()
        print(f"=== bench.{run.label} {'(smoke)' if is_smoke() else ''}", flush=True)
        codes[run] = subprocess.call(_argv(run.name), env=run.env)
        print(f"=== bench.{run.label}: exit {codes[run]} in {time.monotonic() - started:.0f} s", flush=True)
    return codes


def run_side_by_side(runs: list[Run]) -> dict[Run, int]:
    """Every benchmark at once (each has a stack of its own on free ports); their output in order, whole."""
    started = time.monotonic()
    print(f"=== {', '.join(run.label for run in runs)} side by side {'(smoke)' if is_smoke() else ''}", flush=True)
    codes: dict[Run, int] = {}
    with tempfile.TemporaryDirectory(prefix="celery-sqs-bench-logs-") as folder:
        logs = {run: Path(folder) / f"{run.label}.log" for run in runs}
        procs = {}
        try:
            for run in runs:
                with logs[run].open("wb") as log:
                    procs[run] = subprocess.Popen(_argv(run.name), env=run.env, stdout=log, stderr=subprocess.STDOUT)
            for run, proc in procs.items():
                codes[run] = proc.wait()
                print(f"=== bench.{run.label}: exit {codes[run]} at {time.monotonic() - started:.0f} s", flush=True)
        finally:
            for proc in procs.values():
                if proc.poll() is None:
                    proc.terminate()  # each benchmark stops its own stack on SIGTERM
                    proc.wait()
            for run in procs:
                print(f"=== bench.{run.label} output", flush=True)
                sys.stdout.buffer.write(logs[run].read_bytes())
                sys.stdout.flush()
    return codes


def collected_results(runs: list[Run]) -> dict[float, dict[str, dict]]:
    """The results each run wrote, by latency then benchmark (every run's latency has a key, even with none)."""
    by_latency: dict[float, dict[str, dict]] = {ms: {} for ms in sorted({run.latency_ms for run in runs})}
    for run in runs:
        path = results_path(run.name, run.latency_ms, smoke=is_smoke())
        if path.exists():
            by_latency[run.latency_ms][run.name] = json.loads(path.read_text())["results"]
    return by_latency


def main() -> int:
    chosen = sys.argv[1:] or BENCHMARKS
    unknown = set(chosen) - set(BENCHMARKS)
    if unknown:
        print(f"unknown benchmark(s) {sorted(unknown)}; choose from {BENCHMARKS}", file=sys.stderr)
        return 2
    chosen_latencies = latencies()
    runner = run_side_by_side if parallel() else run_one_by_one
    codes = runner(planned_runs(chosen, chosen_latencies))
    failed = [run for run, code in codes.items() if code]
    by_latency = collected_results([run for run in codes if run not in failed])
    header, rows = side_by_side({ms: summary_rows(results) for ms, results in by_latency.items()})
    print_table("summary", header, rows)
    if failed:
        print(f"bench: failed: {', '.join(run.label for run in failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
