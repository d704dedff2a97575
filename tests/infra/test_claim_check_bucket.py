"""The claim-check bucket: private, encrypted, TLS only, expiring after every DLQ retention a message can spend;
producers may only put, each worker group may only get and delete its own queues' bodies; every container is told
its name."""

from __future__ import annotations

from typing import Any

from tests.infra.conftest import actions, env_of, resources


def _bucket(synthesized) -> tuple[str, dict[str, Any]]:
    [(logical_id, bucket)] = synthesized.of_type("AWS::S3::Bucket").items()
    return logical_id, bucket["Properties"]


def _s3_statements(synthesized, role_id: str) -> list[dict[str, Any]]:
    return [s for s in synthesized.statements_of_role(role_id) if any(a.startswith("s3:") for a in actions(s))]


def _prefixes(statement: dict[str, Any]) -> list[str]:
    """The object-key patterns of a statement ({"Fn::Join": ["", [<bucket arn>, "/default/*"]]})."""
    return sorted(resource["Fn::Join"][1][-1] for resource in resources(statement))


def _role_running(synthesized, command: list[str], worker_queues: str | None = None) -> str:
    [task_id] = [
        t
        for t in synthesized.task_definitions_running(command)
        if worker_queues is None or env_of(synthesized.containers()[t])["WORKER_QUEUES"] == worker_queues
    ]
    return synthesized.role_id(synthesized.props(task_id)["TaskRoleArn"])


def test_the_bucket_is_private_encrypted_tls_only_and_expires_after_every_dlq_retention(synthesized, topology):
    from infra.claim_check import REPLAYS_COVERED, expiration_days

    # GIVEN the synthesized stack (queues.yml's `default` has a claim check)
    logical_id, bucket = _bucket(synthesized)

    # THEN it is encrypted at rest with S3-managed keys, closed to the public, owner-enforced
    [rule] = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    assert bucket["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    assert bucket["OwnershipControls"]["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}]
    # AND objects expire after the longest DLQ retention once per send (the first and each replay)
    [lifecycle] = bucket["LifecycleConfiguration"]["Rules"]
    longest_dlq_days = max(q.dlq_retention_seconds for q in topology.queues.values()) / 86_400
    assert lifecycle["ExpirationInDays"] == expiration_days(topology) > longest_dlq_days * (1 + REPLAYS_COVERED)
    assert lifecycle["Status"] == "Enabled"
    # AND its policy denies every request without TLS
    [policy] = [
        p["Properties"]["PolicyDocument"]
        for p in synthesized.of_type("AWS::S3::BucketPolicy").values()
        if p["Properties"]["Bucket"] == {"Ref": logical_id}
    ]
    [deny] = policy["Statement"]
    assert deny["Effect"] == "Deny" and deny["Action"] == "s3:*"
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_every_container_gets_the_bucket_name(synthesized):
    # GIVEN every task definition (api, worker groups, beat)
    logical_id, _ = _bucket(synthesized)
    # THEN each container's CLAIM_CHECK_BUCKET is the bucket
    for container in synthesized.containers().values():
        assert env_of(container)["CLAIM_CHECK_BUCKET"] == {"Ref": logical_id}


def test_api_and_beat_may_only_put_bodies(synthesized, topology):
    claim_checked = sorted(f"/{key}/*" for key, q in topology.queues.items() if q.claim_check_max_bytes)
    for command in (["bin/start-api"], ["bin/start-beat"]):
        # GIVEN the producer's task role
        role_id = _role_running(synthesized, command)
        # WHEN its S3 statements are read THEN it may PutObject under the claim-check queues' prefixes, nothing else
        [put] = _s3_statements(synthesized, role_id)
        assert actions(put) == ["s3:PutObject"]
        assert _prefixes(put) == claim_checked


def test_a_worker_group_puts_bodies_and_gets_and_deletes_only_its_own_queues_ones(synthesized, topology):
    for group in topology.worker_groups.values():
        # GIVEN a worker group's task role
        role_id = _role_running(synthesized, ["bin/start-worker"], ",".join(group.queues))
        statements = {s["Sid"]: s for s in _s3_statements(synthesized, role_id)}
        own = sorted(f"/{key}/*" for key in group.queues if topology.queues[key].claim_check_max_bytes)
        # THEN it may put (tasks publish tasks) ...
        assert actions(statements.pop("PutTaskBodies")) == ["s3:PutObject"]
        # AND get and delete its own claim-check queues' bodies only (none: no such statement)
        if own:
            read = statements.pop("ReadAndDeleteTaskBodies")
            assert sorted(actions(read)) == ["s3:DeleteObject", "s3:GetObject"]
            assert _prefixes(read) == own
        assert statements == {}
