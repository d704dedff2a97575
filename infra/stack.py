"""The stack: queues from the topology, the ECS cluster and its services, alarms, dashboard, exports."""

from __future__ import annotations

from aws_cdk import CfnOutput, Fn, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from constructs import Construct

from core.topology import Topology
from infra.alarms import QueueAlarms
from infra.claim_check import ClaimCheckBucket
from infra.config import InfraConfig
from infra.dashboard import build_dashboard
from infra.database import AppDatabase
from infra.image import app_image
from infra.migrations import Migrations
from infra.naming import alarm_topic_export_name, pascal_case, queue_prefix, resource_name
from infra.network import build_vpc
from infra.queues import TopologyQueues
from infra.secrets import AppSecrets
from infra.services import ApiService, BeatService, OutboxRelayService, WorkerService
from infra.tasks import AppTaskSettings, common_environment


class CelerySqsStack(Stack):
    """Environment-agnostic (no account or region at synth), so `cdk synth` needs no AWS call."""

    def __init__(
        self, scope: Construct, construct_id: str, *, config: InfraConfig, topology: Topology, **kwargs
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        stage = config.stage
        prefix = queue_prefix(stage)

        queues = TopologyQueues(self, "Queues", topology=topology, prefix=prefix)
        all_queues = list(queues.pairs.values())
        alarms = QueueAlarms(
            self, "Alarms", stage=stage, prefix=prefix, pairs=all_queues, alarm_email=config.alarm_email
        )

        vpc = build_vpc(self, config)
        cluster = ecs.Cluster(
            self,
            "Cluster",
            vpc=vpc,
            cluster_name=resource_name(stage, "cluster"),
            container_insights_v2=ecs.ContainerInsights.ENABLED,  # RunningTaskCount for worker scaling
        )
        # One security group for every task (api, workers, beat): the one to admit on the database. The
        # ALB may reach the tasks on the api port; workers and beat listen on nothing.
        task_security_group = ec2.SecurityGroup(
            self, "TaskSecurityGroup", vpc=vpc, description="api, worker and beat tasks", allow_all_outbound=True
        )
        secrets = AppSecrets(self, "Secrets", config=config)
        database = AppDatabase(self, "Database", config=config, vpc=vpc, task_security_group=task_security_group)
        # One execution role (pull the image, write logs, read the two secrets); a task role per service.
        execution_role = iam.Role(
            self,
            "TaskExecutionRole",
            assumed_by=iam.ServicePrincipal("ecs-tasks.amazonaws.com"),
            description="ECS: pulls the app image, reads its secrets, writes its logs",
        )
        # Task bodies over a queue's max_message_bytes, for the queues with claim_check_max_bytes (none: no bucket).
        claim_check = None
        if any(q.claim_check_max_bytes for q in topology.queues.values()):
            claim_check = ClaimCheckBucket(self, "ClaimCheck", topology=topology)
        settings = AppTaskSettings(
            image=ecs.ContainerImage.from_docker_image_asset(app_image(self)),
            execution_role=execution_role,
            environment={
                **common_environment(prefix=prefix, pairs=queues.pairs, log_level=config.log_level),
                **(claim_check.environment() if claim_check else {}),
                **database.environment,
            },
            secrets={**secrets.container_secrets(), **database.container_secrets},
        )
        # Every deploy migrates first; no service starts (or rolls) on a database without its tables.
        migrations = Migrations(
            self,
            "Migrations",
            cluster=cluster,
            settings=settings,
            security_group=task_security_group,
            subnets=vpc.select_subnets(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS).subnet_ids,
        )

        api = ApiService(
            self,
            "Api",
            cluster=cluster,
            settings=settings,
            security_group=task_security_group,
            publish_to=all_queues,
            max_tasks=config.api_max_tasks,
            certificate_arn=config.certificate_arn,
            allowed_hosts=config.allowed_hosts,
        )
        for name, secret in secrets.api_container_secrets().items():
            api.task.container.add_secret(name, secret)  # grants the execution role read on it
        services: dict[str, ecs.FargateService] = {"api": api.service}
        workers: dict[str, WorkerService] = {}
        for name, group in topology.worker_groups.items():
            worker = WorkerService(
                self,
                f"Worker{pascal_case(name)}",
                cluster=cluster,
                settings=settings,
                security_group=task_security_group,
                group=group,
                own_queues=queues.of(group.queues),
                publish_to=all_queues,
                policy_name=resource_name(stage, f"worker-{name}-backlog-per-task"),
            )
            services[f"worker {name}"] = worker.service
            workers[name] = worker
        beat = BeatService(
            self,
            "Beat",
            cluster=cluster,
            settings=settings,
            security_group=task_security_group,
            publish_to=all_queues,
        )
        services["beat"] = beat.service
        relay = OutboxRelayService(
            self,
            "OutboxRelay",
            cluster=cluster,
            settings=settings,
            security_group=task_security_group,
            publish_to=all_queues,
        )
        services["outbox relay"] = relay.service
        for service in services.values():
            service.node.add_dependency(migrations.resource)
        if claim_check:
            # Every producer stores bodies; a worker group reads and deletes its own queues' bodies only.
            for producer in (api.task.role, beat.task.role, relay.task.role, *(w.task.role for w in workers.values())):
                claim_check.allow_put(producer)
            for group, worker in workers.items():
                claim_check.allow_read_and_delete(worker.task.role, topology.worker_groups[group].queues)

        build_dashboard(self, name=resource_name(stage, "queues"), pairs=all_queues, cluster=cluster, services=services)

        CfnOutput(
            self,
            "DlqAlarmTopicArn",
            value=alarms.topic.topic_arn,
            description="SNS topic of the queue and DLQ alarms (serverless.yml's dlqAlert subscribes to it)",
            export_name=alarm_topic_export_name(stage),
        )
        CfnOutput(
            self,
            "TaskSecurityGroupId",
            value=task_security_group.security_group_id,
            description="The security group of every api, worker and beat task: let it reach PostgreSQL",
        )
        CfnOutput(self, "ClusterName", value=cluster.cluster_name)
        # What `aws ecs run-task` needs for a one-off command in the api's image (README: first login).
        CfnOutput(
            self,
            "ApiTaskDefinitionArn",
            value=api.task.definition.task_definition_arn,
            description="The api's task definition (container `app`): one-off commands such as createsuperuser",
        )
        CfnOutput(
            self,
            "PrivateSubnetIds",
            value=Fn.join(",", vpc.select_subnets(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS).subnet_ids),
            description="The tasks' subnets, for `aws ecs run-task`",
        )
        CfnOutput(
            self,
            "ApiTokensSecretName",
            value=secrets.api_tokens.secret_name,
            description="The jobs API's bearer tokens (API_TOKENS, comma-separated)",
        )
        CfnOutput(
            self,
            "DatabaseSecretName",
            value=database.secret.secret_name,
            description="The database's credentials (created) or its DATABASE_URL (databaseUrlSecretName)",
        )
