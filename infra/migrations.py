"""Migrations in every deploy, before the services roll: a one-off ECS task (bin/migrate) started and waited
for by a custom resource; a failed migration fails the deploy with the migration's log."""

from __future__ import annotations

from pathlib import Path

from aws_cdk import CustomResource, Duration, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import custom_resources as cr
from constructs import Construct

from infra.dependencies import drop_redundant_dependency
from infra.tasks import LOG_RETENTION, AppTaskSettings, TaskSpec, app_task

RUNNER_CODE = Path(__file__).resolve().parent / "migration_runner"
POLL_INTERVAL = Duration.seconds(15)
MIGRATION_TIMEOUT = Duration.minutes(30)


class Migrations(Construct):
    """`self.resource` completes only after `bin/migrate` exited 0 in a task of the app image; make every
    service depend on it. Its properties name the task definition, which changes with every new image, so
    each deploy of new code migrates first."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        cluster: ecs.ICluster,
        settings: AppTaskSettings,
        security_group: ec2.ISecurityGroup,
        subnets: list[str],
    ) -> None:
        super().__init__(scope, construct_id)
        self.task = app_task(self, settings, TaskSpec(command=["bin/migrate"], cpu=256, memory_mib=512))
        start = self._handler("Start", "handler.on_event")
        wait = self._handler("Wait", "handler.is_complete")
        stack = Stack.of(self)
        start.add_to_role_policy(
            iam.PolicyStatement(
                actions=["ecs:RunTask"],
                resources=[self.task.definition.task_definition_arn],
                conditions={"ArnEquals": {"ecs:cluster": cluster.cluster_arn}},
            )
        )
        start.add_to_role_policy(
            iam.PolicyStatement(
                actions=["iam:PassRole"],
                resources=[self.task.role.role_arn, settings.execution_role.role_arn],
            )
        )
        wait.add_to_role_policy(
            iam.PolicyStatement(
                actions=["ecs:DescribeTasks"],
                resources=[stack.format_arn(service="ecs", resource="task", resource_name=f"{cluster.cluster_name}/*")],
            )
        )
        wait.add_to_role_policy(
            iam.PolicyStatement(actions=["logs:GetLogEvents"], resources=[f"{self.task.log_group.log_group_arn}"])
        )
        provider = cr.Provider(
            self,
            "Provider",
            on_event_handler=start,
            is_complete_handler=wait,
            query_interval=POLL_INTERVAL,
            total_timeout=MIGRATION_TIMEOUT,
            log_group=logs.LogGroup(self, "ProviderLogs", retention=LOG_RETENTION),
        )
        # CDK makes each function (and the waiter) DependsOn the role it already refers to (cfn-lint W3005).
        for child in self.node.find_all():
            if isinstance(child, lambda_.Function) and child.role is not None:
                drop_redundant_dependency(child.node.default_child, child.role.node.default_child)
            if isinstance(child, sfn.CfnStateMachine):  # the provider's waiter, with its Role beside it
                role = child.node.scope.node.find_child("Role")
                drop_redundant_dependency(child, role.node.default_child)
        self.resource = CustomResource(
            self,
            "Run",
            service_token=provider.service_token,
            resource_type="Custom::DjangoMigrations",
            properties={
                "Cluster": cluster.cluster_arn,
                "TaskDefinition": self.task.definition.task_definition_arn,
                "Subnets": subnets,
                "SecurityGroups": [security_group.security_group_id],
                "LogGroup": self.task.log_group.log_group_name,
            },
        )

    def _handler(self, construct_id: str, handler: str) -> lambda_.Function:
        return lambda_.Function(
            self,
            construct_id,
            runtime=lambda_.Runtime.PYTHON_3_12,
            architecture=lambda_.Architecture.ARM_64,
            handler=handler,
            code=lambda_.Code.from_asset(str(RUNNER_CODE), exclude=["__pycache__", "*.pyc"]),
            timeout=Duration.seconds(30),
            log_group=logs.LogGroup(self, f"{construct_id}Logs", retention=LOG_RETENTION),
            description="Django migrations before the services roll (infra/migrations.py)",
        )
