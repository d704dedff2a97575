"""The claim-check bucket: task bodies too large for their SQS message (workers/claim_check.py), and who may use it."""

from __future__ import annotations

import math

from aws_cdk import Duration
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from constructs import Construct

from core.claim_check_bucket import BUCKET_ENV_VAR
from core.topology import Topology

# serverless.yml's DLQ_MAX_REPLAYS: each replay sends the message again, pointer and all, and may leave it in
# the DLQ for another DLQ retention. The object must outlive them all.
REPLAYS_COVERED = 3
DAY = 86_400


def expiration_days(topology: Topology) -> int:
    """Days an object outlives its message: the longest DLQ retention, once per send (the first and each replay),
    plus a day. A worker deletes the object when its task succeeds; this rule removes the rest."""
    longest = max(q.dlq_retention_seconds for q in topology.queues.values() if q.claim_check_max_bytes)
    return math.ceil(longest / DAY) * (1 + REPLAYS_COVERED) + 1


class ClaimCheckBucket(Construct):
    """Private, SSE-S3 encrypted (no KMS key, so no kms:* anywhere), TLS only, objects expire by lifecycle.
    Object keys start with the Celery queue key (`<queue>/<date>/<task id>/<uuid>`), so each grant names its
    queues' prefixes."""

    def __init__(self, scope: Construct, construct_id: str, *, topology: Topology) -> None:
        super().__init__(scope, construct_id)
        self.queues = tuple(key for key, q in topology.queues.items() if q.claim_check_max_bytes)
        self.bucket = s3.Bucket(
            self,
            "Bucket",
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="expire-task-bodies",
                    expiration=Duration.days(expiration_days(topology)),
                    abort_incomplete_multipart_upload_after=Duration.days(1),
                )
            ],
        )

    def environment(self) -> dict[str, str]:
        """What every container reads (core/claim_check_bucket.py bucket_name())."""
        return {BUCKET_ENV_VAR: self.bucket.bucket_name}

    def _objects_of(self, queues: tuple[str, ...] | list[str]) -> list[str]:
        return [self.bucket.arn_for_objects(f"{key}/*") for key in queues if key in self.queues]

    def allow_put(self, role: iam.IRole) -> None:
        """A producer (api, beat, a worker publishing sub-tasks) stores bodies for any claim-check queue."""
        role.add_to_principal_policy(
            iam.PolicyStatement(sid="PutTaskBodies", actions=["s3:PutObject"], resources=self._objects_of(self.queues))
        )

    def allow_read_and_delete(self, role: iam.IRole, queues: tuple[str, ...] | list[str]) -> None:
        """A worker reads the bodies of its own queues' messages and deletes them once their task succeeded."""
        resources = self._objects_of(queues)
        if resources:
            role.add_to_principal_policy(
                iam.PolicyStatement(
                    sid="ReadAndDeleteTaskBodies", actions=["s3:GetObject", "s3:DeleteObject"], resources=resources
                )
            )
