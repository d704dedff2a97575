"""Unit tests of bench/counting_proxy.py's billing count: each 64 KiB chunk of a call's payload is one request."""

from __future__ import annotations

import pytest

from bench.counting_proxy import CountingProxy
from bench.requests import per_task


@pytest.fixture
def proxy():
    counting = CountingProxy("http://127.0.0.1:9")  # never started: _record is what is tested
    yield counting
    counting._server.server_close()  # never served: shutdown() would wait for a loop that never ran


def test_a_large_send_and_receive_are_billed_per_64_kib_chunk(proxy):
    # GIVEN a 100 KiB send, its receive answered with the message, and a small delete
    proxy._record("SendMessage", b"{}", b"x" * 100 * 1024)
    proxy._record("ReceiveMessage", b'{"Messages": [{"Body": "' + b"x" * 100 * 1024 + b'"}]}', b"{}")
    proxy._record("DeleteMessage", b"{}", b"{}")
    # WHEN counted THEN there were 3 calls, billed as 2 + 2 + 1
    counts = proxy.snapshot()
    assert (counts["SendMessage"], counts["ReceiveMessage"], counts["DeleteMessage"]) == (1, 1, 1)
    assert proxy.billed_requests() == 5
    # AND the $ figure follows the billed count, not the calls
    row = per_task(counts, 1, proxy.billed_requests())
    assert (row["total"], row["billed"], row["usd_per_million_tasks"]) == (3, 5, 2.0)
