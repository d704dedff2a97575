"""ECS task scale-in protection: each worker task role may call exactly ecs:UpdateTaskProtection (the ECS
agent's endpoint calls it with the task role's credentials), on its own cluster's tasks only; no other role."""

from __future__ import annotations

import json

from tests.infra.conftest import actions, env_of, resources


def _task_roles(synthesized, command: list[str]) -> list[str]:
    return [
        synthesized.role_id(synthesized.props(t)["TaskRoleArn"]) for t in synthesized.task_definitions_running(command)
    ]


def _protection_statements(synthesized, role_id: str) -> list[dict]:
    return [s for s in synthesized.statements_of_role(role_id) if any(a.startswith("ecs:") for a in actions(s))]


def test_each_worker_may_protect_its_own_tasks_and_nothing_more(synthesized, topology):
    # GIVEN the task role of every worker group's service
    worker_roles = _task_roles(synthesized, ["bin/start-worker"])
    assert len(worker_roles) == len(topology.worker_groups)
    [cluster_id] = synthesized.of_type("AWS::ECS::Cluster")

    for role_id in worker_roles:
        # WHEN its ECS statements are read
        [statement] = _protection_statements(synthesized, role_id)

        # THEN it may update task protection, and nothing else of ECS
        assert statement["Effect"] == "Allow"
        assert actions(statement) == ["ecs:UpdateTaskProtection"]
        # AND only on the tasks of this stack's cluster (the task ARN is known only at run time)
        [resource] = resources(statement)
        text = json.dumps(resource)
        assert ":task/" in text and {"Ref": cluster_id} in resource["Fn::Join"][1] and text.endswith('/*"]]}')


def test_no_other_role_may_touch_task_protection(synthesized):
    # GIVEN the api's and beat's task roles (neither holds SQS messages for long)
    for command in (["bin/start-api"], ["bin/start-beat"]):
        for role_id in _task_roles(synthesized, command):
            # WHEN their statements are read THEN none names an ECS action
            assert _protection_statements(synthesized, role_id) == []
    # AND the workers' containers get no ECS_AGENT_URI from us: the ECS agent injects it
    for task_id in synthesized.task_definitions_running(["bin/start-worker"]):
        assert "ECS_AGENT_URI" not in env_of(synthesized.containers()[task_id])
