"""serverless.yml packages offline (bin/package-lambdas: osls + cfn-lint) into a template and a zip that
give the DLQ Lambdas exactly the queues of queues.yml, least-privilege roles, and the code they import."""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from core.topology import load_topology

pytestmark = [pytest.mark.integration, pytest.mark.timeout(660)]

REPO_ROOT = Path(__file__).resolve().parents[2]
OUT = REPO_ROOT / ".serverless"
STAGE = "ci"
PREFIX = f"celery-sqs-{STAGE}-"  # custom.queuePrefix when SQS_QUEUE_PREFIX is unset
FUNCTIONS = {  # function key in serverless.yml -> handler
    "dlqReplay": "lambdas/dlq_replay/handler.handler",
    "dlqAlert": "lambdas/dlq_alert/handler.handler",
}
SQS_ARN = re.compile(r"^arn:\$\{AWS::Partition\}:sqs:\$\{AWS::Region\}:\$\{AWS::AccountId\}:([\w-]+)$")
RUNTIME_PROVIDED = {"boto3", "botocore"}  # in the python3.12 Lambda runtime; not packaged


@dataclass(frozen=True)
class Package:
    template: dict[str, Any]
    files: dict[str, bytes]  # zip entry -> content, for .py and .yml entries; b"" for the rest

    @property
    def resources(self) -> dict[str, Any]:
        return self.template["Resources"]

    def of_type(self, kind: str) -> dict[str, Any]:
        return {key: res for key, res in self.resources.items() if res["Type"] == kind}

    def function(self, key: str) -> dict[str, Any]:
        name = f"celery-sqs-{STAGE}-{key}"
        found = [r for r in self.of_type("AWS::Lambda::Function").values() if r["Properties"]["FunctionName"] == name]
        assert len(found) == 1, f"expected one Lambda function named {name}, found {len(found)}"
        return found[0]["Properties"]

    def role_of(self, key: str) -> dict[str, Any]:
        role = self.function(key)["Role"]
        logical_id = role["Fn::GetAtt"][0] if "Fn::GetAtt" in role else role["Fn::Sub"].removeprefix("${").split(".")[0]
        assert self.resources[logical_id]["Type"] == "AWS::IAM::Role"
        return self.resources[logical_id]["Properties"]


@pytest.fixture(scope="module")
def package() -> Package:
    """bin/package-lambdas run once (npm ci if needed, osls package, cfn-lint), and what it produced."""
    missing = [tool for tool in ("node", "npm") if shutil.which(tool) is None]
    if missing:
        pytest.fail(
            f"{' and '.join(missing)} not found on PATH: packaging the Lambdas needs Node.js "
            "(^20.19 || ^22.13 || >=24) and npm; install them, then run `make package-lambdas`",
            pytrace=False,
        )
    # The defaults (stage ci, no queue prefix or alert e-mail from this shell) make the template predictable.
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"LAMBDA_STAGE", "LAMBDA_REGION", "SQS_QUEUE_PREFIX", "ALERT_EMAIL"}
    }
    result = subprocess.run(
        [str(REPO_ROOT / "bin" / "package-lambdas")],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(
            f"bin/package-lambdas exited {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}",
            pytrace=False,
        )
    template = json.loads((OUT / "cloudformation-template-update-stack.json").read_text())
    with zipfile.ZipFile(OUT / "celery-sqs.zip") as archive:
        files = {
            name: archive.read(name) if name.endswith((".py", ".yml")) else b""
            for name in archive.namelist()
            if not name.endswith("/")
        }
    return Package(template, files)


@pytest.fixture(scope="module")
def queue_names() -> dict[str, set[str]]:
    """The SQS names the deployed Lambdas must reach: the topology's queues and DLQs with the stage prefix."""
    topology = load_topology(REPO_ROOT / "queues.yml", profile="")
    return {
        "dlq": {q.dlq_sqs_name(PREFIX) for q in topology.queues.values()},
        "source": {q.sqs_name(PREFIX) for q in topology.queues.values()},
    }


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _statements(role: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for policy in role.get("Policies", []) for s in _as_list(policy["PolicyDocument"]["Statement"])]


def _grants(statements: list[dict[str, Any]]) -> dict[str, set[str]]:
    """action -> the SQS queue names (or other resources, as JSON) it is allowed on."""
    grants: dict[str, set[str]] = defaultdict(set)
    for statement in statements:
        assert statement["Effect"] == "Allow"
        for resource in _as_list(statement["Resource"]):
            match = SQS_ARN.match(resource["Fn::Sub"]) if isinstance(resource, dict) and "Fn::Sub" in resource else None
            target = match.group(1) if match else json.dumps(resource, sort_keys=True)
            for action in _as_list(statement["Action"]):
                grants[action].add(target)
    return dict(grants)


def _wildcards(template: dict[str, Any]) -> tuple[int, list[str]]:
    """Every policy statement anywhere in the template: how many touch SQS or SNS, and the wildcards there."""
    found: list[str] = []
    checked = 0

    def strings(value: Any) -> list[str]:
        if isinstance(value, str):
            return [value]
        if isinstance(value, dict):
            return [s for v in value.values() for s in strings(v)]
        if isinstance(value, list):
            return [s for v in value for s in strings(v)]
        return []

    def visit(node: Any, where: str) -> None:
        nonlocal checked
        if isinstance(node, dict):
            if "Statement" in node:
                for i, statement in enumerate(_as_list(node["Statement"])):
                    # NotAction allows every action it does not name: SQS and SNS included.
                    actions = [a.lower() for a in strings(statement.get("Action", []))]
                    if "NotAction" not in statement and not any(a.startswith(("*", "sqs:", "sns:")) for a in actions):
                        continue
                    checked += 1
                    at = f"{where}/Statement/{i}"
                    found.extend(f"{at}: action {a}" for a in actions if "*" in a)
                    found.extend(f"{at}: {key}" for key in ("NotAction", "NotResource") if key in statement)
                    found.extend(f"{at}: resource {r}" for r in strings(statement.get("Resource", [])) if "*" in r)
            for key, value in node.items():
                visit(value, f"{where}/{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                visit(value, f"{where}/{i}")

    visit(template, "")
    return checked, found


def test_both_functions_run_python312_with_their_handlers(package):
    # GIVEN the packaged service  WHEN its two functions are looked up by their deployed names
    for key, handler in FUNCTIONS.items():
        props = package.function(key)
        # THEN each runs python3.12 with its handler, whose module is in the zip
        assert props["Runtime"] == "python3.12", key
        assert props["Handler"] == handler, key
        assert f"{handler.rsplit('.', 1)[0]}.py" in package.files, f"{key}: handler module missing from the zip"

    # THEN a replay can run 5 minutes; the alert has its minute
    replay, alert = package.function("dlqReplay"), package.function("dlqAlert")
    assert (replay["Timeout"], replay["MemorySize"]) == (300, 256)
    # AND no concurrency is reserved unless asked for (--param="replayReservedConcurrency=1"): accounts with
    # a Lambda concurrency quota of 10 or 50 refuse any reservation
    assert "ReservedConcurrentExecutions" not in replay
    assert alert["Timeout"] == 60


def test_each_function_gets_the_topology_and_the_queue_prefix(package):
    # GIVEN the packaged service  WHEN the functions' environments are read
    for key in FUNCTIONS:
        variables = package.function(key)["Environment"]["Variables"]
        # THEN the topology path resolves to the packaged queues.yml (task root), and the prefix is the stage's
        assert variables["QUEUE_TOPOLOGY"] == "queues.yml", key
        assert "queues.yml" in package.files
        assert variables["SQS_QUEUE_PREFIX"] == PREFIX, key
    # THEN the alert publishes to the notification topic of this stack, naming the replay function of this stage
    alert = package.function("dlqAlert")["Environment"]["Variables"]
    assert alert["ALERT_TOPIC_ARN"] == {"Ref": "DlqNotifyTopic"}
    assert f"{alert['DEPLOYED_SERVICE']}-dlqReplay" == package.function("dlqReplay")["FunctionName"]


def test_replay_role_reads_exactly_the_dlqs_and_sends_only_to_the_source_queues(package, queue_names):
    # GIVEN the topology's DLQs and source queues (with the prefix the function gets)
    dlqs, sources = queue_names["dlq"], queue_names["source"]

    # WHEN the replay function's role is read
    grants = _grants(_statements(package.role_of("dlqReplay")))

    # THEN it may take messages out of every DLQ and of nothing else
    for action in ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility"):
        assert grants[action] == dlqs, action
    # THEN it may send to every source queue and to nothing else (never back into a DLQ)
    assert grants["sqs:SendMessage"] == sources
    assert grants["sqs:GetQueueUrl"] == grants["sqs:GetQueueAttributes"] == dlqs | sources
    # THEN it has no other action
    assert set(grants) == {
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sqs:ChangeMessageVisibility",
        "sqs:GetQueueAttributes",
        "sqs:GetQueueUrl",
        "sqs:SendMessage",
    }


def test_alert_role_only_peeks_at_the_dlqs_and_publishes_to_its_topic(package, queue_names):
    # GIVEN the topology's DLQs  WHEN the alert function's role is read
    grants = _grants(_statements(package.role_of("dlqAlert")))

    # THEN it reads the DLQs (and makes messages visible again) but can neither delete nor send
    for action in ("sqs:ReceiveMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes", "sqs:GetQueueUrl"):
        assert grants[action] == queue_names["dlq"], action
    # THEN it publishes to the notification topic only
    assert grants["sns:Publish"] == {json.dumps({"Ref": "DlqNotifyTopic"})}
    assert set(grants) == {
        "sqs:ReceiveMessage",
        "sqs:ChangeMessageVisibility",
        "sqs:GetQueueAttributes",
        "sqs:GetQueueUrl",
        "sns:Publish",
    }


def test_no_policy_has_a_wildcard_on_sqs_or_sns(package):
    # GIVEN every policy statement in the template (roles, inline and resource policies)
    # WHEN those granting SQS or SNS actions are scanned
    checked, wildcards = _wildcards(package.template)

    # THEN none has a `*` in an action or a resource (and the scan did see the two roles' statements)
    assert checked >= 4
    assert wildcards == []


def test_the_wildcard_scan_catches_wildcards():
    # GIVEN statements with a wildcard action, a wildcard resource, a NotResource and a NotAction
    template = {
        "Resources": {
            "R": {
                "Properties": {
                    "PolicyDocument": {
                        "Statement": [
                            {"Effect": "Allow", "Action": "sqs:*", "Resource": "arn:aws:sqs:eu-west-1:1:q"},
                            {"Effect": "Allow", "Action": ["sns:Publish"], "Resource": {"Fn::Sub": "arn:*"}},
                            {"Effect": "Allow", "Action": "SQS:SendMessage", "NotResource": "arn:aws:sqs:::q"},
                            {"Effect": "Allow", "NotAction": "s3:GetObject", "Resource": "arn:aws:s3:::b/k"},
                            {"Effect": "Allow", "Action": "s3:*", "Resource": "*"},
                        ]
                    }
                }
            }
        }
    }
    # WHEN scanned
    checked, wildcards = _wildcards(template)
    # THEN each SQS/SNS one is reported, the S3 one is not this scan's business
    assert checked == 4
    assert len(wildcards) == 4


def test_alert_subscribes_to_the_dlq_alarm_topic_that_infra_exports(package):
    # GIVEN the packaged service  WHEN the SNS subscriptions and permissions of dlqAlert are read
    alarm_topic = {"Fn::ImportValue": f"celery-sqs-{STAGE}-DlqAlarmTopicArn"}
    endpoint = {"Fn::GetAtt": ["DlqAlertLambdaFunction", "Arn"]}
    subscriptions = [
        s["Properties"]
        for s in package.of_type("AWS::SNS::Subscription").values()
        if s["Properties"]["Protocol"] == "lambda"
    ]

    # THEN its only SNS trigger is the alarm topic imported by name, and SNS may invoke it from that topic
    assert subscriptions == [{"TopicArn": alarm_topic, "Protocol": "lambda", "Endpoint": endpoint}]
    permissions = [p["Properties"] for p in package.of_type("AWS::Lambda::Permission").values()]
    assert {"Principal": "sns.amazonaws.com", "SourceArn": alarm_topic}.items() <= next(
        p for p in permissions if p["Principal"] == "sns.amazonaws.com"
    ).items()

    # THEN the hourly summary exists but is off unless asked for
    rules = [r["Properties"] for r in package.of_type("AWS::Events::Rule").values()]
    assert [(r["ScheduleExpression"], r["State"], r["Targets"][0]["Arn"]) for r in rules] == [
        ("rate(1 hour)", "DISABLED", endpoint)
    ]


def test_the_email_subscription_exists_only_when_an_address_is_given(package):
    # GIVEN the package built without ALERT_EMAIL  WHEN the notification topic's subscriptions are read
    email = [s for s in package.of_type("AWS::SNS::Subscription").values() if s["Properties"]["Protocol"] == "email"]

    # THEN the e-mail subscription is conditional on a non-empty AlertEmail, which defaults to empty
    assert len(email) == 1 and email[0]["Condition"] == "HasAlertEmail"
    assert package.template["Parameters"]["AlertEmail"]["Default"] == ""
    assert package.template["Conditions"]["HasAlertEmail"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "AlertEmail"}, ""]}]}


def test_the_zip_holds_the_lambda_code_and_topology_and_nothing_of_the_app(package):
    # GIVEN the package zip  WHEN its entries are listed
    names = set(package.files)

    # THEN it has the handlers, the core package whole (topology, envelope, DLQ code), and the topology itself
    core = {p.relative_to(REPO_ROOT).as_posix() for p in (REPO_ROOT / "core").rglob("*.py")}
    for required in ("lambdas/dlq_replay/handler.py", "lambdas/dlq_alert/handler.py", "queues.yml", *core):
        assert required in names, required
    assert "core/topology.py" in core and "core/dlq/replay.py" in core
    # THEN none of the web app, the workers, tests, local stack, virtualenv or node modules
    for forbidden in ("api/", "workers/", "tests/", "devstack/", "infra/", ".venv/", "node_modules/", ".serverless/"):
        assert not [n for n in names if n.startswith(forbidden)], forbidden


def test_the_compiled_dependencies_match_the_lambda_architecture(package):
    # GIVEN the functions' architecture  WHEN the zip's compiled extensions are listed
    architectures = {tuple(package.function(key)["Architectures"]) for key in FUNCTIONS}
    extensions = [n for n in package.files if n.endswith(".so")]

    # THEN there are some (pydantic-core, PyYAML) and every one is CPython 3.12 for that architecture
    assert architectures == {("arm64",)}
    assert any(n.startswith("pydantic_core/") for n in extensions)
    assert all(n.endswith(".cpython-312-aarch64-linux-gnu.so") for n in extensions), extensions


def _imports(source: bytes, module: str) -> set[tuple[str, str | None]]:
    """(module, name) for each `from module import name`, (module, None) for `import module`; relative
    imports resolved, `if TYPE_CHECKING:` blocks skipped."""
    found: set[tuple[str, str | None]] = set()
    package = module.rsplit(".", 1)[0] if "." in module else ""

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return
        if isinstance(node, ast.Import):
            found.update((alias.name, None) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}".strip(".")
            found.update((base, alias.name) for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(source))
    return found


def test_the_zip_has_every_module_the_lambda_code_imports(package):
    # GIVEN the project's modules in the zip (lambdas/, core/)
    modules = {
        n.removesuffix(".py").removesuffix("/__init__").replace("/", "."): content
        for n, content in package.files.items()
        if n.endswith(".py")
    }
    ours = {m: source for m, source in modules.items() if m.split(".")[0] in ("lambdas", "core")}
    top_level = {n.split("/")[0].removesuffix(".py") for n in package.files}

    # WHEN every import they make is resolved against the zip, the stdlib and the Lambda runtime
    missing = set()
    for module, source in ours.items():
        for imported, name in _imports(source, module):
            root = imported.split(".")[0]
            if root in ("lambdas", "core"):
                # `from pkg import name`: a submodule in the zip, or a name the module defines
                ok = imported in modules and (
                    name is None
                    or f"{imported}.{name}" in modules
                    or name == "*"
                    or re.search(rf"\b{re.escape(name)}\b", modules[imported].decode()) is not None
                )
            else:
                ok = root in sys.stdlib_module_names or root in RUNTIME_PROVIDED or root in top_level
            if not ok:
                missing.add(f"{imported}{f' ({name})' if name else ''} imported by {module}")

    # THEN nothing is missing: the Lambda would fail at import time otherwise
    assert ours
    assert sorted(missing) == []
