"""Least privilege: each task role gets exactly the SQS actions its process needs on exactly its queues;
only the execution role reads the secrets; no wildcard anywhere on SQS, Secrets Manager or SSM; a wildcard
resource only for CloudWatch GetMetricData (it has no resource-level permissions), and for the api alone."""

from __future__ import annotations

import json
from typing import Any

from tests.infra.conftest import PREFIX, actions, env_of, resources

GUARDED_SERVICES = ("sqs:", "secretsmanager:", "ssm:")
POLICY_DOCUMENTS = {  # resource type -> where its policy documents are
    "AWS::IAM::Policy": lambda p: [p["PolicyDocument"]],
    "AWS::IAM::ManagedPolicy": lambda p: [p["PolicyDocument"]],
    "AWS::IAM::Role": lambda p: [p["AssumeRolePolicyDocument"], *(x["PolicyDocument"] for x in p.get("Policies", []))],
    "AWS::SQS::QueuePolicy": lambda p: [p["PolicyDocument"]],
    "AWS::SNS::TopicPolicy": lambda p: [p["PolicyDocument"]],
    "AWS::SecretsManager::ResourcePolicy": lambda p: [p["ResourcePolicy"]],
}


def _sqs_statements(statements: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [s for s in statements if any(a.startswith("sqs:") for a in actions(s))]


def _without_claim_check(statements: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The statements besides the claim-check bucket's (tests/infra/test_claim_check_bucket.py checks those)."""
    return [s for s in statements if not all(a.startswith("s3:") for a in actions(s))]


def _queue_names(synthesized, statement: dict[str, Any]) -> list[str]:
    return sorted(synthesized.queue_name_of(r) for r in resources(statement))


def _task_role_running(synthesized, command: list[str], worker_queues: str | None = None) -> str:
    [task_id] = [
        t
        for t in synthesized.task_definitions_running(command)
        if worker_queues is None or env_of(synthesized.containers()[t])["WORKER_QUEUES"] == worker_queues
    ]
    return synthesized.role_id(synthesized.props(task_id)["TaskRoleArn"])


def test_beat_may_only_publish_to_the_task_queues(synthesized, topology):
    from infra.permissions import PUBLISH_ACTIONS

    # GIVEN the task role of beat
    role_id = _task_role_running(synthesized, ["bin/start-beat"])

    # WHEN its SQS statements are read
    statements = _without_claim_check(synthesized.statements_of_role(role_id))
    [publish] = _sqs_statements(statements)

    # THEN it may send and read attributes / URLs (kombu declares on first publish), nothing else
    assert sorted(actions(publish)) == sorted(PUBLISH_ACTIONS)
    # AND on every task queue, no DLQ
    assert _queue_names(synthesized, publish) == sorted(PREFIX + q.name for q in topology.queues.values())
    # AND nothing else at all: no Secrets Manager, SSM or other statements
    assert statements == [publish]


def test_api_publishes_replays_the_dlqs_and_reads_queue_metrics_only(synthesized, topology):
    from infra.permissions import METRICS_ACTIONS, PUBLISH_ACTIONS, REPLAY_DLQ_ACTIONS

    # GIVEN the task role of the api
    role_id = _task_role_running(synthesized, ["bin/start-api"])

    # WHEN its statements are split by actions
    statements = _without_claim_check(synthesized.statements_of_role(role_id))
    by_actions = {tuple(sorted(actions(s))): s for s in statements}

    # THEN it may publish to every task queue (jobs; a replay sends back to the queue)
    publish = by_actions.pop(tuple(sorted(PUBLISH_ACTIONS)))
    assert _queue_names(synthesized, publish) == sorted(PREFIX + q.name for q in topology.queues.values())
    # AND, for the queues page's replay, do on every DLQ what the replay Lambda does there
    replay = by_actions.pop(tuple(sorted(REPLAY_DLQ_ACTIONS)))
    assert _queue_names(synthesized, replay) == sorted(PREFIX + q.dlq for q in topology.queues.values())
    # AND read CloudWatch metrics, the one action on "*" (GetMetricData has no resource-level permissions)
    metrics = by_actions.pop(tuple(METRICS_ACTIONS))
    assert resources(metrics) == ["*"]
    # AND nothing else: no Secrets Manager, SSM or other statements
    assert by_actions == {}
    assert len(statements) == 3


def test_each_worker_consumes_only_its_own_queues_and_publishes_to_the_task_queues(synthesized, topology):
    from infra.permissions import CONSUME_ACTIONS, PUBLISH_ACTIONS

    for group in topology.worker_groups.values():
        # GIVEN the task role of the group's worker service
        role_id = _task_role_running(synthesized, ["bin/start-worker"], ",".join(group.queues))

        # WHEN its SQS statements are split into consuming and publishing
        statements = _without_claim_check(synthesized.statements_of_role(role_id))
        by_actions = {tuple(sorted(actions(s))): s for s in _sqs_statements(statements)}

        # THEN it receives, deletes, changes visibility and reads attributes on its own queues only
        consume = by_actions.pop(tuple(sorted(CONSUME_ACTIONS)))
        assert _queue_names(synthesized, consume) == sorted(PREFIX + topology.queue(k).name for k in group.queues)
        # AND it may publish (tasks, retries) to every task queue
        publish = by_actions.pop(tuple(sorted(PUBLISH_ACTIONS)))
        assert _queue_names(synthesized, publish) == sorted(PREFIX + q.name for q in topology.queues.values())
        # AND nothing else (but task protection: tests/infra/test_task_protection_iam.py)
        assert by_actions == {}
        assert len(statements) == 3


def test_no_role_but_the_apis_touches_a_dlq(synthesized, topology):
    # GIVEN the DLQs' logical ids (the Lambdas of serverless.yml and the api's queues page may use them)
    ids = synthesized.queue_ids_by_name()
    dlq_ids = {ids[PREFIX + q.dlq] for q in topology.queues.values()}
    api_role = _task_role_running(synthesized, ["bin/start-api"])

    # WHEN every identity policy except the api role's is scanned
    identity_policies = json.dumps(
        [
            r
            for r in synthesized.resources.values()
            if r["Type"] in ("AWS::IAM::Policy", "AWS::IAM::Role") and api_role not in json.dumps(r)
        ]
    )

    # THEN no DLQ appears in any of them
    assert not [d for d in dlq_ids if d in identity_policies]


def test_the_only_wildcard_resources_are_actions_without_resource_level_permissions(synthesized):
    from infra.permissions import METRICS_ACTIONS

    # GIVEN every Allow statement of every policy document
    wildcards = [
        statement
        for _, document in _policy_documents(synthesized.template)
        for statement in document["Statement"]
        if statement["Effect"] == "Allow"
        and ("*" in actions(statement) or "*" in [r for r in resources(statement) if isinstance(r, str)])
    ]

    # WHEN those on a "*" resource (or with a "*" action) are listed
    # THEN there are two, neither with a "*" action: the api's GetMetricData, and the ECR login token CDK
    # grants the execution role (neither action can be limited to a resource)
    assert sorted(actions(s) for s in wildcards) == [list(METRICS_ACTIONS), ["ecr:GetAuthorizationToken"]]
    [metrics] = [s for s in wildcards if actions(s) == list(METRICS_ACTIONS)]
    assert metrics in synthesized.statements_of_role(_task_role_running(synthesized, ["bin/start-api"]))


def test_only_the_execution_role_reads_the_secrets_and_only_those(synthesized):
    # GIVEN the secrets (the database's read through its attachment to the instance) and the (shared)
    # execution role of the task definitions
    attached = {
        res["Properties"]["SecretId"]["Ref"]: key
        for key, res in synthesized.of_type("AWS::SecretsManager::SecretTargetAttachment").items()
    }
    secret_refs = [{"Ref": attached.get(s, s)} for s in synthesized.of_type("AWS::SecretsManager::Secret")]
    execution_roles = {
        synthesized.role_id(t["Properties"]["ExecutionRoleArn"])
        for t in synthesized.of_type("AWS::ECS::TaskDefinition").values()
    }
    task_roles = {
        synthesized.role_id(t["Properties"]["TaskRoleArn"])
        for t in synthesized.of_type("AWS::ECS::TaskDefinition").values()
    }

    for role_id in execution_roles:
        # WHEN its Secrets Manager statements are read
        statements = [
            s
            for s in synthesized.statements_of_role(role_id)
            if any(a.startswith("secretsmanager:") for a in actions(s))
        ]

        # THEN it may get exactly the secrets' values
        assert statements
        assert all("secretsmanager:GetSecretValue" in actions(s) for s in statements)
        assert sorted(json.dumps(r) for s in statements for r in resources(s)) == sorted(
            json.dumps(r) for r in secret_refs
        )
    # AND no task role can read a secret
    for role_id in task_roles - execution_roles:
        assert "secretsmanager:" not in json.dumps(synthesized.statements_of_role(role_id))


def _policy_documents(template: dict[str, Any]):
    for logical_id, resource in template["Resources"].items():
        documents = POLICY_DOCUMENTS.get(resource["Type"])
        if documents:
            for document in documents(resource["Properties"]):
                yield logical_id, document


def test_no_policy_grants_a_wildcard_on_sqs_secrets_manager_or_ssm(synthesized):
    # GIVEN every policy document of the template (identity and resource policies)
    problems = []
    for logical_id, document in _policy_documents(synthesized.template):
        for statement in document["Statement"]:
            # Deny statements only take away (the queues' TLS-only policy denies sqs:* without TLS).
            if statement["Effect"] != "Allow":
                continue
            acts = actions(statement)
            guarded = [a for a in acts if a == "*" or a.lower().startswith(GUARDED_SERVICES)]
            if not guarded:
                continue
            # WHEN such an Allow statement is inspected
            # THEN no action has a wildcard, and no resource is or contains one
            if "NotAction" in statement or "NotResource" in statement:
                problems.append((logical_id, "NotAction/NotResource", statement))
            if [a for a in guarded if "*" in a]:
                problems.append((logical_id, "wildcard action", statement))
            if [r for r in resources(statement) if "*" in json.dumps(r)]:
                problems.append((logical_id, "wildcard resource", statement))
    assert problems == []


def test_the_wildcard_scan_sees_every_allow_statement_of_the_app_roles(synthesized):
    # GIVEN the scan above: it must not pass because it found nothing to look at
    # WHEN the guarded Allow statements of the template are counted
    guarded = [
        s
        for _, document in _policy_documents(synthesized.template)
        for s in document["Statement"]
        if s["Effect"] == "Allow" and any(a.lower().startswith(GUARDED_SERVICES) for a in actions(s))
    ]

    # THEN there is at least one per task role statement (publish / consume) and the secrets' one
    assert len(guarded) >= 2 + 2 * 2 + 1
