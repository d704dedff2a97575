"""Every topology queue becomes a queue and a DLQ with its numbers, an age alarm and a DLQ depth alarm,
all reporting to the topic serverless.yml's dlqAlert imports by name."""

from __future__ import annotations

import json

import pytest

from core.topology import DEFAULT_TOPOLOGY_PATH, load_topology
from infra.config import ConfigError, InfraConfig
from infra.naming import alarm_topic_export_name
from tests.infra.conftest import ALARM_EMAIL, PREFIX, STAGE, synthesize


def _queue_keys() -> list[str]:
    return list(load_topology(DEFAULT_TOPOLOGY_PATH, profile="").queues)


def _alarm_topic_id(synthesized) -> str:
    [topic_id] = synthesized.of_type("AWS::SNS::Topic")
    return topic_id


@pytest.mark.parametrize("key", _queue_keys())
def test_each_queue_has_its_numbers_sse_and_a_redrive_to_its_dlq(synthesized, topology, key):
    # GIVEN the queue in queues.yml
    spec = topology.queue(key)
    ids = synthesized.queue_ids_by_name()

    # WHEN the stack names it like serverless.yml does ("celery-sqs-<stage>-<name>")
    queue = synthesized.props(ids[PREFIX + spec.name])
    dlq = synthesized.props(ids[PREFIX + spec.dlq])

    # THEN the queue carries the topology's numbers, SQS-managed encryption, and redrives to its DLQ
    assert queue["VisibilityTimeout"] == spec.visibility_timeout
    assert queue["MessageRetentionPeriod"] == spec.retention_seconds
    assert queue["MaximumMessageSize"] == spec.max_message_bytes
    assert queue["SqsManagedSseEnabled"] is True
    assert queue["RedrivePolicy"] == {
        "deadLetterTargetArn": {"Fn::GetAtt": [ids[PREFIX + spec.dlq], "Arn"]},
        "maxReceiveCount": spec.max_receive_count,
    }
    # AND the DLQ keeps messages as long as the topology says (longer than its queue), encrypted too, and
    # redrives nowhere
    assert dlq["MessageRetentionPeriod"] == spec.dlq_retention_seconds > spec.retention_seconds
    assert dlq["SqsManagedSseEnabled"] is True
    assert "RedrivePolicy" not in dlq
    # AND only its own queue may use it as a DLQ (named by ARN, not by a reference: the queue already refers
    # to the DLQ, and a reference back would be a cycle)
    allow = dlq["RedriveAllowPolicy"]
    assert allow["redrivePermission"] == "byQueue"
    [source] = allow["sourceQueueArns"]
    assert PREFIX + spec.name in json.dumps(source)
    assert ids[PREFIX + spec.name] not in json.dumps(source)


@pytest.mark.parametrize("key", _queue_keys())
def test_each_dlq_is_kept_when_the_stack_is_deleted(synthesized, topology, key):
    # GIVEN the DLQ of a topology queue (the failed tasks an operator has not replayed yet)
    spec = topology.queue(key)
    dlq_id = synthesized.queue_ids_by_name()[PREFIX + spec.dlq]

    # WHEN its deletion policies are read
    resource = synthesized.resources[dlq_id]

    # THEN deleting or replacing the stack keeps the queue and its messages
    assert resource["DeletionPolicy"] == "Retain"
    assert resource["UpdateReplacePolicy"] == "Retain"


def test_there_are_exactly_the_topology_queues_and_dlqs(synthesized, topology):
    # GIVEN the topology's SQS names
    expected = {PREFIX + n for spec in topology.queues.values() for n in (spec.name, spec.dlq)}

    # WHEN the template's queues are listed
    names = set(synthesized.queue_ids_by_name())

    # THEN nothing is missing and nothing restated by hand was added
    assert names == expected


@pytest.mark.parametrize("key", _queue_keys())
def test_each_queue_alarms_on_the_age_of_its_oldest_message_at_the_topology_threshold(synthesized, topology, key):
    # GIVEN the queue and the alarm topic
    spec = topology.queue(key)
    queue_id = synthesized.queue_ids_by_name()[PREFIX + spec.name]
    topic_id = _alarm_topic_id(synthesized)

    # WHEN the age alarms on that queue are found
    alarms = [
        a["Properties"]
        for a in synthesized.of_type("AWS::CloudWatch::Alarm").values()
        if a["Properties"]["MetricName"] == "ApproximateAgeOfOldestMessage"
        and a["Properties"]["Dimensions"] == [{"Name": "QueueName", "Value": {"Fn::GetAtt": [queue_id, "QueueName"]}}]
    ]

    # THEN there is one, over the topology's threshold, notifying the alarm topic
    [alarm] = alarms
    assert alarm["Namespace"] == "AWS/SQS"
    assert alarm["Threshold"] == spec.oldest_message_age_alarm_seconds
    assert alarm["ComparisonOperator"] == "GreaterThanThreshold"
    assert alarm["AlarmActions"] == [{"Ref": topic_id}]


@pytest.mark.parametrize("key", _queue_keys())
def test_each_dlq_alarms_as_soon_as_it_holds_a_message(synthesized, topology, key):
    # GIVEN the DLQ (the age alarm misses messages received 3+ times: DESIGN.md)
    spec = topology.queue(key)
    dlq_id = synthesized.queue_ids_by_name()[PREFIX + spec.dlq]
    topic_id = _alarm_topic_id(synthesized)

    # WHEN the depth alarms on that DLQ are found
    alarms = [
        a["Properties"]
        for a in synthesized.of_type("AWS::CloudWatch::Alarm").values()
        if a["Properties"]["MetricName"] == "ApproximateNumberOfMessagesVisible"
        and a["Properties"]["Dimensions"] == [{"Name": "QueueName", "Value": {"Fn::GetAtt": [dlq_id, "QueueName"]}}]
    ]

    # THEN there is one: more than 0 visible messages, to the alarm topic
    [alarm] = alarms
    assert alarm["Threshold"] == 0
    assert alarm["ComparisonOperator"] == "GreaterThanThreshold"
    assert alarm["AlarmActions"] == [{"Ref": topic_id}]


def test_every_alarm_notifies_the_one_exported_topic(synthesized, topology):
    # GIVEN the alarm topic
    topic_id = _alarm_topic_id(synthesized)

    # WHEN every alarm of the stack is looked at
    alarms = [a["Properties"] for a in synthesized.of_type("AWS::CloudWatch::Alarm").values()]

    # THEN there are two per queue, and each notifies that topic only
    assert len(alarms) == 2 * len(topology.queues)
    assert all(a["AlarmActions"] == [{"Ref": topic_id}] for a in alarms)


def test_the_alarm_topic_is_exported_under_the_name_serverless_yml_imports(template, synthesized):
    # GIVEN the export name serverless.yml's dlqAlert imports: celery-sqs-${sls:stage}-DlqAlarmTopicArn
    topic_id = _alarm_topic_id(synthesized)

    # WHEN the outputs are looked at
    outputs = template.find_outputs("*", {"Export": {"Name": alarm_topic_export_name(STAGE)}})

    # THEN one exports exactly that name, with the topic's ARN
    assert alarm_topic_export_name(STAGE) == "celery-sqs-ci-DlqAlarmTopicArn"
    assert [o["Value"] for o in outputs.values()] == [{"Ref": topic_id}]


def test_the_dashboard_shows_depth_in_flight_age_dlq_and_running_tasks(synthesized, topology):
    # GIVEN the one dashboard
    [dashboard] = synthesized.of_type("AWS::CloudWatch::Dashboard").values()

    # WHEN its body is read (a Fn::Join of JSON and the queues' and services' names)
    body = json.dumps(dashboard["Properties"]["DashboardBody"])

    # THEN each metric an operator needs is on it, and a graph per queue
    for metric in (
        "ApproximateNumberOfMessagesVisible",
        "ApproximateNumberOfMessagesNotVisible",
        "ApproximateAgeOfOldestMessage",
        "RunningTaskCount",
    ):
        assert metric in body
    for key in topology.queues:
        assert f"{key}: messages" in body


def _email_subscriptions(synthesized) -> dict[str, list[str]]:
    """Topic logical id -> the e-mail addresses subscribed to it."""
    found: dict[str, list[str]] = {}
    for sub in synthesized.of_type("AWS::SNS::Subscription").values():
        props = sub["Properties"]
        if props["Protocol"] == "email":
            found.setdefault(props["TopicArn"]["Ref"], []).append(props["Endpoint"])
    return found


def test_every_alarm_reaches_a_person_by_email(synthesized):
    # GIVEN the stack deployed with the alarm e-mail it requires
    emails = _email_subscriptions(synthesized)

    # WHEN each alarm's actions are followed to their topics' subscriptions
    alarms = synthesized.of_type("AWS::CloudWatch::Alarm")
    assert alarms

    # THEN every alarm (queue age and DLQ depth alike) notifies a topic with the e-mail subscribed
    for alarm_id, alarm in alarms.items():
        reached = {email for action in alarm["Properties"]["AlarmActions"] for email in emails.get(action["Ref"], [])}
        assert reached == {ALARM_EMAIL}, alarm_id


def test_without_an_alarm_email_the_stack_is_refused_naming_the_key():
    # GIVEN a deploy that neither gives nor declines an alarm e-mail
    # WHEN its context is read
    with pytest.raises(ConfigError) as refused:
        InfraConfig.from_context({"stage": "prod"}.get)
    # THEN it is refused, naming the key and how to decline
    assert "alarmEmail" in str(refused.value)
    assert "alarmEmail=none" in str(refused.value)


@pytest.mark.parametrize("value", ["not-an-address", "a@b"])
def test_a_malformed_alarm_email_is_refused(value):
    with pytest.raises(ConfigError, match="alarmEmail"):
        InfraConfig.from_context({"alarmEmail": value}.get)


def test_declining_the_alarm_email_synthesizes_with_a_warning(tmp_path):
    # GIVEN a first look that explicitly declines the e-mail
    # WHEN the stack is synthesized
    synthesized = synthesize(tmp_path, alarmEmail="none")

    # THEN nobody is subscribed, and synth says so in a warning
    assert not _email_subscriptions(synthesized)
    assert any("nobody" in str(w) and "alarmEmail" in str(w) for w in synthesized.warnings), synthesized.warnings
