"""CloudWatch alarms on every queue and DLQ, all to one SNS topic (the one serverless.yml's dlqAlert reads)."""

from __future__ import annotations

from aws_cdk import Annotations, Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

from infra.naming import resource_name
from infra.queues import QueuePair

SQS_PERIOD = Duration.minutes(1)  # SQS publishes its queue metrics once a minute


class QueueAlarms(Construct):
    """Per queue: age of the oldest message over the topology's threshold. Per DLQ: anything in it.

    ApproximateAgeOfOldestMessage ignores messages received 3 or more times and resets when a message
    moves to the DLQ (DESIGN.md), so a poison message never trips the age alarm: the DLQ depth alarm
    is what reports it.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        stage: str,
        prefix: str,
        pairs: list[QueuePair],
        alarm_email: str | None,
    ) -> None:
        super().__init__(scope, construct_id)
        # Alarm metadata only (no message bodies): no KMS key, which CloudWatch could not publish with
        # unless its key policy allowed it.
        self.topic = sns.Topic(
            self, "Topic", topic_name=resource_name(stage, "dlq-alarm"), display_name="Celery SQS queue alarms"
        )
        if alarm_email:
            # Every alarm, age and DLQ depth alike, reaches a person; the dlqAlert Lambda (serverless.yml)
            # subscribes to the same topic and adds a summary of what sits in a DLQ.
            self.topic.add_subscription(subscriptions.EmailSubscription(alarm_email))
        else:
            Annotations.of(self).add_warning_v2(
                "celery-sqs:no-alarm-email",
                "alarmEmail=none: nobody is subscribed to the queue alarms; a queue that ages because the workers "
                "are down is heard by no one (the dlqAlert Lambda reports only non-empty DLQs). "
                "Give -c alarmEmail=<address> for any real deploy.",
            )
        action = actions.SnsAction(self.topic)
        self.age_alarms: dict[str, cloudwatch.Alarm] = {}
        self.dlq_alarms: dict[str, cloudwatch.Alarm] = {}
        for pair in pairs:
            spec = pair.spec
            age = cloudwatch.Alarm(
                self,
                f"{pair.queue.node.id}OldestMessageAge",
                alarm_name=resource_name(stage, f"{spec.name}-oldest-message-age"),
                alarm_description=(
                    f"A message has waited over {spec.oldest_message_age_alarm_seconds} s in "
                    f"{spec.sqs_name(prefix)}: workers are down, stuck or too few (queues.yml: "
                    f"{spec.key}.oldest_message_age_alarm_seconds)"
                ),
                metric=pair.queue.metric_approximate_age_of_oldest_message(period=SQS_PERIOD, statistic="Maximum"),
                threshold=spec.oldest_message_age_alarm_seconds,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
                evaluation_periods=1,
                # An idle queue may publish no datapoint: that is not a waiting message.
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            )
            depth = cloudwatch.Alarm(
                self,
                f"{pair.dlq.node.id}Depth",
                alarm_name=resource_name(stage, f"{spec.dlq}-not-empty"),
                alarm_description=(
                    f"{spec.dlq_sqs_name(prefix)} holds messages: tasks of {spec.key} failed after their retries "
                    "and receives. Summarise and replay with the dlqReplay Lambda (README)."
                ),
                metric=pair.dlq.metric_approximate_number_of_messages_visible(period=SQS_PERIOD, statistic="Maximum"),
                threshold=0,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
                evaluation_periods=1,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            )
            for alarm in (age, depth):
                alarm.add_alarm_action(action)
            self.age_alarms[spec.key] = age
            self.dlq_alarms[spec.key] = depth
