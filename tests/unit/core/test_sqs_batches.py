"""Unit tests of core/sqs_batches.py's batch cutting: SendMessageBatch takes at most 10 entries and 1 MiB in all."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.sqs_batches import SQS_BATCH, SQS_BATCH_MAX_BYTES, batches_within

KIB = 1024


@given(st.lists(st.integers(min_value=0, max_value=SQS_BATCH_MAX_BYTES), max_size=60))
def test_batches_keep_order_and_stay_within_ten_entries_and_1_mib(sizes):
    # GIVEN messages of any size SQS accepts (up to 1 MiB each)
    # WHEN they are cut into batches
    batches = list(batches_within(sizes, size_of=lambda size: size))
    # THEN every message is in exactly one batch, in order
    assert [size for batch in batches for size in batch] == sizes
    # AND each batch has 1 to 10 entries and at most 1 MiB in all
    for batch in batches:
        assert 1 <= len(batch) <= SQS_BATCH
        assert sum(batch) <= SQS_BATCH_MAX_BYTES
    # AND a batch closes only when the next message would not fit (as few SendMessageBatch calls as greedy allows)
    for batch, following in zip(batches, batches[1:], strict=False):
        assert len(batch) == SQS_BATCH or sum(batch) + following[0] > SQS_BATCH_MAX_BYTES


@pytest.mark.parametrize(
    ("sizes", "expected"),
    [
        ([400 * KIB] * 10, [2] * 5),  # two 400 KiB messages fit, three do not
        ([1 * KIB] * 25, [10, 10, 5]),  # small ones: ten at a time
        ([1024 * KIB, 1, 1024 * KIB], [1, 1, 1]),  # a full 1 MiB message goes alone
        ([600 * KIB, 400 * KIB, 100 * KIB], [2, 1]),
        ([], []),
    ],
)
def test_examples(sizes, expected):
    assert [len(batch) for batch in batches_within(sizes, size_of=lambda size: size)] == expected
