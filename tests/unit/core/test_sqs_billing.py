"""Unit tests of core/sqs_billing.py: what SQS bills for one call."""

from __future__ import annotations

import pytest

from core.sqs_billing import SQS_BILLING_CHUNK_BYTES, billed_requests


@pytest.mark.parametrize(
    ("payload", "requests"),
    [(0, 1), (1, 1), (65_536, 1), (65_537, 2), (262_144, 4), (600_000, 10), (1_048_576, 16)],
)
def test_sqs_bills_one_request_per_started_64_kib_chunk(payload, requests):
    # GIVEN a call carrying `payload` bytes WHEN billed THEN one request per 64 KiB chunk, at least one
    assert SQS_BILLING_CHUNK_BYTES == 65_536
    assert billed_requests(payload) == requests
