"""The migration custom resource's two Lambda handlers: start the migration task (bin/migrate), then report
it complete only once it exited 0; a failure fails the deploy with the task's last log lines."""

from __future__ import annotations

from typing import Any

import boto3

LOG_LINES = 30  # of the failed migration, in the CloudFormation event's reason
CONTAINER = "app"  # infra/tasks.py CONTAINER_NAME; its awslogs stream is app/<container>/<task id>


class MigrationFailed(RuntimeError):
    """The migration task did not start, or stopped with a non-zero exit: the deploy must fail."""


def on_event(event: dict[str, Any], _context: Any = None, *, ecs: Any = None) -> dict[str, Any]:
    """Create/Update: start one migration task. Delete: nothing (a migration is never undone)."""
    if event["RequestType"] == "Delete":
        return {"PhysicalResourceId": event.get("PhysicalResourceId") or "migrations"}
    props = event["ResourceProperties"]
    ecs = ecs or boto3.client("ecs")
    response = ecs.run_task(
        cluster=props["Cluster"],
        taskDefinition=props["TaskDefinition"],
        launchType="FARGATE",
        count=1,
        startedBy="deploy-migrations",
        networkConfiguration={
            "awsvpcConfiguration": {
                "subnets": list(props["Subnets"]),
                "securityGroups": list(props["SecurityGroups"]),
                "assignPublicIp": "DISABLED",
            }
        },
    )
    tasks = response.get("tasks") or []
    if response.get("failures") or not tasks:
        raise MigrationFailed(f"could not start the migration task: {response.get('failures')}")
    return {"PhysicalResourceId": tasks[0]["taskArn"]}


def is_complete(event: dict[str, Any], _context: Any = None, *, ecs: Any = None, logs: Any = None) -> dict[str, Any]:
    """Polled by the provider until the task stopped: complete on exit 0, MigrationFailed otherwise."""
    if event["RequestType"] == "Delete":
        return {"IsComplete": True}
    props, task_arn = event["ResourceProperties"], event["PhysicalResourceId"]
    ecs = ecs or boto3.client("ecs")
    [task] = ecs.describe_tasks(cluster=props["Cluster"], tasks=[task_arn])["tasks"] or [None]
    if task is None:
        raise MigrationFailed(f"the migration task {task_arn} is gone")
    if task["lastStatus"] != "STOPPED":
        return {"IsComplete": False}
    [container] = [c for c in task.get("containers", []) if c.get("name") == CONTAINER] or [{}]
    exit_code = container.get("exitCode")
    if exit_code == 0:
        return {"IsComplete": True}
    tail = _log_tail(logs or boto3.client("logs"), props["LogGroup"], task_arn.rsplit("/", 1)[-1])
    raise MigrationFailed(
        f"migrations failed (exit code {exit_code}, {task.get('stoppedReason') or container.get('reason')}); "
        f"the services were not rolled. Last lines of {props['LogGroup']}:\n{tail}"
    )


def _log_tail(logs: Any, group: str, task_id: str) -> str:
    try:
        events = logs.get_log_events(
            logGroupName=group, logStreamName=f"app/{CONTAINER}/{task_id}", limit=LOG_LINES, startFromHead=False
        )["events"]
    except Exception as exc:  # noqa: BLE001 (the failure itself matters more than its log)
        return f"(no log: {exc})"
    return "\n".join(e["message"] for e in events) or "(empty log)"
