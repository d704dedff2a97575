"""Unit tests of the replay Lambda's entry point (lambdas/dlq_replay/handler.py): config from the environment,
the report returned, EMF metrics printed."""

from __future__ import annotations

from core.envelope import decode_sqs_body
from tests.unit.lambdas.conftest import FakeLambdaContext, emf_lines


def test_handler_replays_and_returns_the_report(sqs_world, replay_lambda):
    # GIVEN 3 real jobs.fail messages in the default DLQ (and the Lambda's own, unwrapped, SQS client)
    ids = sqs_world.dead_letter_many("jobs.fail", 3)
    # WHEN the Lambda is invoked for a real run
    result = replay_lambda({"queue": "default", "dry_run": False}, FakeLambdaContext())
    # THEN it returns the report as a plain dict, and the messages are back on the source queue
    assert result["queue"] == "default"
    assert result["dlq"] == "t-default-dlq"
    assert (result["dry_run"], result["received"], result["matched"], result["moved"]) == (False, 3, 3, 3)
    assert result["by_task"] == {"jobs.fail": 3}
    assert result["failed"] == [] and result["over_limit"] == [] and result["not_deleted"] == []
    assert result["stopped"] == "no more messages in the DLQ"
    assert sqs_world.dlq_counts() == (0, 0)
    assert sorted(h["id"] for h in sqs_world.headers_in(sqs_world.urls["default"])) == sorted(ids)


def test_handler_emits_emf_metrics_with_the_queue_dimension(sqs_world, replay_lambda, fast_lambda_sqs, capsys):
    # GIVEN 2 real messages in the default DLQ
    sqs_world.dead_letter_many("jobs.echo", 2)
    capsys.readouterr()
    # WHEN the Lambda replays them
    replay_lambda({"queue": "default", "dry_run": False}, FakeLambdaContext())
    # THEN one EMF record is printed with Moved = 2, Matched = 2, in the namespace, dimensioned by queue and dry_run
    [record] = [r for r in emf_lines(capsys.readouterr().out) if "Moved" in r]
    assert record["Moved"] == [2.0]  # Powertools prints values as lists
    assert record["Matched"] == [2.0]
    assert record["Failed"] == [0.0]
    assert record["queue"] == "default"
    assert record["dry_run"] == "false"
    [directive] = record["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == "CelerySqsTest"
    assert [d for d in directive["Dimensions"][0] if d in ("queue", "dry_run")] == ["queue", "dry_run"]
    assert {m["Name"] for m in directive["Metrics"]} >= {"Moved", "Matched", "Skipped", "Undecodable"}


def test_handler_dry_run_by_default(sqs_world, replay_lambda, fast_lambda_sqs, capsys):
    # GIVEN one real message in the DLQ
    sqs_world.dead_letter("jobs.fail")
    # WHEN the Lambda is invoked with only the queue
    result = replay_lambda({"queue": "default"}, FakeLambdaContext())
    # THEN it only reports; the message is still visible in the DLQ; the metric says dry_run true
    assert (result["dry_run"], result["matched"], result["moved"]) == (True, 1, 0)
    assert sqs_world.dlq_counts() == (1, 0)
    assert sqs_world.source_counts() == (0, 0)
    [record] = [r for r in emf_lines(capsys.readouterr().out) if "Moved" in r]
    assert record["dry_run"] == "true"


def test_handler_stops_on_the_lambda_time_left(sqs_world, replay_lambda):
    # GIVEN 2 messages, and a Lambda with 15 s left (the run stops under 20 s)
    sqs_world.dead_letter_many("jobs.fail", 2)
    # WHEN the Lambda is invoked for a real run
    result = replay_lambda({"queue": "default", "dry_run": False}, FakeLambdaContext(remaining_ms=15_000))
    # THEN it received nothing and says why
    assert (result["received"], result["moved"], result["stopped"]) == (0, 0, "time budget nearly spent")
    assert sqs_world.dlq_counts() == (2, 0)


def test_handler_reads_the_replay_limit_from_the_environment(sqs_world, replay_lambda, fast_lambda_sqs, monkeypatch):
    # GIVEN a message replayed once already, and DLQ_MAX_REPLAYS=1
    task_id = sqs_world.dead_letter("jobs.fail")
    replay_lambda({"queue": "default", "dry_run": False}, FakeLambdaContext())
    [message] = sqs_world.drain(sqs_world.urls["default"])
    assert decode_sqs_body(message["Body"]).headers["x-dlq-replays"] == 1
    sqs_world.move_to_dlq("default")
    monkeypatch.setenv("DLQ_MAX_REPLAYS", "1")
    # WHEN the Lambda is invoked again
    result = replay_lambda({"queue": "default", "dry_run": False}, FakeLambdaContext())
    # THEN the message is over the limit and stays in the DLQ
    assert result["moved"] == 0
    assert result["over_limit"] == [{"task_id": task_id, "task": "jobs.fail", "replays": 1}]
    assert sqs_world.dlq_counts() == (1, 0)
