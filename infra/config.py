"""What a deployment may choose, read from CDK context (`-c key=value` or infra/cdk.json); nothing is looked up."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infra.naming import check_stage

CDK_JSON = Path(__file__).resolve().parent / "cdk.json"
DEFAULT_STAGE = "dev"
LOG_LEVELS = {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}
NO_ALARM_EMAIL = "none"  # `-c alarmEmail=none`: deploy knowing that nobody is told about the alarms
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class ConfigError(ValueError):
    """A context value is missing, malformed or inconsistent; the message names the key."""


@dataclass(frozen=True)
class ExistingVpc:
    """A VPC that already exists, given by its attributes: Vpc.from_vpc_attributes, no lookup."""

    vpc_id: str
    availability_zones: tuple[str, ...]
    private_subnet_ids: tuple[str, ...]
    public_subnet_ids: tuple[str, ...]


@dataclass(frozen=True)
class InfraConfig:
    stage: str = DEFAULT_STAGE
    existing_vpc: ExistingVpc | None = None
    nat_gateways: int = 1
    # Existing Secrets Manager secrets by name; the stack creates them when not given.
    database_url_secret_name: str | None = None
    database_security_group_id: str | None = None  # with database_url_secret_name: admitted to the tasks
    django_secret_key_secret_name: str | None = None
    api_tokens_secret_name: str | None = None  # API_TOKENS of the jobs API (comma-separated bearer tokens)
    certificate_arn: str | None = None  # an ACM certificate: HTTPS on 443, HTTP redirected
    allowed_hosts: tuple[str, ...] = ()  # extra DJANGO_ALLOWED_HOSTS (a custom domain), besides the ALB's name
    # Subscribed to the alarm topic, so every age and DLQ alarm reaches a person; None only when declined.
    alarm_email: str | None = None
    log_level: str = "INFO"
    api_max_tasks: int = 6

    @classmethod
    def from_context(cls, get: Callable[[str], Any]) -> InfraConfig:
        """Build from a context getter (`node.try_get_context`); every key is optional."""
        stage = _text(get, "stage") or DEFAULT_STAGE
        try:
            check_stage(stage)
        except ValueError as exc:
            raise ConfigError(f"context stage: {exc}") from None
        log_level = (_text(get, "logLevel") or "INFO").upper()
        if log_level not in LOG_LEVELS:
            raise ConfigError(f"context logLevel {log_level!r}: one of {sorted(LOG_LEVELS)}")
        return cls(
            stage=stage,
            existing_vpc=_existing_vpc(get),
            nat_gateways=_int(get, "natGateways", 1, low=1, high=2),
            database_url_secret_name=_text(get, "databaseUrlSecretName"),
            database_security_group_id=_database_security_group(get),
            django_secret_key_secret_name=_text(get, "djangoSecretKeySecretName"),
            api_tokens_secret_name=_text(get, "apiTokensSecretName"),
            certificate_arn=_text(get, "certificateArn"),
            allowed_hosts=_list(get, "allowedHosts"),
            alarm_email=_alarm_email(get),
            log_level=log_level,
            api_max_tasks=_int(get, "apiMaxTasks", 6, low=2, high=100),
        )


def cdk_json_context() -> dict[str, Any]:
    """The context of infra/cdk.json (feature flags), for apps built outside the CLI (tests)."""
    return dict(json.loads(CDK_JSON.read_text()).get("context", {}))


def _text(get: Callable[[str], Any], key: str) -> str | None:
    value = get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ConfigError(f"context {key}: expected a string, got {value!r}")
    return value.strip()


def _list(get: Callable[[str], Any], key: str) -> tuple[str, ...]:
    """A list from cdk.json, or a comma-separated string from `-c key=a,b`."""
    value = get(key)
    if value is None or value == "":
        return ()
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not all(isinstance(i, str) for i in items):
        raise ConfigError(f"context {key}: expected a list of strings or 'a,b,c', got {value!r}")
    return tuple(i.strip() for i in items if i.strip())


def _int(get: Callable[[str], Any], key: str, default: int, *, low: int, high: int) -> int:
    value = get(key)
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"context {key}: expected an integer, got {value!r}") from None
    if not low <= number <= high:
        raise ConfigError(f"context {key} = {number}: expected {low}..{high}")
    return number


def _database_security_group(get: Callable[[str], Any]) -> str | None:
    """An existing database comes with its security group, which the stack opens to the tasks."""
    secret, group = _text(get, "databaseUrlSecretName"), _text(get, "databaseSecurityGroupId")
    if secret and not group:
        raise ConfigError(
            "context databaseSecurityGroupId is required with databaseUrlSecretName: the security group of the "
            "existing PostgreSQL, which the stack opens to the tasks on 5432 (without them, omit both and the "
            "stack creates the database)"
        )
    if group and not secret:
        raise ConfigError("context databaseSecurityGroupId is only used with databaseUrlSecretName")
    return group


def _alarm_email(get: Callable[[str], Any]) -> str | None:
    """Required: an alarm nobody hears is no alarm. `none` declines it explicitly (synth warns)."""
    value = _text(get, "alarmEmail")
    if value is None:
        raise ConfigError(
            "context alarmEmail is required: the e-mail address every queue-age and DLQ alarm is sent to "
            f"(-c alarmEmail=oncall@example.com); -c alarmEmail={NO_ALARM_EMAIL} deploys without one, and then "
            "nobody hears the alarms"
        )
    if value.lower() == NO_ALARM_EMAIL:
        return None
    if not _EMAIL.match(value):
        raise ConfigError(f"context alarmEmail {value!r}: expected an e-mail address (or {NO_ALARM_EMAIL!r})")
    return value


def _existing_vpc(get: Callable[[str], Any]) -> ExistingVpc | None:
    vpc_id = _text(get, "vpcId")
    if vpc_id is None:
        for key in ("availabilityZones", "privateSubnetIds", "publicSubnetIds"):
            if _list(get, key):
                raise ConfigError(f"context {key} is only used with vpcId (an existing VPC)")
        return None
    azs = _list(get, "availabilityZones")
    private = _list(get, "privateSubnetIds")
    public = _list(get, "publicSubnetIds")
    if len(azs) < 2:
        raise ConfigError("context availabilityZones: an existing VPC needs at least two, e.g. us-east-1a,us-east-1b")
    # Vpc.from_vpc_attributes pairs subnets with zones in order: one subnet per zone per group.
    for key, subnets in (("privateSubnetIds", private), ("publicSubnetIds", public)):
        if len(subnets) != len(azs):
            raise ConfigError(
                f"context {key}: {len(subnets)} subnet(s) for {len(azs)} availability zone(s); give one per zone"
            )
    return ExistingVpc(vpc_id, azs, private, public)
