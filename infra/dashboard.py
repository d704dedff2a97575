"""One CloudWatch dashboard: per queue depth, in flight, DLQ depth and age of oldest; running tasks per service."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_ecs as ecs
from constructs import Construct

from infra.queues import QueuePair

PERIOD = Duration.minutes(1)


def build_dashboard(
    scope: Construct,
    *,
    name: str,
    pairs: list[QueuePair],
    cluster: ecs.ICluster,
    services: dict[str, ecs.FargateService],
) -> cloudwatch.Dashboard:
    dashboard = cloudwatch.Dashboard(scope, "Dashboard", dashboard_name=name)
    for pair in pairs:
        key = pair.spec.key
        dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title=f"{key}: messages",
                width=12,
                left=[
                    pair.queue.metric_approximate_number_of_messages_visible(
                        label="visible", period=PERIOD, statistic="Maximum"
                    ),
                    pair.queue.metric_approximate_number_of_messages_not_visible(
                        label="in flight", period=PERIOD, statistic="Maximum"
                    ),
                    pair.dlq.metric_approximate_number_of_messages_visible(
                        label="in the DLQ", period=PERIOD, statistic="Maximum"
                    ),
                ],
            ),
            cloudwatch.GraphWidget(
                title=f"{key}: age of the oldest message (s)",
                width=12,
                left=[
                    pair.queue.metric_approximate_age_of_oldest_message(
                        label="oldest", period=PERIOD, statistic="Maximum"
                    )
                ],
                left_annotations=[
                    cloudwatch.HorizontalAnnotation(
                        value=pair.spec.oldest_message_age_alarm_seconds, label="alarm", color=cloudwatch.Color.RED
                    )
                ],
            ),
        )
    dashboard.add_widgets(
        cloudwatch.GraphWidget(
            title="running tasks per service",
            width=24,
            left=[
                cloudwatch.Metric(
                    namespace="ECS/ContainerInsights",
                    metric_name="RunningTaskCount",
                    dimensions_map={"ClusterName": cluster.cluster_name, "ServiceName": service.service_name},
                    label=label,
                    period=PERIOD,
                    statistic="Average",
                )
                for label, service in services.items()
            ],
        )
    )
    return dashboard
