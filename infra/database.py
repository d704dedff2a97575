"""The PostgreSQL the containers use: created here (RDS, encrypted, private), or an existing one given by
its DATABASE_URL secret and security group; either way the containers get what api/settings reads."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_rds as rds
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from infra.config import InfraConfig
from infra.naming import resource_name

POSTGRES_PORT = 5432
DATABASE_NAME = "celery"
DATABASE_USER = "celery"
INSTANCE_TYPE = ec2.InstanceType.of(ec2.InstanceClass.BURSTABLE4_GRAVITON, ec2.InstanceSize.MICRO)
BACKUP_RETENTION = Duration.days(7)


class AppDatabase(Construct):
    """Created: an RDS PostgreSQL instance in the private subnets, storage encrypted, credentials generated
    into Secrets Manager (the containers get host, port and name as variables and the user and password as
    secrets; api/settings composes DATABASE_URL from them). Existing: its DATABASE_URL secret by name, and
    its security group, which is made to admit the tasks."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: InfraConfig,
        vpc: ec2.IVpc,
        task_security_group: ec2.ISecurityGroup,
    ) -> None:
        super().__init__(scope, construct_id)
        self.instance: rds.DatabaseInstance | None = None
        if config.database_url_secret_name:
            self.secret = secretsmanager.Secret.from_secret_name_v2(self, "Url", config.database_url_secret_name)
            existing = ec2.SecurityGroup.from_security_group_id(
                self, "ExistingSecurityGroup", config.database_security_group_id, mutable=True
            )
            existing.add_ingress_rule(task_security_group, ec2.Port.tcp(POSTGRES_PORT), "api, worker and beat tasks")
            self.environment: dict[str, str] = {}
            self.container_secrets = {"DATABASE_URL": ecs.Secret.from_secrets_manager(self.secret)}
            return
        self.instance = rds.DatabaseInstance(
            self,
            "Instance",
            engine=rds.DatabaseInstanceEngine.postgres(version=rds.PostgresEngineVersion.VER_17_6),
            instance_type=INSTANCE_TYPE,
            vpc=vpc,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
            publicly_accessible=False,
            storage_encrypted=True,
            allocated_storage=20,
            max_allocated_storage=100,
            database_name=DATABASE_NAME,
            port=POSTGRES_PORT,
            credentials=rds.Credentials.from_generated_secret(
                DATABASE_USER, secret_name=resource_name(config.stage, "database")
            ),
            backup_retention=BACKUP_RETENTION,
            # Deleting the stack keeps a final snapshot: the Jobs, the idempotency claims, the beat schedule.
            removal_policy=RemovalPolicy.SNAPSHOT,
            deletion_protection=False,
        )
        self.instance.connections.allow_from(
            task_security_group, ec2.Port.tcp(POSTGRES_PORT), "api, worker and beat tasks"
        )
        self.secret = self.instance.secret
        self.environment = {
            "DATABASE_HOST": self.instance.db_instance_endpoint_address,
            "DATABASE_PORT": self.instance.db_instance_endpoint_port,
            "DATABASE_NAME": DATABASE_NAME,
        }
        self.container_secrets = {
            "DATABASE_USER": ecs.Secret.from_secrets_manager(self.secret, "username"),
            "DATABASE_PASSWORD": ecs.Secret.from_secrets_manager(self.secret, "password"),
        }
