"""Publish guards: a delay becomes SQS DelaySeconds (an ETA header for the rest past 900 s), a body too large for
its queue goes through S3 where the queue allows it, and anything still too large is refused before it is sent."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from core.envelope import header_time
from workers import claim_check
from workers.publish_guards import check_encoded_size, encoded_message_bytes, sqs_delay_seconds


def _eta_delay(eta: str | None, now: datetime) -> float:
    if not eta:
        return 0.0
    return (header_time(eta) - now).total_seconds()


def guard_publish(
    queue: str,
    message: dict,
    *,
    limits: dict,
    sqs_base64: bool,
    claim_checks: Callable[[], claim_check.ClaimChecks],
) -> None:
    """Rewrite `message` (kombu's message dict for `queue`) in place so SQS delivers it as meant, or raise
    DelayTooLong / PayloadTooLarge (workers/publish_guards.py) with nothing sent."""
    headers = message.get("headers") or {}
    properties = message.setdefault("properties", {})
    # Either spelling kombu accepts, and the ETA Celery writes for a countdown: the longest wins.
    requested = [float(properties[key]) for key in ("DelaySeconds", "delay_seconds") if properties.get(key) is not None]
    now = datetime.now(UTC)
    eta_delay = _eta_delay(headers.get("eta"), now)
    delay = max([*requested, eta_delay])
    seconds = sqs_delay_seconds(queue=queue, delay=delay, retention_seconds=limits["retention_seconds"])
    if seconds is not None:
        properties.pop("delay_seconds", None)
        properties["DelaySeconds"] = seconds
        if seconds >= delay:
            # SQS holds the message until it is due; the worker must not hold it again as an ETA.
            if headers.get("eta"):
                headers["eta"] = None
        elif eta_delay < delay:
            # Longer than SQS holds: an `eta` header tells the worker that receives it to hop it on
            # (workers/eta_hop.py); a countdown's ETA header already does.
            message["headers"] = {**headers, "eta": (now + timedelta(seconds=delay)).isoformat()}
    claim_check.drop_stale_pointer(message)  # a retry carries its original's pointer, not its body
    encoded = encoded_message_bytes(message, sqs_base64=sqs_base64)
    if encoded > limits["max_message_bytes"] and claim_checks().ceiling(queue):
        # The body goes to S3; the headers (task, id, retries...) stay in the message, with the pointer.
        claim_checks().check_in(queue, message)
        encoded = encoded_message_bytes(message, sqs_base64=sqs_base64)
    check_encoded_size(queue=queue, encoded_bytes=encoded, max_message_bytes=limits["max_message_bytes"])
