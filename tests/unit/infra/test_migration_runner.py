"""The migration custom resource: it starts the migration task, reports complete only on exit 0, and fails
the deploy with the task's last log lines otherwise (ECS and CloudWatch Logs stubbed by botocore)."""

from __future__ import annotations

import boto3
import pytest
from botocore.stub import Stubber

from infra.migration_runner import handler

CLUSTER = "arn:aws:ecs:us-east-1:123456789012:cluster/celery-sqs-ci-cluster"
TASK_ARN = "arn:aws:ecs:us-east-1:123456789012:task/celery-sqs-ci-cluster/0123456789abcdef"
PROPS = {
    "Cluster": CLUSTER,
    "TaskDefinition": "arn:aws:ecs:us-east-1:123456789012:task-definition/migrations:7",
    "Subnets": ["subnet-1", "subnet-2"],
    "SecurityGroups": ["sg-1"],
    "LogGroup": "celery-migrations",
}


def _client(service: str):
    return boto3.client(service, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")


def _event(kind: str, **extra) -> dict:
    return {"RequestType": kind, "ResourceProperties": PROPS, **extra}


def _stopped(exit_code: int | None, reason: str = "Essential container in task exited") -> dict:
    return {"tasks": [{"taskArn": TASK_ARN, "lastStatus": "STOPPED", "stoppedReason": reason,
                       "containers": [{"name": "app", "exitCode": exit_code}]}]}  # fmt: skip


@pytest.mark.parametrize("kind", ["Create", "Update"])
def test_create_and_update_start_one_migration_task_in_the_private_subnets(kind):
    # GIVEN ECS that accepts the task
    ecs = _client("ecs")
    with Stubber(ecs) as stub:
        stub.add_response(
            "run_task",
            {"tasks": [{"taskArn": TASK_ARN}], "failures": []},
            {
                "cluster": CLUSTER,
                "taskDefinition": PROPS["TaskDefinition"],
                "launchType": "FARGATE",
                "count": 1,
                "startedBy": "deploy-migrations",
                "networkConfiguration": {
                    "awsvpcConfiguration": {
                        "subnets": ["subnet-1", "subnet-2"],
                        "securityGroups": ["sg-1"],
                        "assignPublicIp": "DISABLED",
                    }
                },
            },
        )
        # WHEN the resource is created or updated
        result = handler.on_event(_event(kind), ecs=ecs)
    # THEN the task is started once, and its ARN is what the completion check polls
    assert result == {"PhysicalResourceId": TASK_ARN}


def test_a_task_ecs_cannot_start_fails_the_deploy_at_once():
    ecs = _client("ecs")
    with Stubber(ecs) as stub:
        stub.add_response("run_task", {"tasks": [], "failures": [{"reason": "RESOURCE:ENI"}]})
        with pytest.raises(handler.MigrationFailed, match="RESOURCE:ENI"):
            handler.on_event(_event("Create"), ecs=ecs)


def test_a_running_migration_is_not_complete_yet():
    ecs = _client("ecs")
    with Stubber(ecs) as stub:
        stub.add_response("describe_tasks", {"tasks": [{"taskArn": TASK_ARN, "lastStatus": "RUNNING"}]})
        assert handler.is_complete(_event("Create", PhysicalResourceId=TASK_ARN), ecs=ecs) == {"IsComplete": False}


def test_a_migration_that_exited_0_completes_the_resource():
    ecs = _client("ecs")
    with Stubber(ecs) as stub:
        stub.add_response("describe_tasks", _stopped(0), {"cluster": CLUSTER, "tasks": [TASK_ARN]})
        assert handler.is_complete(_event("Update", PhysicalResourceId=TASK_ARN), ecs=ecs) == {"IsComplete": True}


def test_a_failed_migration_fails_the_deploy_with_its_last_log_lines():
    # GIVEN a migration task that stopped with exit code 1, and its log
    ecs, logs = _client("ecs"), _client("logs")
    with Stubber(ecs) as ecs_stub, Stubber(logs) as logs_stub:
        ecs_stub.add_response("describe_tasks", _stopped(1))
        logs_stub.add_response(
            "get_log_events",
            {"events": [{"message": "Applying jobs.0004_x..."}, {"message": "django.db.utils.ProgrammingError: boom"}]},
            {
                "logGroupName": "celery-migrations",
                "logStreamName": "app/app/0123456789abcdef",
                "limit": handler.LOG_LINES,
                "startFromHead": False,
            },
        )
        # WHEN the provider polls it
        with pytest.raises(handler.MigrationFailed) as failed:
            handler.is_complete(_event("Create", PhysicalResourceId=TASK_ARN), ecs=ecs, logs=logs)
    # THEN the deploy fails, saying the services were not rolled, with the exit code and the error line
    message = str(failed.value)
    assert "exit code 1" in message and "not rolled" in message
    assert "ProgrammingError: boom" in message


def test_delete_runs_nothing():
    # GIVEN no stubbed call at all (any call would fail)
    ecs = _client("ecs")
    with Stubber(ecs):
        assert (
            handler.on_event(_event("Delete", PhysicalResourceId=TASK_ARN), ecs=ecs)["PhysicalResourceId"] == TASK_ARN
        )
        assert handler.is_complete(_event("Delete", PhysicalResourceId=TASK_ARN), ecs=ecs) == {"IsComplete": True}
