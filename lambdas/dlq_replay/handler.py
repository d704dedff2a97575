"""Lambda entry point: `aws lambda invoke --function-name <service>-<stage>-dlqReplay --payload '{...}'`."""

from __future__ import annotations

import os

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from core.dlq.replay import replay_dlq
from core.dlq.request import ReplayRequestError, parse_replay_request
from lambdas import config
from lambdas.config import METRICS_NAMESPACE, SERVICE

# serverless.yml sets both variables; the defaults keep a local or test import working without them.
logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME", SERVICE))
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", METRICS_NAMESPACE))


@logger.inject_lambda_context
@metrics.log_metrics
def handler(event, context):
    """Validate the payload (a bad one raises ReplayRequestError and moves nothing), replay, report."""
    try:
        request = parse_replay_request(event, config.topology())
    except ReplayRequestError as exc:
        logger.warning("replay refused", extra={"error": str(exc)})
        metrics.add_metric(name="ReplayRefused", unit=MetricUnit.Count, value=1)
        raise
    report = replay_dlq(
        request,
        sqs=config.sqs_client(),
        topology=config.topology(),
        prefix=config.queue_prefix(),
        max_replays=config.max_replays(),
        time_left=lambda: context.get_remaining_time_in_millis() / 1000,
    )
    result = report.as_dict()
    logger.info("replay finished", extra={"report": result})
    metrics.add_dimension(name="queue", value=request.queue)
    metrics.add_dimension(name="dry_run", value=str(request.dry_run).lower())
    for name, value in (
        ("Matched", report.matched),
        ("Moved", report.moved),
        ("Skipped", report.skipped),
        ("OverReplayLimit", len(report.over_limit)),
        ("Failed", len(report.failed)),
        ("Undecodable", report.undecodable),
    ):
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
    return result
