"""What SQS bills for one call: a request per started 64 KiB chunk of its payload."""

from __future__ import annotations

import math

# SQS bills each 64 KiB chunk of a request's payload as one request (a 256 KiB message: 4 requests).
SQS_BILLING_CHUNK_BYTES = 65_536


def billed_requests(payload_bytes: int) -> int:
    """The requests SQS bills for one call carrying `payload_bytes`: one per started 64 KiB chunk, at least one."""
    return max(1, math.ceil(payload_bytes / SQS_BILLING_CHUNK_BYTES))
