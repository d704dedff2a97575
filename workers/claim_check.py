"""The claim check: a task body too large for its queue's SQS message goes to S3, and the message carries a pointer."""

from __future__ import annotations

import base64
import hashlib
import logging
import queue as queue_module
import threading
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from core.claim_check_bucket import BUCKET_ENV_VAR
from core.envelope import CLAIM_CHECK_HEADER
from workers.publish_guards import PayloadTooLarge

logger = logging.getLogger(__name__)

# The header that carries the pointer. kombu's envelope (task name, id, retries, eta...) stays in the SQS message,
# so the DLQ replay and alert read it without S3; only the envelope's `body` (args, kwargs) moves.
HEADER = CLAIM_CHECK_HEADER
# The SQS message's body while the real one is in S3: not JSON, so a consumer that does not fetch (an old worker)
# fails to decode it and rejects it into the DLQ, never runs a task without its arguments.
_PLACEHOLDER = "claim check: the task body is in S3 ({bucket}/{key})"
_PLACEHOLDER_PREFIX = b"claim check: the task body is in S3"


class ClaimCheckUnavailable(RuntimeError):
    """The body a pointer names cannot be read back (missing, unreadable, or not what was stored)."""


@dataclass(frozen=True)
class Pointer:
    """Where a task body is: the S3 object, and its size and SHA-256 to check it on the way back."""

    bucket: str
    key: str
    size: int
    sha256: str

    def as_header(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_headers(cls, headers: dict[str, Any] | None) -> Pointer | None:
        """The pointer in a message's headers; None without one; ClaimCheckUnavailable when it is malformed."""
        value = (headers or {}).get(HEADER)
        if value is None:
            return None
        try:
            pointer = cls(bucket=value["bucket"], key=value["key"], size=value["size"], sha256=value["sha256"])
        except (TypeError, KeyError) as exc:
            raise ClaimCheckUnavailable(f"malformed {HEADER} header {value!r}") from exc
        if not (isinstance(pointer.bucket, str) and isinstance(pointer.key, str) and isinstance(pointer.size, int)):
            raise ClaimCheckUnavailable(f"malformed {HEADER} header {value!r}")
        return pointer


def encoded_body_bytes(message: dict[str, Any]) -> bytes:
    """The task body of a kombu message dict as bytes (kombu's virtual channel base64-encodes it)."""
    body = message.get("body", "")
    if message.get("properties", {}).get("body_encoding") == "base64":
        return base64.b64decode(body)
    return body.encode("utf-8") if isinstance(body, str) else body


class S3Bodies:
    """Put, get and delete task bodies in one bucket. The boto3 client is made on first use, in the process that
    uses it (a prefork child publishing a sub-task gets its own)."""

    def __init__(self, bucket: str, *, endpoint_url: str | None = None, region: str | None = None, client=None):
        self.bucket, self.endpoint_url, self.region = bucket, endpoint_url, region
        self._client = client

    @property
    def client(self):
        if self._client is None:
            import boto3
            from botocore.config import Config

            # An emulator on 127.0.0.1 has no bucket subdomains: path-style addressing there.
            config = Config(s3={"addressing_style": "path"}) if self.endpoint_url else None
            self._client = boto3.client("s3", endpoint_url=self.endpoint_url, region_name=self.region, config=config)
        return self._client

    def put(self, key: str, data: bytes, *, content_type: str) -> None:
        self.client.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=content_type)

    def get(self, pointer: Pointer) -> bytes:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return self.client.get_object(Bucket=pointer.bucket, Key=pointer.key)["Body"].read()
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "?")
            raise ClaimCheckUnavailable(f"GetObject s3://{pointer.bucket}/{pointer.key} failed: {code}") from exc
        except BotoCoreError as exc:
            raise ClaimCheckUnavailable(f"GetObject s3://{pointer.bucket}/{pointer.key} failed: {exc}") from exc

    def delete(self, pointer: Pointer) -> None:
        self.client.delete_object(Bucket=pointer.bucket, Key=pointer.key)


def check_in(message: dict[str, Any], *, queue: str, bodies: S3Bodies, ceiling: int) -> Pointer:
    """Move a kombu message's body to S3 and leave a pointer in its headers; refuse a body over `ceiling`."""
    data = encoded_body_bytes(message)
    if len(data) > ceiling:
        raise PayloadTooLarge(
            f"refused to publish to queue {queue!r}: the task body is {len(data)} bytes, over the queue's "
            f"claim_check_max_bytes of {ceiling} bytes; store large data elsewhere and pass a reference"
        )
    headers = message.setdefault("headers", {})
    task_id = str(headers.get("id") or "no-id")
    key = f"{queue}/{datetime.now(UTC):%Y-%m-%d}/{task_id}/{uuid.uuid4().hex}"
    pointer = Pointer(bucket=bodies.bucket, key=key, size=len(data), sha256=hashlib.sha256(data).hexdigest())
    bodies.put(key, data, content_type=message.get("content-type") or "application/octet-stream")
    headers[HEADER] = pointer.as_header()
    placeholder = _PLACEHOLDER.format(bucket=pointer.bucket, key=pointer.key).encode("utf-8")
    message["body"] = base64.b64encode(placeholder).decode("ascii")
    message.setdefault("properties", {})["body_encoding"] = "base64"
    return pointer


def drop_stale_pointer(message: dict[str, Any]) -> None:
    """Remove a pointer the message does not stand for: Celery copies a task's custom headers into its retry
    (Request.as_execution_options), so a retry carries its original's pointer while its body is its own. A message
    whose body is still the placeholder (re-sent as received) keeps it."""
    headers = message.get("headers") or {}
    if HEADER in headers and not encoded_body_bytes(message).startswith(_PLACEHOLDER_PREFIX):
        del headers[HEADER]


def check_out(payload: dict[str, Any], *, bodies: S3Bodies | None) -> Pointer | None:
    """Put a received kombu payload's body back from S3 (in place); its pointer, or None if it had none.
    ClaimCheckUnavailable when the object is missing, unreadable, or differs from what was stored."""
    pointer = Pointer.from_headers(payload.get("headers"))
    if pointer is None:
        return None
    if bodies is None:
        raise ClaimCheckUnavailable(f"this process has no claim-check bucket ({BUCKET_ENV_VAR} is unset)")
    data = bodies.get(pointer)
    if len(data) != pointer.size or hashlib.sha256(data).hexdigest() != pointer.sha256:
        raise ClaimCheckUnavailable(
            f"s3://{pointer.bucket}/{pointer.key} is {len(data)} bytes with another SHA-256 than the "
            f"{pointer.size} bytes the message was published with"
        )
    payload["body"] = base64.b64encode(data).decode("ascii")
    payload.setdefault("properties", {})["body_encoding"] = "base64"
    return pointer


def mark_unavailable(payload: dict[str, Any], reason: str) -> None:
    """Leave a body Celery cannot decode, so the worker rejects the message (workers/consumer.py) and the
    redrive policy moves it to the DLQ after maxReceiveCount receives: never run without its arguments."""
    payload["body"] = base64.b64encode(f"claim check unavailable: {reason}".encode()).decode("ascii")
    payload.setdefault("properties", {})["body_encoding"] = "base64"


class BackgroundDeletes:
    """Deletes objects from a thread of its own, in order: an ack never waits for S3 (the worker's event loop
    would stall for the round trip). A failed delete is logged; the bucket's lifecycle rule removes the object."""

    def __init__(self, bodies: S3Bodies):
        self.bodies = bodies
        self._pending: queue_module.Queue[Pointer | None] = queue_module.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def add(self, pointer: Pointer) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="claim-check-deletes", daemon=True)
                self._thread.start()
        self._pending.put(pointer)

    def _run(self) -> None:
        while (pointer := self._pending.get()) is not None:
            try:
                self.bodies.delete(pointer)
            except Exception as exc:  # noqa: BLE001 (any failure: the lifecycle rule is the backstop)
                logger.warning(
                    "claim check: could not delete s3://%s/%s (%s); the bucket's lifecycle rule will",
                    pointer.bucket,
                    pointer.key,
                    exc,
                )

    def close(self, timeout: float = 5.0) -> None:
        """Finish the deletes already asked for (a worker stopping), for at most `timeout` seconds."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._pending.put(None)
            thread.join(timeout)


@dataclass(frozen=True)
class ClaimCheckOptions:
    """The transport option: the bucket, where S3 is, and each claim-check queue's ceiling in bytes."""

    bucket: str | None
    endpoint_url: str | None
    region: str | None
    ceilings: dict[str, int]

    def as_option(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_option(cls, value: dict[str, Any] | None) -> ClaimCheckOptions:
        value = value or {}
        return cls(
            bucket=value.get("bucket"),
            endpoint_url=value.get("endpoint_url"),
            region=value.get("region"),
            ceilings=dict(value.get("ceilings") or {}),
        )


class ClaimChecks:
    """What the SQS channel calls: check_in on publish, check_out on receive, acked on ack."""

    def __init__(self, options: ClaimCheckOptions, bodies: S3Bodies | None = None):
        self.options = options
        if bodies is None and options.bucket:
            bodies = S3Bodies(options.bucket, endpoint_url=options.endpoint_url, region=options.region)
        self.bodies = bodies
        self._deletes = BackgroundDeletes(bodies) if bodies is not None else None

    def ceiling(self, queue: str) -> int:
        return self.options.ceilings.get(queue, 0)

    def check_in(self, queue: str, message: dict[str, Any]) -> Pointer:
        if self.bodies is None:
            raise PayloadTooLarge(
                f"refused to publish to queue {queue!r}: the message is over the queue's max_message_bytes and its "
                f"claim check has no bucket ({BUCKET_ENV_VAR} is unset)"
            )
        return check_in(message, queue=queue, bodies=self.bodies, ceiling=self.ceiling(queue))

    def check_out(self, payload: dict[str, Any], queue: str) -> None:
        """Fetch a received message's body; when it cannot be, log an ERROR naming the task, its id and the key,
        and leave a body the worker rejects (to the DLQ, by the redrive policy)."""
        try:
            check_out(payload, bodies=self.bodies)
        except ClaimCheckUnavailable as exc:
            headers = payload.get("headers") or {}
            logger.error(
                "claim check: cannot read the body of task %s id %s from queue %s (key %s): %s; rejected, the "
                "queue's redrive policy moves it to the DLQ",
                headers.get("task"),
                headers.get("id"),
                queue,
                (headers.get(HEADER) or {}).get("key") if isinstance(headers.get(HEADER), dict) else None,
                exc,
            )
            mark_unavailable(payload, str(exc))

    def acked(self, headers: dict[str, Any] | None) -> None:
        """The message is done (deleted from SQS): delete its body from S3, off the caller's thread."""
        try:
            pointer = Pointer.from_headers(headers)
        except ClaimCheckUnavailable:
            return
        if pointer is not None and self._deletes is not None:
            self._deletes.add(pointer)

    def close(self) -> None:
        if self._deletes is not None:
            self._deletes.close()
