"""The ECS services of the one image: api (behind an ALB), one worker service per worker group, beat, outbox relay."""

from __future__ import annotations

from aws_cdk import Duration, Fn
from aws_cdk import aws_applicationautoscaling as appscaling
from aws_cdk import aws_certificatemanager as acm
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_ecs_patterns as ecs_patterns
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from constructs import Construct

from core.topology import WorkerGroup
from infra.config import ConfigError
from infra.dependencies import drop_redundant_dependency
from infra.permissions import (
    allow_consume,
    allow_dlq_replay,
    allow_publish,
    allow_read_queue_metrics,
    allow_task_protection,
)
from infra.queues import QueuePair
from infra.scaling import backlog_per_task_policy
from infra.tasks import WORKER_STOP_TIMEOUT, AppTaskSettings, TaskSpec, app_task, healthcheck, worker_task_size

API_PORT = 8000  # bin/start-api: API_BIND defaults to 0.0.0.0:8000
API_MIN_TASKS = 2  # one per zone
API_CPU_TARGET_PERCENT = 60
MIN_WORKER_TASKS = 2  # one per zone: a zone failure leaves consumers


def _rollback() -> ecs.DeploymentCircuitBreaker:
    # A deployment whose tasks never become healthy (bad image, secret, settings) rolls back by itself.
    return ecs.DeploymentCircuitBreaker(enable=True, rollback=True)


class ApiService(Construct):
    """gunicorn serving Django behind a public ALB; scales on CPU; publishes tasks, consumes nothing; its
    queues page (staff only) reads the queues' metrics and replays DLQs."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        cluster: ecs.ICluster,
        settings: AppTaskSettings,
        security_group: ec2.ISecurityGroup,
        publish_to: list[QueuePair],
        max_tasks: int,
        certificate_arn: str | None,
        allowed_hosts: tuple[str, ...],
    ) -> None:
        super().__init__(scope, construct_id)
        self.task = app_task(
            self,
            settings,
            TaskSpec(
                command=["bin/start-api"],
                cpu=512,
                memory_mib=1024,
                port=API_PORT,
                # Only the ALB reaches the task (its security group admits the ALB's alone), and the
                # ALB's addresses change: gunicorn trusts X-Forwarded-* from any peer.
                environment={"FORWARDED_ALLOW_IPS": "*"},
            ),
        )
        allow_publish(self.task.role, publish_to)
        allow_dlq_replay(self.task.role, publish_to)
        allow_read_queue_metrics(self.task.role)
        https = certificate_arn is not None
        self.alb_service = ecs_patterns.ApplicationLoadBalancedFargateService(
            self,
            "Service",
            cluster=cluster,
            task_definition=self.task.definition,
            security_groups=[security_group],
            # No DesiredCount: CloudFormation would reset the running count to it on every deploy (aws-cdk
            # #3919); the scalable target's minimum starts the service.
            min_healthy_percent=100,
            max_healthy_percent=200,
            circuit_breaker=_rollback(),
            health_check_grace_period=Duration.seconds(60),
            public_load_balancer=True,
            protocol=elbv2.ApplicationProtocol.HTTPS if https else elbv2.ApplicationProtocol.HTTP,
            certificate=acm.Certificate.from_certificate_arn(self, "Certificate", certificate_arn) if https else None,
            redirect_http=https,
            ssl_policy=elbv2.SslPolicy.RECOMMENDED_TLS if https else None,
        )
        self.service = self.alb_service.service
        # The service must wait for the listener; its target group it already refers to.
        drop_redundant_dependency(self.service.node.default_child, self.alb_service.target_group.node.default_child)
        self.alb_service.target_group.configure_health_check(
            path="/healthz",  # api/health.py: 200 when the process is up and its database answers
            healthy_http_codes="200",
            interval=Duration.seconds(15),
            timeout=Duration.seconds(5),
            healthy_threshold_count=2,
            unhealthy_threshold_count=3,
        )
        # Requests are short (publishing is on commit, the work is in the workers).
        self.alb_service.target_group.set_attribute("deregistration_delay.timeout_seconds", "30")
        if not https:
            # No certificate: the production settings' HTTP-only mode (no Secure cookies, no redirect, no HSTS),
            # so the admin login works over plain HTTP; the api warns at start-up (api/deploy_mode.py).
            self.task.container.add_environment("DJANGO_HTTP_ONLY", "true")
        self.task.container.add_environment(
            "DJANGO_ALLOWED_HOSTS",
            Fn.join(",", [self.alb_service.load_balancer.load_balancer_dns_name, *allowed_hosts]),
        )
        scaling = self.service.auto_scale_task_count(min_capacity=API_MIN_TASKS, max_capacity=max_tasks)
        scaling.scale_on_cpu_utilization("CpuScaling", target_utilization_percent=API_CPU_TARGET_PERCENT)


class WorkerService(Construct):
    """`celery worker` on one worker group's queues; scales on visible messages per running task."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        cluster: ecs.ICluster,
        settings: AppTaskSettings,
        security_group: ec2.ISecurityGroup,
        group: WorkerGroup,
        own_queues: list[QueuePair],
        publish_to: list[QueuePair],
        policy_name: str,
    ) -> None:
        super().__init__(scope, construct_id)
        if group.min_tasks < MIN_WORKER_TASKS:
            raise ConfigError(
                f"worker_groups.{group.name}.min_tasks = {group.min_tasks}: on ECS a worker group runs at "
                f"least {MIN_WORKER_TASKS} tasks (one per availability zone)"
            )
        cpu, memory = worker_task_size(group.concurrency)
        self.task = app_task(
            self,
            settings,
            TaskSpec(
                command=["bin/start-worker"],
                cpu=cpu,
                memory_mib=memory,
                environment={"WORKER_QUEUES": ",".join(group.queues), "WORKER_CONCURRENCY": str(group.concurrency)},
                health_check=healthcheck("worker"),
                stop_timeout=WORKER_STOP_TIMEOUT,
            ),
        )
        allow_consume(self.task.role, own_queues)
        allow_publish(self.task.role, publish_to)  # tasks publish tasks, and retries are new messages
        allow_task_protection(self.task.role, cluster)  # no scale-in while it holds tasks
        self.service = ecs.FargateService(
            self,
            "Service",
            cluster=cluster,
            task_definition=self.task.definition,
            security_groups=[security_group],
            # No DesiredCount, as for the api: a deploy in the middle of a backlog keeps the scaled count.
            min_healthy_percent=100,
            max_healthy_percent=200,
            circuit_breaker=_rollback(),
        )
        scaling = self.service.auto_scale_task_count(min_capacity=group.min_tasks, max_capacity=group.max_tasks)
        # The scalable target behind ScalableTaskCount, for the metric-math policy the L2 cannot express.
        target = scaling.node.find_child("Target")
        assert isinstance(target, appscaling.ScalableTarget)
        self.scaling_policy = backlog_per_task_policy(
            self,
            "BacklogPerTask",
            policy_name=policy_name,
            scalable_target=target,
            queues=own_queues,
            cluster_name=cluster.cluster_name,
            service_name=self.service.service_name,
            backlog_per_task=group.backlog_per_task,
        )


class _OneTaskService(Construct):
    """One task of the app image, running `spec`, whose role may only publish: beat and the outbox relay."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        cluster: ecs.ICluster,
        settings: AppTaskSettings,
        security_group: ec2.ISecurityGroup,
        publish_to: list[QueuePair],
        spec: TaskSpec,
        **deployment: int,
    ) -> None:
        super().__init__(scope, construct_id)
        self.task = app_task(self, settings, spec)
        allow_publish(self.task.role, publish_to)
        self.service = ecs.FargateService(
            self,
            "Service",
            cluster=cluster,
            task_definition=self.task.definition,
            security_groups=[security_group],
            desired_count=1,
            **deployment,
            circuit_breaker=_rollback(),
        )


class BeatService(_OneTaskService):
    """`celery beat`: exactly one task. A deployment stops the old task before it starts the new one
    (minimum 0 %, maximum 100 %) and nothing scales it; should two ever overlap, the lease in
    workers/beat.py keeps the second on standby."""

    def __init__(self, scope: Construct, construct_id: str, **kwargs) -> None:
        spec = TaskSpec(command=["bin/start-beat"], cpu=256, memory_mib=512, health_check=healthcheck("beat"))
        super().__init__(scope, construct_id, spec=spec, min_healthy_percent=0, max_healthy_percent=100, **kwargs)


class OutboxRelayService(_OneTaskService):
    """`manage.py outbox_relay` (bin/start-outbox-relay): publishes committed Jobs the api did not. Each
    attempt is claimed by compare-and-set in the database, so two tasks during a deployment (or more) are
    safe; one is enough. It needs the database and may only publish."""

    def __init__(self, scope: Construct, construct_id: str, **kwargs) -> None:
        # Healthy while it sweeps, also while the database or SQS is down (a new task could not reach them either).
        health = ecs.HealthCheck(
            command=["CMD", "python", "manage.py", "outbox_relay", "--check"],
            interval=Duration.seconds(60),
            timeout=Duration.seconds(20),
            retries=3,
            start_period=Duration.seconds(60),
        )
        spec = TaskSpec(command=["bin/start-outbox-relay"], cpu=256, memory_mib=512, health_check=health)
        super().__init__(scope, construct_id, spec=spec, **kwargs)
