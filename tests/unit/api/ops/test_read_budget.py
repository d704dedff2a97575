"""A hung SQS or CloudWatch endpoint must not hang the page: the AWS reads get a time budget, one read at a time."""

from __future__ import annotations

import threading
import time

import pytest

from api.ops import read_budget
from api.ops.read_budget import ReadTimeout, within

PAGE, DATA = "/ops/queues", "/ops/queues.json"


def test_a_read_that_answers_in_time_is_returned():
    # WHEN a quick read runs within a budget THEN its result comes back
    assert within(lambda: 42, seconds=5) == 42


def test_a_read_that_hangs_raises_after_the_budget_and_a_second_call_joins_it_instead_of_starting_another():
    # GIVEN a read that hangs until released
    release, started = threading.Event(), []

    def hung():
        started.append(time.monotonic())
        release.wait(10)
        return "late"

    try:
        # WHEN it is asked for with a 0.2 s budget, twice
        t0 = time.monotonic()
        with pytest.raises(ReadTimeout, match=r"did not answer within 0.2 s"):
            within(hung, seconds=0.2)
        with pytest.raises(ReadTimeout):
            within(hung, seconds=0.2)

        # THEN each call gave up after its budget, and only one read was started (no pile of hung threads)
        assert time.monotonic() - t0 < 2
        assert len(started) == 1
    finally:
        release.set()
    # AND once it answers, the next call gets that answer
    assert within(hung, seconds=5) == "late"


def test_an_error_in_the_read_reaches_the_caller():
    def broken():
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        within(broken, seconds=5)


def test_the_page_and_its_json_answer_in_time_when_sqs_hangs(staff_client, ops_world, monkeypatch, settings):
    # GIVEN SQS that does not answer (the numbers' read hangs) and budgets of 0.3 s
    release = threading.Event()
    monkeypatch.setattr("api.ops.services.queue_stats", lambda **kwargs: release.wait(10))
    monkeypatch.setattr("api.ops.views.FIRST_PAINT_SECONDS", 0.3)
    monkeypatch.setattr("api.ops.views.DATA_SECONDS", 0.3)

    try:
        # WHEN the page and its JSON are fetched
        page, data = staff_client.get(PAGE), staff_client.get(DATA)
    finally:
        release.set()
        read_budget._pending["queues"].result(timeout=10)  # the hung read ends before the next test reads

    # THEN the page renders and says the numbers did not come, the JSON is a 504 saying the same
    assert page.status_code == 200
    assert "could not read the numbers: SQS/CloudWatch did not answer within 0.3 s" in page.content.decode()
    assert data.status_code == 504 and "did not answer within 0.3 s" in data.json()["error"]
