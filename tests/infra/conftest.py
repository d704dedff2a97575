"""The CDK stack synthesized once for the whole session, and helpers to find things in its template.

The CDK (and every infra module that imports it) is imported inside the functions that use it: each pytest worker
collects every test, and importing the CDK costs about 8 s of CPU (jsii); only the worker that runs these pays."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from core.topology import DEFAULT_TOPOLOGY_PATH, Topology, load_topology
from infra.config import cdk_json_context

# jsii (the CDK's Node runtime) prints a banner on every start under Node 20; bin/synth silences it too.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

STAGE = "ci"  # the stage tests/integration/test_serverless_package.py packages the Lambdas for
PREFIX = f"celery-sqs-{STAGE}-"


ALARM_EMAIL = "oncall@example.com"  # the context every deploy must give (or decline with alarmEmail=none)


def synthesize(tmp_dir: Path, **context: Any) -> Synthesized:
    """Build the app as `cdk synth` would (infra/cdk.json's context plus `context`) into tmp_dir."""
    import aws_cdk as cdk
    import aws_cdk.cx_api as cxapi

    from infra.app import build_app

    full = {**cdk_json_context(), "stage": STAGE, "alarmEmail": ALARM_EMAIL, **context}
    app = cdk.App(context={k: v for k, v in full.items() if v is not None}, outdir=str(tmp_dir))
    stack = build_app(app)
    assembly = app.synth()
    artifact = assembly.get_stack_by_name(stack.stack_name)
    warnings = [m.entry.data for m in artifact.messages if m.level == cxapi.SynthesisMessageLevel.WARNING]
    return Synthesized(
        template=artifact.template, outdir=Path(assembly.directory), stack_name=stack.stack_name, warnings=warnings
    )


@dataclass(frozen=True)
class Synthesized:
    template: dict[str, Any]
    outdir: Path
    stack_name: str
    warnings: list[Any]  # what `cdk synth` prints as warnings

    @property
    def resources(self) -> dict[str, Any]:
        return self.template["Resources"]

    def of_type(self, kind: str) -> dict[str, dict[str, Any]]:
        return {key: res for key, res in self.resources.items() if res["Type"] == kind}

    def props(self, logical_id: str) -> dict[str, Any]:
        return self.resources[logical_id]["Properties"]

    # --- queues -----------------------------------------------------------------------------------
    def queue_ids_by_name(self) -> dict[str, str]:
        """SQS name -> logical id of every queue in the template."""
        return {props["Properties"]["QueueName"]: key for key, props in self.of_type("AWS::SQS::Queue").items()}

    def queue_name_of(self, ref: Any) -> str:
        """The SQS name behind {"Ref": id}, {"Fn::GetAtt": [id, ...]}."""
        logical_id = ref["Ref"] if "Ref" in ref else ref["Fn::GetAtt"][0]
        return self.props(logical_id)["QueueName"]

    # --- ECS --------------------------------------------------------------------------------------
    def containers(self) -> dict[str, dict[str, Any]]:
        """Task definition logical id -> its (only) container definition."""
        found = {}
        for key, res in self.of_type("AWS::ECS::TaskDefinition").items():
            [container] = res["Properties"]["ContainerDefinitions"]
            found[key] = container
        return found

    def task_definitions_running(self, command: list[str]) -> list[str]:
        return [key for key, c in self.containers().items() if c.get("Command") == command]

    def service_of(self, task_definition_id: str) -> tuple[str, dict[str, Any]]:
        [found] = [
            (key, res["Properties"])
            for key, res in self.of_type("AWS::ECS::Service").items()
            if res["Properties"]["TaskDefinition"] == {"Ref": task_definition_id}
        ]
        return found

    def scalable_target_of(self, service_id: str) -> dict[str, Any]:
        """The Application Auto Scaling target of an ECS service."""
        [found] = [
            target["Properties"]
            for target in self.of_type("AWS::ApplicationAutoScaling::ScalableTarget").values()
            if service_id in str(target["Properties"]["ResourceId"])
        ]
        return found

    # --- IAM --------------------------------------------------------------------------------------
    def role_id(self, arn_ref: Any) -> str:
        [logical_id, attribute] = arn_ref["Fn::GetAtt"]
        assert attribute == "Arn" and self.resources[logical_id]["Type"] == "AWS::IAM::Role"
        return logical_id

    def statements_of_role(self, role_id: str) -> list[dict[str, Any]]:
        """Every statement of the role's inline policies and of the AWS::IAM::Policy resources attached."""
        statements = []
        for policy in self.props(role_id).get("Policies", []):
            statements += policy["PolicyDocument"]["Statement"]
        for res in self.of_type("AWS::IAM::Policy").values():
            if {"Ref": role_id} in res["Properties"].get("Roles", []):
                statements += res["Properties"]["PolicyDocument"]["Statement"]
        return statements


def actions(statement: dict[str, Any]) -> list[str]:
    value = statement.get("Action", [])
    return [value] if isinstance(value, str) else list(value)


def resources(statement: dict[str, Any]) -> list[Any]:
    value = statement.get("Resource", [])
    return [value] if isinstance(value, str | dict) else list(value)


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {item["Name"]: item["Value"] for item in container.get("Environment", [])}


@pytest.fixture(scope="session")
def topology() -> Topology:
    """What is deployed: queues.yml without a profile (the test settings point QUEUE_TOPOLOGY elsewhere)."""
    return load_topology(DEFAULT_TOPOLOGY_PATH, profile="")


@pytest.fixture(scope="session")
def synthesized(tmp_path_factory) -> Synthesized:
    """The stack with its defaults (new VPC, secrets created by the stack), synthesized once: slow."""
    return synthesize(tmp_path_factory.mktemp("cdk.out"))


@pytest.fixture(scope="session")
def template(synthesized):
    from aws_cdk.assertions import Template

    return Template.from_json(synthesized.template)
