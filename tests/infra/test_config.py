"""Context (`-c key=value`, infra/cdk.json) becomes an InfraConfig, or a clear error naming the key;
names agree with serverless.yml; an existing VPC comes in by its attributes, without a lookup."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from infra.config import ConfigError, InfraConfig
from infra.naming import SERVICE, alarm_topic_export_name, queue_prefix
from tests.infra.conftest import ALARM_EMAIL, env_of, synthesize

REPO_ROOT = Path(__file__).resolve().parents[2]


def _config(**context) -> InfraConfig:
    """The config from `context`, with the one key every deploy must give (the alarm e-mail)."""
    return InfraConfig.from_context({"alarmEmail": ALARM_EMAIL, **context}.get)


def test_defaults_need_no_context_but_the_alarm_email():
    # GIVEN no context but the required alarm e-mail
    # WHEN the config is read
    config = _config()

    # THEN it is the dev stage in a new VPC with one NAT gateway, secrets created by the stack
    assert (config.stage, config.existing_vpc, config.nat_gateways) == ("dev", None, 1)
    assert config.database_url_secret_name is None and config.django_secret_key_secret_name is None


def test_an_existing_vpc_takes_comma_separated_ids_from_the_command_line():
    # GIVEN `-c vpcId=... -c availabilityZones=a,b -c privateSubnetIds=... -c publicSubnetIds=...`
    config = _config(
        vpcId="vpc-1",
        availabilityZones="us-east-1a, us-east-1b",
        privateSubnetIds="subnet-p1,subnet-p2",
        publicSubnetIds=["subnet-u1", "subnet-u2"],  # a list, as infra/cdk.json would hold it
    )

    # WHEN it is read
    vpc = config.existing_vpc

    # THEN every list is parsed, in order
    assert vpc is not None
    assert vpc.availability_zones == ("us-east-1a", "us-east-1b")
    assert vpc.private_subnet_ids == ("subnet-p1", "subnet-p2")
    assert vpc.public_subnet_ids == ("subnet-u1", "subnet-u2")


@pytest.mark.parametrize(
    ("context", "named"),
    [
        ({"stage": "Prod_1"}, "stage"),
        ({"natGateways": "0"}, "natGateways"),
        ({"logLevel": "LOUD"}, "logLevel"),
        (
            {"vpcId": "vpc-1", "availabilityZones": "a,b", "privateSubnetIds": "s1", "publicSubnetIds": "s1,s2"},
            "privateSubnetIds",
        ),
        ({"vpcId": "vpc-1", "availabilityZones": "a"}, "availabilityZones"),
        ({"privateSubnetIds": "s1,s2"}, "privateSubnetIds"),
    ],
)
def test_bad_context_is_refused_naming_the_key(context, named):
    # GIVEN a context value that cannot work
    # WHEN the config is read
    with pytest.raises(ConfigError) as refused:
        _config(**context)

    # THEN the error names the context key
    assert named in str(refused.value)


def test_names_agree_with_serverless_yml():
    # GIVEN serverless.yml (its service, queue prefix, and the alarm topic it imports)
    serverless = yaml.safe_load((REPO_ROOT / "serverless.yml").read_text())
    [sns_event] = [e["sns"] for e in serverless["functions"]["dlqAlert"]["events"] if "sns" in e]

    # WHEN its variables are filled in for a stage
    def fill(text: str) -> str:
        return text.replace("${self:service}", serverless["service"]).replace("${sls:stage}", "prod")

    prefix_default = serverless["custom"]["queuePrefix"].split(", ", 1)[1].rstrip("}").strip("'")

    # THEN the stack uses the same queue prefix and exports the topic under the imported name
    assert serverless["service"] == SERVICE
    assert fill(prefix_default) == queue_prefix("prod") == "celery-sqs-prod-"
    assert fill(sns_event["arn"]["Fn::ImportValue"]) == alarm_topic_export_name("prod")


def test_the_optional_context_is_honoured_without_any_lookup(tmp_path):
    # GIVEN an existing VPC and existing secrets, a certificate, a custom domain and an alarm e-mail
    certificate = "arn:aws:acm:us-east-1:111111111111:certificate/00000000-0000-0000-0000-000000000000"
    context = {
        "certificateArn": certificate,
        "allowedHosts": "api.example.com",
        "alarmEmail": "oncall@example.com",
        "vpcId": "vpc-0123456789abcdef0",
        "availabilityZones": "us-east-1a,us-east-1b",
        "privateSubnetIds": "subnet-0aaaaaaaaaaaaaaa1,subnet-0bbbbbbbbbbbbbbb2",
        "publicSubnetIds": "subnet-0ccccccccccccccc3,subnet-0ddddddddddddddd4",
        "databaseUrlSecretName": "prod/celery/database-url",
        "databaseSecurityGroupId": "sg-0123456789abcdef0",
        "djangoSecretKeySecretName": "prod/celery/secret-key",
        "apiTokensSecretName": "prod/celery/api-tokens",
    }

    # WHEN the stack is synthesized (offline: no lookup)
    synthesized = synthesize(tmp_path, **context)

    # THEN it creates no VPC and no secret, and runs every service in the given private subnets
    assert not synthesized.of_type("AWS::EC2::VPC")
    assert not synthesized.of_type("AWS::SecretsManager::Secret")
    for service in synthesized.of_type("AWS::ECS::Service").values():
        subnets = service["Properties"]["NetworkConfiguration"]["AwsvpcConfiguration"]["Subnets"]
        assert subnets == ["subnet-0aaaaaaaaaaaaaaa1", "subnet-0bbbbbbbbbbbbbbb2"]
    # AND the execution role reads the named secrets by their partial ARN (name + "-??????"), no "*"
    policies = str(synthesized.of_type("AWS::IAM::Policy"))
    assert "secret:prod/celery/database-url-??????" in policies
    assert "secret:prod/celery/secret-key-??????" in policies
    assert "secret:prod/celery/api-tokens-??????" in policies
    # AND the ALB serves HTTPS with the certificate and redirects HTTP
    listeners = {
        res["Properties"]["Port"]: res["Properties"]
        for res in synthesized.of_type("AWS::ElasticLoadBalancingV2::Listener").values()
    }
    assert listeners[443]["Protocol"] == "HTTPS"
    assert listeners[443]["Certificates"] == [{"CertificateArn": certificate}]
    assert listeners[80]["DefaultActions"][0]["Type"] == "redirect"
    # AND Django accepts the custom domain besides the ALB's name
    [api] = [c for c in synthesized.containers().values() if c["Command"] == ["bin/start-api"]]
    assert "api.example.com" in env_of(api)["DJANGO_ALLOWED_HOSTS"]["Fn::Join"][1]
    # AND Django assumes HTTPS (no HTTP-only mode)
    assert "DJANGO_HTTP_ONLY" not in env_of(api)
    # AND a person hears the alarms too
    [subscription] = synthesized.of_type("AWS::SNS::Subscription").values()
    assert subscription["Properties"]["Endpoint"] == "oncall@example.com"
