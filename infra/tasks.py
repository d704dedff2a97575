"""Task definitions of the one image: the container settings every service shares, and the ones it adds."""

from __future__ import annotations

from dataclasses import dataclass, field

from aws_cdk import Aws, Duration
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.queues import QueuePair

CONTAINER_NAME = "app"
LOG_RETENTION = logs.RetentionDays.ONE_MONTH
# ECS sends SIGTERM, then SIGKILL after stopTimeout; 120 s is the Fargate maximum and what the
# worker's soft shutdown is sized for (workers/celery_config.py ECS_STOP_TIMEOUT_SECONDS).
WORKER_STOP_TIMEOUT = Duration.seconds(120)


def healthcheck(role: str) -> ecs.HealthCheck:
    """workers.healthcheck exits non-zero when the process's liveness file is stale (worker: its consumer
    has not polled SQS lately), so ECS replaces a worker that silently stopped consuming."""
    return ecs.HealthCheck(
        command=["CMD", "python", "-m", "workers.healthcheck", role],
        interval=Duration.seconds(30),
        timeout=Duration.seconds(10),
        retries=3,
        start_period=Duration.seconds(60),
    )


def common_environment(*, prefix: str, pairs: dict[str, QueuePair], log_level: str) -> dict[str, str]:
    """What api/settings reads in every container: production settings and where each queue is."""
    environment = {
        "DJANGO_SETTINGS_MODULE": "api.settings.production",
        "AWS_DEFAULT_REGION": Aws.REGION,
        "SQS_QUEUE_PREFIX": prefix,
        "LOG_LEVEL": log_level,
    }
    # Every container publishes to any queue (tasks start tasks), so each knows every queue's URL.
    for key, pair in pairs.items():
        environment[f"SQS_QUEUE_URL_{key.upper()}"] = pair.queue.queue_url
    return environment


@dataclass(frozen=True)
class AppTaskSettings:
    """What the three services' task definitions share."""

    image: ecs.ContainerImage
    execution_role: iam.IRole
    environment: dict[str, str]
    secrets: dict[str, ecs.Secret]


@dataclass(frozen=True)
class TaskSpec:
    """What one service's task definition adds."""

    command: list[str]
    cpu: int
    memory_mib: int
    environment: dict[str, str] = field(default_factory=dict)
    health_check: ecs.HealthCheck | None = None
    stop_timeout: Duration | None = None
    port: int | None = None


@dataclass(frozen=True)
class AppTask:
    definition: ecs.FargateTaskDefinition
    container: ecs.ContainerDefinition
    role: iam.Role
    log_group: logs.LogGroup


def app_task(scope: Construct, settings: AppTaskSettings, spec: TaskSpec) -> AppTask:
    """A Fargate task definition running the image with `spec.command`, its own task role and log group."""
    role = iam.Role(
        scope,
        "TaskRole",
        assumed_by=iam.ServicePrincipal("ecs-tasks.amazonaws.com"),
        description=f"{scope.node.path}: what {' '.join(spec.command)} may do in AWS",
    )
    log_group = logs.LogGroup(scope, "Logs", retention=LOG_RETENTION)
    definition = ecs.FargateTaskDefinition(
        scope,
        "TaskDefinition",
        cpu=spec.cpu,
        memory_limit_mib=spec.memory_mib,
        task_role=role,
        execution_role=settings.execution_role,
        runtime_platform=ecs.RuntimePlatform(
            cpu_architecture=ecs.CpuArchitecture.X86_64,
            operating_system_family=ecs.OperatingSystemFamily.LINUX,
        ),
    )
    container = definition.add_container(
        CONTAINER_NAME,
        image=settings.image,
        command=spec.command,
        environment={**settings.environment, **spec.environment},
        secrets=settings.secrets,
        health_check=spec.health_check,
        stop_timeout=spec.stop_timeout,
        logging=ecs.LogDrivers.aws_logs(stream_prefix="app", log_group=log_group),
        port_mappings=[ecs.PortMapping(container_port=spec.port)] if spec.port else None,
    )
    return AppTask(definition=definition, container=container, role=role, log_group=log_group)


def worker_task_size(concurrency: int) -> tuple[int, int]:
    """Fargate CPU units and MiB for a prefork worker: about a quarter vCPU and 512 MiB per child."""
    for max_children, cpu, memory in ((1, 256, 512), (2, 512, 1024), (4, 1024, 2048), (8, 2048, 4096)):
        if concurrency <= max_children:
            return cpu, memory
    return 4096, 8192
