"""Worker services scale on backlog per task: (visible messages of the group's queues) / running tasks."""

from __future__ import annotations

import re

import pytest

from core.topology import DEFAULT_TOPOLOGY_PATH, load_topology
from infra.naming import resource_name
from tests.infra.conftest import PREFIX, STAGE, env_of

GROUPS = list(load_topology(DEFAULT_TOPOLOGY_PATH, profile="").worker_groups)


@pytest.mark.parametrize("name", GROUPS)
def test_each_worker_group_tracks_its_backlog_per_running_task(synthesized, topology, name):
    from infra.scaling import backlog_expression

    # GIVEN the worker group and its ECS service
    group = topology.worker_groups[name]
    [task_id] = [
        t
        for t in synthesized.task_definitions_running(["bin/start-worker"])
        if env_of(synthesized.containers()[t])["WORKER_QUEUES"] == ",".join(group.queues)
    ]
    service_id, _ = synthesized.service_of(task_id)

    # WHEN its scaling policy is read
    [policy] = [
        p["Properties"]
        for p in synthesized.of_type("AWS::ApplicationAutoScaling::ScalingPolicy").values()
        if p["Properties"]["PolicyName"] == resource_name(STAGE, f"worker-{name}-backlog-per-task")
    ]
    config = policy["TargetTrackingScalingPolicyConfiguration"]
    queries = {q["Id"]: q for q in config["CustomizedMetricSpecification"]["Metrics"]}

    # THEN it is target tracking at the group's backlog_per_task
    assert policy["PolicyType"] == "TargetTrackingScaling"
    assert config["TargetValue"] == group.backlog_per_task
    # AND it reads the visible messages of exactly the group's queues
    visible = {
        qid: synthesized.queue_name_of(q["MetricStat"]["Metric"]["Dimensions"][0]["Value"])
        for qid, q in queries.items()
        if q.get("MetricStat", {}).get("Metric", {}).get("MetricName") == "ApproximateNumberOfMessagesVisible"
    }
    assert sorted(visible.values()) == sorted(PREFIX + topology.queue(k).name for k in group.queues)
    # AND the running tasks of this very service (Container Insights)
    [tasks] = [
        q for q in queries.values() if q.get("MetricStat", {}).get("Metric", {}).get("MetricName") == "RunningTaskCount"
    ]
    metric = tasks["MetricStat"]["Metric"]
    assert metric["Namespace"] == "ECS/ContainerInsights"
    assert {"Name": "ServiceName", "Value": {"Fn::GetAtt": [service_id, "Name"]}} in metric["Dimensions"]
    # AND the one returned series divides the sum of the queues by the running tasks
    [result] = [q for q in queries.values() if q.get("ReturnData") is True]
    assert result["Expression"] == backlog_expression(list(visible))
    numerator, denominator = result["Expression"].rsplit("/", 1)
    assert denominator.strip() == tasks["Id"]
    assert sorted(re.findall(r"FILL\((\w+), 0\)", numerator)) == sorted(visible)
    assert all(q.get("ReturnData") is False for q in queries.values() if q is not result)
    # AND its scalable target keeps the service between the group's bounds
    target = synthesized.props(policy["ScalingTargetId"]["Ref"])
    assert (target["MinCapacity"], target["MaxCapacity"]) == (group.min_tasks, group.max_tasks)
    assert service_id in str(target["ResourceId"])
    assert target["ScalableDimension"] == "ecs:service:DesiredCount"


def test_the_backlog_expression_sums_every_queue_then_divides_once():
    from infra.scaling import backlog_expression

    # GIVEN two queue metric ids
    # WHEN the expression is built
    expression = backlog_expression(["visible0", "visible1"])

    # THEN an idle queue without datapoints counts as 0, and the sum is divided by the running tasks
    assert expression == "(FILL(visible0, 0) + FILL(visible1, 0)) / tasks"
