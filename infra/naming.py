"""The names this stack shares with serverless.yml and the application: one place, one rule each."""

from __future__ import annotations

import re

# serverless.yml `service`: its queue prefix is "<service>-<stage>-" and it imports the alarm topic by
# the export name below. Change one, change both.
SERVICE = "celery-sqs"
STAGE_PATTERN = re.compile(r"^[a-z][a-z0-9-]{0,19}$")  # short: SQS names stop at 80 characters


def check_stage(stage: str) -> str:
    if not STAGE_PATTERN.fullmatch(stage):
        raise ValueError(f"stage {stage!r}: use 1-20 lower-case letters, digits or '-', starting with a letter")
    return stage


def queue_prefix(stage: str) -> str:
    """The SQS name prefix of every queue and DLQ (SQS_QUEUE_PREFIX in the containers and the Lambdas)."""
    return f"{SERVICE}-{check_stage(stage)}-"


def alarm_topic_export_name(stage: str) -> str:
    """The export serverless.yml's dlqAlert imports (Fn::ImportValue) to subscribe to the alarm topic."""
    return f"{SERVICE}-{check_stage(stage)}-DlqAlarmTopicArn"


def stack_name(stage: str) -> str:
    # Not "<service>-<stage>": that is the CloudFormation stack osls deploys serverless.yml to.
    return f"{SERVICE}-{check_stage(stage)}-infra"


def resource_name(stage: str, suffix: str) -> str:
    """A stage-scoped name for a named resource (cluster, topic, dashboard, alarm, secret)."""
    return f"{SERVICE}-{check_stage(stage)}-{suffix}"


def pascal_case(key: str) -> str:
    """high_priority -> HighPriority: a readable construct id from a topology key or group name."""
    return "".join(part.capitalize() for part in key.replace("-", "_").split("_"))
