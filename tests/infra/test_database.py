"""A first deploy needs no database of its own: the stack creates an encrypted, private PostgreSQL, or opens an
existing one (its DATABASE_URL secret and security group) to the tasks; every deploy migrates first."""

from __future__ import annotations

import json

import pytest

from infra.config import ConfigError, InfraConfig
from tests.infra.conftest import ALARM_EMAIL, synthesize


def test_without_a_database_the_stack_creates_an_encrypted_private_postgresql(synthesized):
    # GIVEN the stack with its defaults (no databaseUrlSecretName)
    # WHEN its database is looked up
    [instance] = synthesized.of_type("AWS::RDS::DBInstance").values()
    props = instance["Properties"]

    # THEN it is PostgreSQL, encrypted at rest, not reachable from the internet, kept as a snapshot on delete
    assert props["Engine"] == "postgres"
    assert props["StorageEncrypted"] is True
    assert props["PubliclyAccessible"] is False
    assert instance["DeletionPolicy"] == "Snapshot"
    assert props["BackupRetentionPeriod"] >= 7
    # AND its password is generated into Secrets Manager, never in the template
    assert "MasterUserPassword" in props and "resolve:secretsmanager" in json.dumps(props["MasterUserPassword"])


def test_the_containers_get_the_database_from_the_generated_secret_and_its_endpoint(synthesized):
    # GIVEN the created database's secret
    [secret_id] = [
        key
        for key, res in synthesized.of_type("AWS::SecretsManager::Secret").items()
        if "username" in json.dumps(res["Properties"].get("GenerateSecretString", {}))
    ]
    [instance_id] = synthesized.of_type("AWS::RDS::DBInstance")
    # (read through its attachment to the instance, which resolves to the same secret)
    [attachment_id] = [
        key
        for key, res in synthesized.of_type("AWS::SecretsManager::SecretTargetAttachment").items()
        if res["Properties"]["SecretId"] == {"Ref": secret_id}
    ]

    for container in synthesized.containers().values():
        # WHEN a container's secrets and environment are read
        secrets = {s["Name"]: json.dumps(s["ValueFrom"]) for s in container["Secrets"]}
        env = {e["Name"]: e["Value"] for e in container["Environment"]}

        # THEN user and password are ECS secrets from that secret's fields (api/settings composes DATABASE_URL)
        assert attachment_id in secrets["DATABASE_USER"] and ":username::" in secrets["DATABASE_USER"]
        assert attachment_id in secrets["DATABASE_PASSWORD"] and ":password::" in secrets["DATABASE_PASSWORD"]
        # AND host and port are the instance's endpoint, the name is fixed; no placeholder DATABASE_URL
        assert env["DATABASE_HOST"] == {"Fn::GetAtt": [instance_id, "Endpoint.Address"]}
        assert env["DATABASE_PORT"] == {"Fn::GetAtt": [instance_id, "Endpoint.Port"]}
        assert env["DATABASE_NAME"] == "celery"
        assert "DATABASE_URL" not in secrets and "DATABASE_URL" not in env


def test_only_the_tasks_reach_the_created_database(synthesized):
    # GIVEN the database's security group ingress rules
    [instance] = synthesized.of_type("AWS::RDS::DBInstance").values()
    [db_group] = [g["Fn::GetAtt"][0] for g in instance["Properties"]["VPCSecurityGroups"]]
    rules = [
        r["Properties"]
        for r in synthesized.of_type("AWS::EC2::SecurityGroupIngress").values()
        if r["Properties"]["GroupId"] == {"Fn::GetAtt": [db_group, "GroupId"]}
    ]

    # THEN one rule admits the task security group on 5432, and nothing else is admitted
    [rule] = rules
    assert (rule["FromPort"], rule["ToPort"], rule["IpProtocol"]) == (5432, 5432, "tcp")
    assert "TaskSecurityGroup" in json.dumps(rule["SourceSecurityGroupId"])
    assert not synthesized.props(db_group).get("SecurityGroupIngress")


def test_an_existing_database_is_opened_to_the_tasks_and_none_is_created(tmp_path):
    # GIVEN an existing database: its DATABASE_URL secret and its security group
    synthesized = synthesize(
        tmp_path, databaseUrlSecretName="prod/celery/database-url", databaseSecurityGroupId="sg-0123456789abcdef0"
    )

    # THEN no database is created, its security group admits the tasks on 5432, and DATABASE_URL is the secret
    assert not synthesized.of_type("AWS::RDS::DBInstance")
    [rule] = [
        r["Properties"]
        for r in synthesized.of_type("AWS::EC2::SecurityGroupIngress").values()
        if r["Properties"]["GroupId"] == "sg-0123456789abcdef0"
    ]
    assert (rule["FromPort"], rule["ToPort"]) == (5432, 5432)
    for container in synthesized.containers().values():
        assert "DATABASE_URL" in {s["Name"] for s in container["Secrets"]}
        assert "DATABASE_HOST" not in {e["Name"] for e in container["Environment"]}


@pytest.mark.parametrize(
    "context",
    [{"databaseUrlSecretName": "prod/db"}, {"databaseSecurityGroupId": "sg-1"}],
    ids=["secret-without-group", "group-without-secret"],
)
def test_an_existing_database_needs_both_its_secret_and_its_security_group(context):
    with pytest.raises(ConfigError, match="databaseSecurityGroupId"):
        InfraConfig.from_context({"alarmEmail": ALARM_EMAIL, **context}.get)


def test_every_service_waits_for_the_migrations_of_its_deploy(synthesized):
    # GIVEN the migration custom resource and the task definition it runs
    [(migrations_id, migrations)] = synthesized.of_type("Custom::DjangoMigrations").items()
    task_definition_id = migrations["Properties"]["TaskDefinition"]["Ref"]
    [container] = synthesized.props(task_definition_id)["ContainerDefinitions"]

    # THEN it runs bin/migrate in the app image, in the private subnets with the tasks' security group
    assert container["Command"] == ["bin/migrate"]
    assert migrations["Properties"]["Subnets"]
    assert "TaskSecurityGroup" in json.dumps(migrations["Properties"]["SecurityGroups"])
    # AND no service starts or rolls before it completed
    services = synthesized.of_type("AWS::ECS::Service")
    assert len(services) >= 3
    for service_id, service in services.items():
        assert migrations_id in service.get("DependsOn", []), service_id


def test_the_migration_runner_may_start_only_the_migration_task(synthesized):
    # GIVEN the migration task definition and the statements of every role
    [migrations] = synthesized.of_type("Custom::DjangoMigrations").values()
    task_definition_ref = migrations["Properties"]["TaskDefinition"]
    run_task = [
        statement
        for policy in synthesized.of_type("AWS::IAM::Policy").values()
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
        if "ecs:RunTask" in json.dumps(statement["Action"])
    ]

    # THEN one statement allows RunTask, on that task definition alone, in the stack's cluster alone
    [statement] = run_task
    assert statement["Resource"] == task_definition_ref
    assert "ecs:cluster" in json.dumps(statement["Condition"])
