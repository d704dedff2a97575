"""Decode kombu's SQS message body: base64 of a JSON envelope whose `body` is base64 of Celery's JSON."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

# A claim-checked message (workers/claim_check.py): its body is in S3, this header says where; the headers stay.
CLAIM_CHECK_HEADER = "x-claim-check"


class EnvelopeError(ValueError):
    """The SQS body is not a kombu/Celery envelope; the message says which layer failed."""


@dataclass(frozen=True)
class CeleryEnvelope:
    headers: dict[str, Any]  # task, id, retries, eta, expires, ...
    properties: dict[str, Any]
    body: Any  # Celery protocol 2: [args, kwargs, embed]; None when the body is in S3 (claim_check)
    raw: dict[str, Any]  # the kombu envelope as received (body still base64), for re-encoding

    @property
    def task_name(self) -> str | None:
        return self.headers.get("task")

    @property
    def task_id(self) -> str | None:
        return self.headers.get("id")

    @property
    def claim_check(self) -> dict[str, Any] | None:
        """Where the body is when it travels through S3 ({bucket, key, size, sha256}), else None."""
        return self.headers.get(CLAIM_CHECK_HEADER)


def header_time(value: str) -> datetime:
    """A Celery `eta`/`expires` header as an aware datetime. Celery writes aware ISO times; a naive one is
    UTC by its convention. Raises ValueError (or TypeError) for anything else."""
    when = datetime.fromisoformat(value)
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _b64json(data: str | bytes, layer: str) -> Any:
    try:
        return json.loads(base64.b64decode(data, validate=True))
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise EnvelopeError(f"{layer} is not base64-encoded JSON: {exc}") from exc


def decode_sqs_body(body: str) -> CeleryEnvelope:
    envelope = _b64json(body, "the SQS body")
    if not isinstance(envelope, dict) or not isinstance(envelope.get("headers"), dict) or "body" not in envelope:
        raise EnvelopeError("the SQS body is JSON but not a kombu envelope (no headers/body)")
    if envelope.get("content-type") != "application/json":
        raise EnvelopeError(f"content type {envelope.get('content-type')!r} is not application/json")
    claim_checked = CLAIM_CHECK_HEADER in envelope["headers"]
    return CeleryEnvelope(
        headers=envelope["headers"],
        properties=envelope.get("properties") or {},
        # A claim-checked body is in S3; the message holds a placeholder. Nothing here needs the arguments.
        body=None if claim_checked else _b64json(envelope["body"], "the envelope body"),
        raw=envelope,
    )


def encode_sqs_body(envelope: dict[str, Any]) -> str:
    """The SQS body kombu would send for this envelope (kombu's AsyncMessage().encode(dumps(...)))."""
    return base64.b64encode(json.dumps(envelope).encode("utf-8")).decode("ascii")
