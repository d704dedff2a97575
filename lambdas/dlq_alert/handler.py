"""Lambda entry point: from the DLQ alarm (via SNS) or a schedule, summarise DLQs and publish to SNS."""

from __future__ import annotations

import json
import os

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from core.dlq.summary import format_alert, lambda_replay_hint, summarise_dlq
from core.topology import Topology
from lambdas import config
from lambdas.config import METRICS_NAMESPACE, SERVICE

# serverless.yml sets both variables; the defaults keep a local or test import working without them.
logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME", SERVICE))
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", METRICS_NAMESPACE))


def queues_named_by_alarm(event: dict, topology: Topology, prefix: str) -> list[str]:
    """The topology queues whose DLQ an alarm notification names; every queue if none is named."""
    by_dlq = {spec.dlq_sqs_name(prefix): key for key, spec in topology.queues.items()}
    named: list[str] = []
    records = event.get("Records")
    for record in records if isinstance(records, list) else []:
        for value in _alarm_queue_names(record):
            key = by_dlq.get(value)
            if key and key not in named:
                named.append(key)
    return named or list(topology.queues)


def _alarm_queue_names(record: object) -> list[str]:
    """The QueueName dimensions of one SNS-delivered CloudWatch alarm; [] for anything malformed."""
    try:
        alarm = json.loads(record["Sns"]["Message"])  # type: ignore[index]
        dimensions = alarm["Trigger"]["Dimensions"]
    except (KeyError, TypeError, ValueError):
        return []
    if not isinstance(dimensions, list):
        return []
    return [
        d["value"]
        for d in dimensions
        if isinstance(d, dict) and d.get("name") == "QueueName" and isinstance(d.get("value"), str)
    ]


@logger.inject_lambda_context
@metrics.log_metrics
def handler(event, context):
    topology, prefix, sqs = config.topology(), config.queue_prefix(), config.sqs_client()
    keys = queues_named_by_alarm(event if isinstance(event, dict) else {}, topology, prefix)
    summaries = [summarise_dlq(sqs, topology, key, prefix=prefix) for key in keys]
    for s in summaries:
        metrics.add_metric(name=f"DlqDepth_{s.queue}", unit=MetricUnit.Count, value=s.visible + s.in_flight)
    waiting = [s for s in summaries if s.visible or s.in_flight]
    result = {"summaries": [s.as_dict() for s in summaries], "published": False}
    if waiting:
        # DEPLOYED_SERVICE is "<service>-<stage>", the prefix of the function names (serverless.yml).
        deployed = os.environ.get("DEPLOYED_SERVICE", "celery-sqs")
        subject, message = format_alert(waiting, service=deployed, replay_hint=lambda_replay_hint(deployed))
        config.sns_client().publish(TopicArn=os.environ["ALERT_TOPIC_ARN"], Subject=subject, Message=message)
        result["published"] = True
    logger.info("dlq summary", extra=result)
    return result
