"""Unit tests of the injected latency's plumbing: which runs `make bench` plans, the JSON each run writes, the
summary's columns, and the latency proxy a stack puts between its clients and the emulator."""

from __future__ import annotations

import http.client
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bench import __main__ as bench_main
from bench import harness
from bench.latency_proxy import ENV as LATENCY_ENV
from bench.latency_proxy import latency_proxy
from devstack.stack import Processes


@pytest.fixture
def clean_env(monkeypatch):
    for name in ("BENCH_LATENCY_MS", "BENCH_LATENCIES", "BENCH_SMOKE", LATENCY_ENV):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_a_full_run_plans_the_round_trip_benchmarks_at_0_and_15_ms_and_recovery_once(clean_env):
    # GIVEN no latency settings WHEN a full run is planned
    runs = bench_main.planned_runs(bench_main.BENCHMARKS, bench_main.latencies())
    # THEN throughput, requests, publish latency and replay run at 0 and 15 ms, recovery at 0 ms only
    assert sorted((r.name, r.latency_ms) for r in runs) == sorted(
        [(name, ms) for name in bench_main.AT_LATENCY for ms in (0.0, 15.0)] + [("recovery", 0.0)]
    )
    # AND each run's process is told its latency
    assert {r.label: r.env[LATENCY_ENV] for r in runs if r.name == "replay"} == {"replay": "0", "replay@15ms": "15"}


def test_the_injected_latency_is_configurable_and_smoke_runs_only_the_delayed_one(clean_env):
    # GIVEN BENCH_LATENCY_MS=30 THEN a full run takes 0 and 30 ms
    clean_env.setenv("BENCH_LATENCY_MS", "30")
    assert bench_main.latencies() == [0.0, 30.0]
    # AND a smoke run only 30 ms, recovery still at 0 ms
    clean_env.setenv("BENCH_SMOKE", "1")
    assert bench_main.latencies() == [30.0]
    runs = bench_main.planned_runs(["recovery", "replay"], bench_main.latencies())
    assert [(r.name, r.latency_ms) for r in runs] == [("recovery", 0.0), ("replay", 30.0)]
    # AND BENCH_LATENCIES lists them outright
    clean_env.setenv("BENCH_LATENCIES", "25,0")
    assert bench_main.latencies() == [0.0, 25.0]
    # AND a negative latency is refused
    clean_env.setenv("BENCH_LATENCIES", "-5")
    with pytest.raises(ValueError, match="0 ms or more"):
        bench_main.latencies()


@pytest.mark.parametrize(("latency", "file_name"), [("0", "replay.json"), ("15", "replay.latency-15ms.json")])
def test_each_runs_json_carries_its_injected_latency_and_its_ratios(clean_env, tmp_path, latency, file_name):
    # GIVEN a run at `latency` ms, writing under a temporary results folder
    clean_env.setattr(harness, "RESULTS_DIR", tmp_path)
    clean_env.setenv(LATENCY_ENV, latency)
    # WHEN a benchmark writes its results
    path = harness.write_results("replay", {"ratios": {"replay_vs_loop_msgs_per_s": 5.5}})
    # THEN the file is named after the latency, and carries it beside the ratios
    assert path == tmp_path / file_name
    results = json.loads(path.read_text())["results"]
    assert results["injected_latency_ms"] == float(latency)
    assert results["ratios"] == {"replay_vs_loop_msgs_per_s": 5.5}


def test_a_negative_injected_latency_is_refused(clean_env):
    clean_env.setenv(LATENCY_ENV, "-1")
    with pytest.raises(ValueError, match=LATENCY_ENV):
        harness.injected_latency_ms()


def test_the_summary_puts_each_latencys_figures_side_by_side():
    # GIVEN summary rows at 0 ms and at 15 ms, one figure only measured at 0 ms
    rows = {
        0.0: [["replay", "messages/s", 300, "one by one 100", 3.0], ["recovery", "median s", 4.1, "", None]],
        15.0: [["replay", "messages/s", 100, "one by one 18", 5.5]],
    }
    # WHEN merged
    header, merged = bench_main.side_by_side(rows)
    # THEN one row per figure, the 15 ms columns beside the 0 ms ones, blanks where a latency has none
    assert header[2:] == [
        "value +0 ms", "compared with +0 ms", "ratio +0 ms", "value +15 ms", "compared with +15 ms", "ratio +15 ms",
    ]  # fmt: skip
    assert merged == [
        ["replay", "messages/s", 300, "one by one 100", 3.0, 100, "one by one 18", 5.5],
        ["recovery", "median s", 4.1, "", None, "", "", None],
    ]


def test_a_figure_compared_with_two_things_keeps_both_rows_at_each_latency():
    # GIVEN the worker's tasks/s compared with the raw loop and with Celery on Redis, at 0 and 15 ms
    rows = {
        0.0: [["throughput", "worker tasks/s", 50, "raw 54", 0.93], ["throughput", "worker tasks/s", 50, "redis", 0.2]],
        15.0: [
            ["throughput", "worker tasks/s", 24, "raw 27", 0.88],
            ["throughput", "worker tasks/s", 24, "redis", 0.1],
        ],
    }
    # WHEN merged THEN both rows stay, each beside its own counterpart
    _, merged = bench_main.side_by_side(rows)
    assert [row[3:] for row in merged] == [["raw 54", 0.93, 24, "raw 27", 0.88], ["redis", 0.2, 24, "redis", 0.1]]


def test_at_0_ms_a_stack_talks_to_the_emulator_itself(tmp_path):
    # WHEN no latency is injected THEN there is no proxy process, and the clients' endpoint is the emulator's
    group = Processes(tmp_path)
    assert harness.start_latency_proxy(group, 4566, 0) == "http://127.0.0.1:4566"
    assert group.started == []


def test_with_a_latency_a_stack_puts_a_latency_proxy_process_in_front_of_the_emulator(tmp_path):
    # GIVEN an HTTP server standing in for the emulator, counting the requests it gets
    hits: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            hits.append(self.path)
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        # WHEN a stack starts its latency proxy at 15 ms
        group = Processes(tmp_path)
        endpoint = harness.start_latency_proxy(group, server.server_address[1], 15)
        try:
            [handle] = group.started
            proc = handle.proc
            # THEN it is a process of its own on another port, which forwards requests to the emulator
            assert proc is not None and proc.poll() is None
            assert endpoint != f"http://127.0.0.1:{server.server_address[1]}"
            import urllib.request

            request = urllib.request.Request(f"{endpoint}/queue", data=b"{}", method="POST")
            with urllib.request.urlopen(request, timeout=30) as response:
                assert response.status == 200
            assert hits == ["/queue"]
            # AND it says the delay it adds
            assert "15 ms per request" in handle.log()
        finally:
            group.stop_all(grace=5)
    finally:
        server.shutdown()
        server.server_close()


def test_the_summary_reads_the_steady_depth_figures_and_their_ratios():
    # GIVEN a throughput result with its steady-depth part (what bench/throughput.py writes)
    def drained(tasks_per_s, tasks=300):
        return {"tasks": tasks, "tasks_per_s": tasks_per_s, "worker_cpu_s_per_1000": 2.0}

    results = {
        "throughput": {
            "injected_latency_ms": 15.0,
            "prefetch_multiplier_variant": 3,
            "deep": {"raw_boto3": drained(20), "worker": drained(18), "celery_redis": drained(900)},
            "low_depth": {"raw_boto3": drained(100), "worker_before": drained(4), "worker": drained(60)},
            "steady_depth": {
                "depth": 20,
                "raw_boto3": drained(120),
                "worker": drained(60),
                "worker_prefetch_3": drained(100),
            },
            "ratios": {
                "worker_vs_raw_boto3": 0.9,
                "worker_vs_celery_redis": 0.02,
                "worker_cpu_vs_celery_redis": 1.8,
                "low_depth_before_vs_raw": 0.04,
                "low_depth_after_vs_raw": 0.6,
                "steady_worker_vs_raw": 0.5,
                "steady_prefetch_vs_raw": 0.83,
                "steady_worker_cpu_vs_celery_redis": 1.0,
            },
        }
    }
    # WHEN summarised
    rows = bench_main.summary_rows(results)
    # THEN the steady-depth rows carry the worker's and the prefetch variant's figures beside the raw loop's, and the
    # worker's CPU at that depth beside Celery on Redis's (issue L item 3)
    steady = [row for row in rows if "depth held at 20" in row[1]]
    assert steady == [
        ["throughput", "worker tasks/s, depth held at 20 (300)", 60, "raw boto3 120", 0.5],
        ["throughput", "worker prefetch 3 tasks/s, depth held at 20 (300)", 100, "raw boto3 120", 0.83],
        ["worker CPU", "s per 1000 tasks, depth held at 20", 2.0, "celery on redis 2.0", 1.0],
    ]


def test_the_steady_cpu_ratio_is_the_worker_at_the_held_depth_over_redis_deep():
    from bench.throughput import steady_cpu_ratios

    deep = {"celery_redis": {"worker_cpu_s_per_1000": 2.0}}
    assert steady_cpu_ratios(deep, {"worker": {"worker_cpu_s_per_1000": 2.5}}) == {
        "steady_worker_cpu_vs_celery_redis": 1.25
    }
    # without the deep part (BENCH_THROUGHPUT_PARTS=steady) or the worker's figure there is no ratio
    assert steady_cpu_ratios({}, {"worker": {"worker_cpu_s_per_1000": 2.5}}) == {}
    assert steady_cpu_ratios(deep, {}) == {}


def test_with_redis_drained_in_every_steady_round_the_cpu_ratio_is_of_the_same_rounds_medians():
    from bench.throughput import steady_cpu_figures, steady_cpu_ratios

    # GIVEN three steady rounds of the worker and of Celery on Redis, and one far-off deep Redis sample
    deep = {"celery_redis": {"worker_cpu_s_per_1000": 9.0}}
    steady = {
        "worker": {
            "worker_cpu_s_per_1000": 3.0,  # the median-throughput round's
            "rounds": [{"worker_cpu_s_per_1000": v} for v in (2.2, 1.8, 3.0)],
        },
        "celery_redis": {"worker_cpu_s_per_1000": 1.5, "rounds_cpu_s_per_1000": [1.5, 2.4, 1.4]},
    }
    # WHEN the figures are read; THEN the medians of the rounds, not the deep sample nor one round's
    assert steady_cpu_figures(deep, steady) == (2.2, 1.5)
    assert steady_cpu_ratios(deep, steady) == {"steady_worker_cpu_vs_celery_redis": 1.47}


def test_with_redis_also_fed_at_the_workers_pace_a_second_cpu_ratio_is_over_that_median():
    from bench.throughput import redis_rows, steady_cpu_ratios

    # GIVEN three steady rounds of the worker, of Redis queued first, and of Redis fed at the worker's pace
    steady = {
        "worker": {"rounds": [{"worker_cpu_s_per_1000": v} for v in (2.2, 1.8, 3.0)]},
        "celery_redis": {"worker_cpu_s_per_1000": 1.5, "rounds_cpu_s_per_1000": [1.5, 2.4, 1.4]},
        "celery_redis_paced": {"worker_cpu_s_per_1000": 2.0, "rounds_cpu_s_per_1000": [2.0, 1.9, 2.6]},
    }
    steady["celery_redis"] |= {"tasks_per_s": 900.0, "seconds": 0.7}
    steady["celery_redis_paced"] |= {"tasks_per_s": 200.0, "seconds": 3.0}
    # WHEN the ratios are taken THEN the paced one is over the paced rounds' median, beside the other
    assert steady_cpu_ratios({}, steady) == {
        "steady_worker_cpu_vs_celery_redis": 1.47,
        "steady_worker_cpu_vs_celery_redis_paced": 1.1,
    }
    # AND the table shows both Redis rows, each with its rounds
    assert [(row[1], row[-1]) for row in redis_rows(steady, 600)] == [
        ("celery_redis", "CPU s / 1000 of each round: 1.5 2.4 1.4"),
        ("celery_redis_paced", "CPU s / 1000 of each round: 2.0 1.9 2.6"),
    ]


def test_a_smoke_runs_results_are_read_back_at_each_runs_own_latency(clean_env, tmp_path):
    # GIVEN a smoke run: replay at 15 ms, recovery at 0 ms, each having written its JSON
    clean_env.setattr(harness, "RESULTS_DIR", tmp_path)
    clean_env.setenv("BENCH_SMOKE", "1")
    runs = bench_main.planned_runs(["recovery", "replay"], bench_main.latencies())
    for run in runs:
        clean_env.setenv(LATENCY_ENV, f"{run.latency_ms:g}")
        harness.write_results(run.name, {"ratios": {}})
    # WHEN read back THEN each sits under its own latency
    collected = bench_main.collected_results(runs)
    assert {ms: sorted(by_name) for ms, by_name in collected.items()} == {0.0: ["recovery"], 15.0: ["replay"]}
    assert collected[15.0]["replay"]["injected_latency_ms"] == 15.0


def test_at_0_ms_with_keep_alive_the_proxy_keeps_the_clients_connection_though_the_emulator_closes_its_own():
    # GIVEN a server that closes every connection after one answer, as moto's werkzeug does ("Connection: close")
    connections: list[int] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self):
            super().setup()
            connections.append(1)

        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(b"{}")
            self.close_connection = True

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    proxy = latency_proxy(server.server_address[1], 0)
    try:
        # WHEN a client sends three requests through the proxy at 0 ms on one HTTP/1.1 connection
        client = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=30)
        for _ in range(3):
            client.request("POST", "/", body=b"{}")
            response = client.getresponse()
            # THEN each is answered without "Connection: close", so the client's connection stays open
            assert response.status == 200 and response.read() == b"{}"
            assert (response.getheader("Connection") or "").lower() != "close"
        client.close()
        # AND the proxy opened one upstream connection per request (the server's closes), the client just one
        assert proxy.connections == 1
        assert len(connections) == 3
    finally:
        proxy.stop()
        server.shutdown()


def test_the_deep_drain_also_compares_the_workers_cpu_with_redis_fed_at_the_workers_pace():
    from bench.throughput import deep_ratios

    # GIVEN the deep part with Celery on Redis queued first and fed at the worker's pace (what throughput writes)
    def drained(tasks_per_s, cpu):
        return {"tasks": 2000, "tasks_per_s": tasks_per_s, "worker_cpu_s_per_1000": cpu}

    deep = {
        "raw_boto3": drained(250.0, None),
        "worker": drained(200.0, 1.8),
        "celery_redis": drained(900.0, 0.9),
        "celery_redis_paced": drained(199.0, 2.0) | {"paced_tasks_per_s": 200.0},
    }
    # WHEN the ratios are taken THEN the worker's CPU is over each Redis drain's
    ratios = deep_ratios(deep)
    assert (ratios["worker_cpu_vs_celery_redis"], ratios["worker_cpu_vs_celery_redis_paced"]) == (2.0, 0.9)
    # AND the summary shows both rows
    results = {"throughput": {"deep": deep, "low_depth": {}, "ratios": ratios}}
    rows = [row for row in bench_main.summary_rows(results) if row[0] == "worker CPU"]
    assert rows == [
        ["worker CPU", "s per 1000 tasks", 1.8, "celery on redis 0.9", 2.0],
        ["worker CPU", "s per 1000 tasks, vs Redis fed at the worker's pace", 1.8, "celery on redis paced 2.0", 0.9],
    ]


@pytest.mark.parametrize("tasks_per_s", [None, 0, 0.0])
def test_redis_is_not_paced_at_a_pace_the_worker_did_not_report(tasks_per_s):
    from bench.throughput import worker_pace

    # GIVEN a worker drain whose log gave no pace WHEN the pace for Redis is read THEN there is none (no paced drain
    # that would run queued first under the paced label)
    assert worker_pace({"tasks_per_s": tasks_per_s}) is None
    assert worker_pace({"tasks_per_s": 190.5}) == 190.5


def test_a_round_in_which_the_worker_stalled_counts_in_the_after_against_before_median():
    from bench.throughput import steady_ratios

    # GIVEN three steady rounds in which the shipped worker stalled once (0 tasks/s) and kombu's pace did not
    def rounds(*paces):
        return [{"tasks_per_s": p} for p in paces]

    steady = {
        "worker": {"rounds": rounds(0, 90, 100), "rounds_vs_raw": [0.0, 0.9, 1.0]},
        "worker_one_receive": {"rounds": rounds(50, 50, 50), "rounds_vs_raw": [0.5, 0.5, 0.5]},
    }
    # WHEN the ratios are read THEN the stalled round is one of the three, not dropped: the median is 1.8, not 2.0
    ratios = steady_ratios(steady)
    assert ratios["steady_worker_vs_one_receive"] == 1.8
    assert ratios["steady_worker_vs_raw"] == 0.9
