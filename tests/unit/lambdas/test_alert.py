"""Unit tests of the DLQ alert (lambdas/dlq_alert/): a summary that does not consume the DLQ, the text a person
acts on, and the Lambda that picks the DLQs named by the alarm and publishes to SNS."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest
import yaml
from django.conf import settings
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from core.dlq.summary import DlqSummary, format_alert, lambda_replay_hint, summarise_dlq
from lambdas.dlq_alert.handler import queues_named_by_alarm
from tests.unit.lambdas.conftest import REGION, FakeLambdaContext, FastSqs, emf_lines

TOPOLOGY = settings.QUEUE_TOPOLOGY
ALL_QUEUES = ["default", "high_priority", "low_priority"]


def _alarm_event(*dlq_names: str) -> dict:
    """What SNS hands the Lambda for a CloudWatch alarm on the DLQs' ApproximateNumberOfMessagesVisible."""
    alarm = {
        "AlarmName": "celery-sqs-test-dlq-not-empty",
        "NewStateValue": "ALARM",
        "NewStateReason": "Threshold Crossed: 1 datapoint [1.0] was greater than or equal to the threshold (1.0).",
        "Trigger": {
            "MetricName": "ApproximateNumberOfMessagesVisible",
            "Namespace": "AWS/SQS",
            "Statistic": "MAXIMUM",
            "Dimensions": [{"value": name, "name": "QueueName"} for name in dlq_names],
            "Threshold": 1.0,
        },
    }
    return {
        "Records": [
            {
                "EventSource": "aws:sns",
                "Sns": {"Type": "Notification", "Subject": "ALARM: dlq", "Message": json.dumps(alarm)},
            }
        ]
    }


def _record(message) -> dict:
    return {"Records": [{"Sns": {"Message": message if isinstance(message, str) else json.dumps(message)}}]}


# --- summarise_dlq -----------------------------------------------------------------------------------


@pytest.fixture
def mixed_dlq(sqs_world):
    """The default DLQ holding 4 jobs.fail, 2 jobs.echo, 1 each of four other tasks, and 1 undecodable body."""
    ids = sqs_world.dead_letter_many("jobs.fail", 4)
    ids += sqs_world.dead_letter_many("jobs.echo", 2)
    for name in ("jobs.sleep", "jobs.flaky", "newsletter.send_one", "newsletter.send_batch"):
        ids.append(sqs_world.dead_letter(name))  # sent to `default` explicitly, whatever the route
    sqs_world.put_raw("not a celery message")
    return ids


def test_summary_counts_names_samples_and_ages_without_consuming(sqs_world, mixed_dlq):
    # GIVEN 11 messages in the default DLQ, and a `now` one hour after the oldest was sent
    url = sqs_world.dlq_urls["default"]
    sent = [int(m["Attributes"]["SentTimestamp"]) / 1000 for m in _received_with_sent_timestamps(sqs_world, url)]
    now = min(sent) + 3600
    # WHEN it is summarised
    summary = summarise_dlq(FastSqs(sqs_world.client), sqs_world.topology, "default", now=now)
    # THEN depth, the top 5 task names, 5 sample ids of real messages, the oldest age, and the undecodable count
    assert (summary.queue, summary.dlq) == ("default", "t-default-dlq")
    assert (summary.visible, summary.in_flight, summary.sampled) == (11, 0, 11)
    assert summary.top_tasks[:2] == [("jobs.fail", 4), ("jobs.echo", 2)]
    assert len(summary.top_tasks) == 5
    assert {name for name, count in summary.top_tasks[2:]} < {
        "jobs.sleep",
        "jobs.flaky",
        "newsletter.send_one",
        "newsletter.send_batch",
    }
    assert len(summary.sample_task_ids) == 5
    assert set(summary.sample_task_ids) < set(mixed_dlq)
    assert summary.oldest_age_seconds == pytest.approx(3600)
    assert summary.undecodable == 1
    # AND nothing was consumed: all 11 visible, and a receive right after gets them all
    assert sqs_world.dlq_counts() == (11, 0)
    assert len(sqs_world.drain(url)) == 11


def _received_with_sent_timestamps(world, url) -> list[dict]:
    messages = []
    while batch := world.client.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=30, MessageSystemAttributeNames=["SentTimestamp"]
    ).get("Messages", []):
        messages += batch
    for m in messages:
        world.client.change_message_visibility(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0)
    return messages


def test_summary_names_the_task_of_a_claim_checked_message(sqs_world):
    # GIVEN a dead-lettered task whose 2 MB body is in S3 (the message carries a pointer)
    task_id = sqs_world.dead_letter("jobs.echo", "high_priority", kwargs={"job_id": 1, "message": "p" * 2_000_000})
    # WHEN the DLQ is summarised
    summary = summarise_dlq(sqs_world.client, sqs_world.topology, "high_priority")
    # THEN it shows the task name and id, read from the message alone, not "undecodable"
    assert (summary.top_tasks, summary.undecodable) == ([("jobs.echo", 1)], 0)
    assert summary.sample_task_ids == [task_id]


def test_summary_samples_at_most_the_limit_and_releases_them(sqs_world):
    # GIVEN 12 messages in the DLQ
    sqs_world.dead_letter_many("jobs.fail", 12)
    # WHEN it is summarised with a sample of 3
    summary = summarise_dlq(FastSqs(sqs_world.client), sqs_world.topology, "default", sample=3)
    # THEN 3 were sampled, the depth is still 12, and none is left in flight
    assert (summary.visible, summary.sampled) == (12, 3)
    assert summary.top_tasks == [("jobs.fail", 3)]
    assert sqs_world.dlq_counts() == (12, 0)


def test_summary_of_an_empty_dlq_receives_nothing(sqs_world):
    # GIVEN an empty DLQ, and a client that records receives
    sqs = FastSqs(sqs_world.client)
    # WHEN it is summarised
    summary = summarise_dlq(sqs, sqs_world.topology, "high_priority")
    # THEN zero depth, no sample, no age, and no receive was made
    assert (summary.dlq, summary.visible, summary.in_flight, summary.sampled) == ("t-high-priority-dlq", 0, 0, 0)
    assert summary.oldest_age_seconds is None and summary.top_tasks == [] and summary.sample_task_ids == []
    assert sqs.waits == []


def test_summary_as_dict_is_json_ready(sqs_world):
    # GIVEN a summary of a DLQ holding one message
    sqs_world.dead_letter("jobs.fail")
    summary = summarise_dlq(FastSqs(sqs_world.client), sqs_world.topology, "default")
    # WHEN it is turned into a dict
    data = json.loads(json.dumps(summary.as_dict()))
    # THEN it carries the same facts, top tasks as lists
    assert data["visible"] == 1 and data["top_tasks"] == [["jobs.fail", 1]] and data["dlq"] == "t-default-dlq"


# --- format_alert ------------------------------------------------------------------------------------


def _summary(**fields) -> DlqSummary:
    base = {"queue": "default", "dlq": "t-default-dlq", "visible": 3, "in_flight": 1}
    return DlqSummary(**{**base, **fields})


def test_alert_text_names_dlq_tasks_and_the_replay_command():
    # GIVEN a summary of a DLQ with sampled jobs.fail and jobs.echo messages
    summary = _summary(
        sampled=3,
        oldest_age_seconds=5400,
        undecodable=1,
        top_tasks=[("jobs.fail", 2)],
        sample_task_ids=["id-1", "id-2"],
    )
    # WHEN the alert is formatted
    subject, body = format_alert(
        [summary], service="celery-sqs-prod", replay_hint=lambda_replay_hint("celery-sqs-prod")
    )
    # THEN the subject counts the messages, and the body names the DLQ, the tasks, the ids, the age, the command
    assert subject == "[celery-sqs-prod] 4 message(s) in 1 dead-letter queue(s)"
    assert "t-default-dlq (queue default): 3 visible, 1 in flight" in body
    assert "2 x jobs.fail" in body
    assert "1 x not a Celery message" in body
    assert "sample task ids: id-1, id-2" in body
    assert "90 min old" in body
    assert "aws lambda invoke --function-name celery-sqs-prod-dlqReplay" in body
    assert '{"queue": "<queue>"}' in body
    assert "dry run" in body.lower()


@hsettings(max_examples=50, deadline=None)
@given(service=st.text(min_size=0, max_size=300), queues=st.integers(1, 30), depth=st.integers(0, 10**9))
def test_alert_subject_fits_sns(service, queues, depth):
    # GIVEN any service name and any number of waiting DLQs
    summaries = [_summary(dlq=f"dlq-{i}", visible=depth, in_flight=1) for i in range(queues)]
    # WHEN the alert is formatted
    subject, _ = format_alert(summaries, service=service, replay_hint="hint")
    # THEN the subject stays within SNS's 100 characters
    assert len(subject) <= 100


def test_alert_subject_counts_only_waiting_dlqs():
    # GIVEN one DLQ with messages and one empty
    summaries = [_summary(), _summary(queue="low_priority", dlq="t-low-priority-dlq", visible=0, in_flight=0)]
    # WHEN the alert is formatted
    subject, _ = format_alert(summaries, service="svc", replay_hint="hint")
    # THEN it speaks of 4 messages in 1 DLQ
    assert subject == "[svc] 4 message(s) in 1 dead-letter queue(s)"


# --- queues_named_by_alarm ---------------------------------------------------------------------------


def test_alarm_naming_one_dlq_selects_its_queue():
    # GIVEN an alarm notification whose dimension is the default DLQ
    # WHEN the queues are picked
    # THEN only `default`
    assert queues_named_by_alarm(_alarm_event("t-default-dlq"), TOPOLOGY, "") == ["default"]


def test_alarm_naming_two_dlqs_with_a_prefix():
    # GIVEN a deployed prefix and an alarm naming two prefixed DLQs (and a duplicate record)
    event = _alarm_event("prod-t-low-priority-dlq", "prod-t-default-dlq")
    event["Records"] += _alarm_event("prod-t-default-dlq")["Records"]
    # WHEN the queues are picked
    # THEN both, once each, in the order named
    assert queues_named_by_alarm(event, TOPOLOGY, "prod-") == ["low_priority", "default"]


@pytest.mark.parametrize(
    ("event", "prefix"),
    [
        pytest.param({}, "", id="scheduled-event"),
        pytest.param({"Records": None}, "", id="records-null"),
        pytest.param({"Records": []}, "", id="no-records"),
        pytest.param(_alarm_event("t-default"), "", id="names-the-source-queue-not-the-dlq"),
        pytest.param(_alarm_event("t-default-dlq"), "prod-", id="unprefixed-name-under-a-prefix"),
        pytest.param(_record("not json"), "", id="message-not-json"),
        pytest.param(_record({"AlarmName": "x"}), "", id="no-trigger"),
        pytest.param(_record({"Trigger": {"Metrics": []}}), "", id="metric-math-alarm"),
        pytest.param(_record({"Trigger": "x"}), "", id="trigger-a-string"),
        pytest.param(_record([1, 2]), "", id="message-a-list"),
        pytest.param({"Records": [None]}, "", id="record-null"),
        pytest.param({"Records": [{"Sns": None}]}, "", id="sns-null"),
        pytest.param({"Records": [{"Sns": {}}]}, "", id="no-message"),
        pytest.param(_record({"Trigger": {"Dimensions": []}}), "", id="no-dimensions"),
        pytest.param(
            _record({"Trigger": {"Dimensions": [{"name": "FunctionName", "value": "t-default-dlq"}]}}),
            "",
            id="other-dimension-name",
        ),
    ],
)
def test_malformed_or_unnamed_records_fall_back_to_every_queue(event, prefix):
    # GIVEN a record that names no DLQ of the topology under the deployed prefix
    # WHEN the queues are picked
    # THEN every topology queue, so no DLQ goes unreported
    assert queues_named_by_alarm(event, TOPOLOGY, prefix) == ALL_QUEUES




@pytest.mark.parametrize(
    "event",
    [
        pytest.param(
            _record({"Trigger": {"Dimensions": None}}),
            id="dimensions-null"
        ),
        pytest.param(
            _record({"Trigger": {"Dimensions": ["t-default-dlq"]}}),
            id="dimensions-strings"
        ),
        pytest.param(
            _record({"Trigger": {"Dimensions": {"name": "QueueName", "value": "t-default-dlq"}}}),
            id="dimensions-an-object"
        ),
        pytest.param(
            _record({"Trigger": {"Dimensions": [{"name": "QueueName", "value": ["t-default-dlq"]}]}}),
            id="dimension-value-a-list"
        ),
        pytest.param(
            {"Records": 5},
            id="records-not-a-list"
        ),
    ],
)
def test_malformed_dimensions_fall_back_to_every_queue(event):
    # GIVEN a notification whose Trigger.Dimensions (or Records) has the wrong shape
    # WHEN the queues are picked
    # THEN every topology queue, as for the other malformed records (instead the alert Lambda crashes and no
    # alert is sent at all)
    assert queues_named_by_alarm(event, TOPOLOGY, "") == ALL_QUEUES


# --- the alert Lambda --------------------------------------------------------------------------------


@pytest.fixture
def alert_topic(sqs_world, lambda_env, monkeypatch):
    """An SNS topic (ALERT_TOPIC_ARN) with an SQS queue subscribed, to read what the Lambda publishes."""
    sns = boto3.client("sns", region_name=REGION)
    topic_arn = sns.create_topic(Name="celery-sqs-test-dlq-alerts")["TopicArn"]
    inbox = sqs_world.client.create_queue(QueueName="alert-inbox")["QueueUrl"]
    inbox_arn = sqs_world.client.get_queue_attributes(QueueUrl=inbox, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=inbox_arn)
    monkeypatch.setenv("ALERT_TOPIC_ARN", topic_arn)

    def notifications() -> list[dict]:
        return [json.loads(m["Body"]) for m in sqs_world.drain(inbox)]

    return notifications


def test_alarm_for_one_dlq_summarises_it_and_publishes(sqs_world, alert_lambda, alert_topic, capsys, monkeypatch):
    # GIVEN real jobs.fail messages in the default DLQ, a newsletter in the low_priority DLQ, and an alarm on the
    # default DLQ, deployed as service celery-sqs-test
    monkeypatch.setenv("DEPLOYED_SERVICE", "celery-sqs-test")
    ids = sqs_world.dead_letter_many("jobs.fail", 2)
    sqs_world.dead_letter("newsletter.send_one", queue="low_priority", kwargs={"newsletter_id": 1, "subscriber_id": 1})
    # WHEN the alert Lambda gets the alarm
    result = alert_lambda(_alarm_event("t-default-dlq"), FakeLambdaContext())
    # THEN it summarised only `default` and published
    assert [s["queue"] for s in result["summaries"]] == ["default"]
    assert result["summaries"][0]["visible"] == 2
    assert result["published"] is True
    # AND the SNS notification names the DLQ, the task and the replay command, not the other DLQ
    [notification] = alert_topic()
    assert notification["Subject"] == "[celery-sqs-test] 2 message(s) in 1 dead-letter queue(s)"
    message = notification["Message"]
    assert "t-default-dlq (queue default): 2 visible" in message
    assert "2 x jobs.fail" in message
    assert any(task_id in message for task_id in ids)
    assert "celery-sqs-test-dlqReplay" in message
    assert "t-low-priority-dlq" not in message
    # AND the DLQs were not consumed
    assert sqs_world.dlq_counts("default") == (2, 0)
    assert sqs_world.dlq_counts("low_priority") == (1, 0)
    # AND the depth metric of `default` was emitted
    [record] = [r for r in emf_lines(capsys.readouterr().out) if "DlqDepth_default" in r]
    assert record["DlqDepth_default"] == [2.0]


def test_scheduled_run_with_empty_dlqs_publishes_nothing(sqs_world, alert_lambda, alert_topic):
    # GIVEN every DLQ empty
    # WHEN the scheduled event ({}) arrives
    result = alert_lambda({}, FakeLambdaContext())
    # THEN every queue was looked at, nothing published, and the topic got no notification
    assert [s["queue"] for s in result["summaries"]] == ALL_QUEUES
    assert all(s["visible"] == 0 and s["in_flight"] == 0 for s in result["summaries"])
    assert result["published"] is False
    assert alert_topic() == []


def test_scheduled_run_reports_every_waiting_dlq_in_one_notification(
    sqs_world, alert_lambda, alert_topic, fast_lambda_sqs
):
    # GIVEN messages in the default and low_priority DLQs, the high_priority DLQ empty
    sqs_world.dead_letter("jobs.fail")
    sqs_world.dead_letter("newsletter.send_one", queue="low_priority", kwargs={"newsletter_id": 1, "subscriber_id": 1})
    # WHEN the scheduled event arrives
    result = alert_lambda({}, FakeLambdaContext())
    # THEN one notification names both waiting DLQs and their tasks, and not the empty one; without
    # DEPLOYED_SERVICE the subject says the default service name
    assert result["published"] is True
    [notification] = alert_topic()
    assert notification["Subject"] == "[celery-sqs] 2 message(s) in 2 dead-letter queue(s)"  # DEPLOYED_SERVICE unset
    message = notification["Message"]
    assert "1 x jobs.fail" in message and "1 x newsletter.send_one" in message
    assert "t-high-priority-dlq" not in message


def test_non_dict_event_is_treated_as_scheduled(sqs_world, alert_lambda, alert_topic):
    # GIVEN every DLQ empty
    # WHEN the Lambda is invoked with a list
    result = alert_lambda(["odd"], FakeLambdaContext())
    # THEN it looks at every queue and publishes nothing
    assert [s["queue"] for s in result["summaries"]] == ALL_QUEUES
    assert result["published"] is False


def _resolve(value: str, *, service: str, stage: str) -> str:
    """The few serverless variables the Lambda environment uses, for a deploy to `stage`."""
    for variable, resolved in (("${self:service}", service), ("${sls:stage}", stage), ("${opt:stage, 'dev'}", stage)):
        value = value.replace(variable, resolved)
    return value


def test_alert_names_the_deployed_replay_function(sqs_world, alert_lambda, alert_topic, fast_lambda_sqs, monkeypatch):
    # GIVEN the alert Lambda's environment as serverless.yml deploys it to stage `prod` (DEPLOYED_SERVICE included)
    path = Path(__file__).resolve().parents[3] / "serverless.yml"
    if not path.exists():
        pytest.skip("no serverless.yml")
    config = yaml.safe_load(path.read_text())
    stage = "prod"
    function_name = f"{config['service']}-{stage}-dlqReplay"  # how the framework names the function
    environment = {
        **config["provider"].get("environment", {}),
        **config["functions"]["dlqAlert"].get("environment", {}),
    }
    for name, value in environment.items():
        # ALERT_TOPIC_ARN: the topic's Ref (or make invoke-alert's local topic); the fixture's topic here
        if isinstance(value, str) and name not in {"QUEUE_TOPOLOGY", "SQS_QUEUE_PREFIX", "ALERT_TOPIC_ARN"}:
            monkeypatch.setenv(name, _resolve(value, service=config["service"], stage=stage))
    # AND a message in the default DLQ
    sqs_world.dead_letter("jobs.fail")
    # WHEN the alert Lambda runs
    alert_lambda({}, FakeLambdaContext())
    # THEN the replay command it publishes names the function that exists
    [notification] = alert_topic()
    assert f"--function-name {function_name} " in notification["Message"]


def test_summary_with_the_plain_client_ages_against_the_injected_now(sqs_world):
    # GIVEN one message, the plain boto3 client, and a `now` 10 s after the message's SentTimestamp
    sqs_world.dead_letter("jobs.fail")
    [message] = _received_with_sent_timestamps(sqs_world, sqs_world.dlq_urls["default"])
    now = int(message["Attributes"]["SentTimestamp"]) / 1000 + 10
    # WHEN it is summarised
    summary = summarise_dlq(sqs_world.client, sqs_world.topology, "default", now=now)
    # THEN the one message was sampled, 10 s old, and is visible again
    assert summary.sampled == 1
    assert summary.oldest_age_seconds == pytest.approx(10)
    assert sqs_world.dlq_counts() == (1, 0)
