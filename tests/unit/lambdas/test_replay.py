"""Unit tests of replay_dlq (core/dlq/replay.py) against moto's in-process SQS, with DLQs holding
real Celery envelopes published by the project's producer."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from core.dlq.replay import REPLAY_COUNT_HEADER, STOP_WHEN_SECONDS_LEFT, replay_dlq
from core.dlq.request import parse_replay_request
from core.envelope import decode_sqs_body
from tests.unit.lambdas.conftest import (
    FakeClock,
    FastSqs,
    PartialDeleteSqs,
    PartialSendSqs,
    RaisingSendSqs,
    task_id_of,
)


def _request(world, **payload):
    return parse_replay_request({"queue": "default", **payload}, world.topology)


def _replay(world, sqs=None, **kwargs):
    """replay_dlq with a FastSqs (no long poll) unless given another client, and a fake clock (no real sleep)."""
    request_fields = {k: kwargs.pop(k) for k in list(kwargs) if k not in {"max_replays", "clock", "sleep", "time_left"}}
    if "clock" not in kwargs:
        clock = FakeClock(time.time())
        kwargs.update(clock=clock, sleep=clock.sleep)
    return replay_dlq(
        _request(world, **request_fields), sqs=sqs or FastSqs(world.client), topology=world.topology, **kwargs
    )


def _outcomes(report) -> int:
    """Every received message lands in exactly one outcome (a real run)."""
    return report.moved + len(report.failed) + report.skipped + report.undecodable + len(report.over_limit)


# --- dry run -----------------------------------------------------------------------------------------


def test_dry_run_reports_and_moves_nothing(sqs_world):
    # GIVEN a DLQ with 3 jobs.fail and 2 jobs.echo messages
    sqs_world.dead_letter_many("jobs.fail", 3)
    sqs_world.dead_letter_many("jobs.echo", 2)
    # WHEN a dry run is made (the default)
    report = _replay(sqs_world)
    # THEN it reports what it would move, by task, and moves nothing
    assert report.dry_run is True
    assert (report.received, report.matched, report.moved) == (5, 5, 0)
    assert report.as_dict()["by_task"] == {"jobs.fail": 3, "jobs.echo": 2}
    assert report.stopped == "no more messages in the DLQ"
    assert sqs_world.source_counts() == (0, 0)
    # AND the messages are visible again at once: all 5 counted visible, and a receive right after gets them
    assert sqs_world.dlq_counts() == (5, 0)
    assert len(sqs_world.drain(sqs_world.dlq_urls["default"])) == 5


def test_dry_run_with_the_real_client_long_polls_once_at_the_end(sqs_world):
    # GIVEN one message in the DLQ and the plain boto3 client (moto waits out the long poll)
    sqs_world.dead_letter("jobs.fail")
    # WHEN a dry run is made
    report = replay_dlq(_request(sqs_world), sqs=sqs_world.client, topology=sqs_world.topology)
    # THEN it received the one message and released it
    assert (report.received, report.matched) == (1, 1)
    assert sqs_world.dlq_counts() == (1, 0)


def test_replay_of_one_queue_leaves_other_dlqs_alone(sqs_world):
    # GIVEN a message in the default DLQ and one in the low_priority DLQ
    sqs_world.dead_letter("jobs.fail")
    sqs_world.dead_letter("newsletter.send_one", queue="low_priority", kwargs={"newsletter_id": 1, "subscriber_id": 2})
    # WHEN low_priority is replayed for real
    report = replay_dlq(
        parse_replay_request({"queue": "low_priority", "dry_run": False}, sqs_world.topology),
        sqs=FastSqs(sqs_world.client),
        topology=sqs_world.topology,
    )
    # THEN only its message moved, to its own source queue
    assert report.dlq == "t-low-priority-dlq"
    assert report.moved == 1
    assert sqs_world.source_counts("low_priority") == (1, 0)
    assert sqs_world.dlq_counts("low_priority") == (0, 0)
    assert sqs_world.dlq_counts("default") == (1, 0)
    assert sqs_world.source_counts("default") == (0, 0)


# --- real run ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("reset_retries", [False, True])
def test_real_run_moves_every_message_with_same_id_and_a_replay_count(sqs_world, reset_retries):
    # GIVEN 12 real messages (more than one batch) that had been retried twice
    ids = sqs_world.dead_letter_many("jobs.fail", 12, retries=2)
    # WHEN they are replayed for real
    report = _replay(sqs_world, dry_run=False, reset_retries=reset_retries)
    # THEN all moved: the DLQ is empty and the source queue holds them with the SAME task ids
    assert (report.received, report.matched, report.moved) == (12, 12, 12)
    assert report.failed == [] and report.not_deleted == []
    assert sqs_world.dlq_counts() == (0, 0)
    headers = sqs_world.headers_in(sqs_world.urls["default"])
    assert sorted(h["id"] for h in headers) == sorted(ids)
    # AND each carries x-dlq-replays 1, and retries reset to 0 only when asked
    assert {h[REPLAY_COUNT_HEADER] for h in headers} == {1}
    assert {h["retries"] for h in headers} == ({0} if reset_retries else {2})
    assert {h["task"] for h in headers} == {"jobs.fail"}


def test_real_run_keeps_args_and_envelope_besides_the_changed_headers(sqs_world):
    # GIVEN one real jobs.echo message in the DLQ
    task_id = sqs_world.dead_letter("jobs.echo", kwargs={"job_id": 7, "message": "hello"})
    [before] = sqs_world.drain(sqs_world.dlq_urls["default"])
    # WHEN it is replayed
    _replay(sqs_world, dry_run=False)
    # THEN the message on the source queue decodes to the same body and properties; only the counter is new
    [after] = sqs_world.drain(sqs_world.urls["default"])
    old, new = decode_sqs_body(before["Body"]), decode_sqs_body(after["Body"])
    assert new.task_id == task_id
    assert new.body == old.body
    assert new.body[1] == {"job_id": 7, "message": "hello"}
    assert new.properties == old.properties
    assert {k: v for k, v in new.headers.items() if k != REPLAY_COUNT_HEADER} == old.headers


def test_expired_expires_is_dropped_and_future_one_kept(sqs_world):
    # GIVEN a message whose `expires` passed an hour ago and one that expires in an hour
    past = sqs_world.dead_letter("jobs.fail", expires=datetime.now(UTC) - timedelta(hours=1))
    future_at = datetime.now(UTC) + timedelta(hours=1)
    future = sqs_world.dead_letter("jobs.fail", expires=future_at)
    # WHEN both are replayed
    report = _replay(sqs_world, dry_run=False)
    # THEN the past one is sent without `expires` (else the worker revokes it) and the future one keeps it
    assert report.moved == 2
    by_id = {h["id"]: h for h in sqs_world.headers_in(sqs_world.urls["default"])}
    assert by_id[past]["expires"] is None
    assert datetime.fromisoformat(by_id[future]["expires"]) == future_at


def test_task_names_filter_moves_only_matches(sqs_world):
    # GIVEN 3 jobs.fail and 2 jobs.echo messages in the DLQ
    fails = sqs_world.dead_letter_many("jobs.fail", 3)
    echoes = sqs_world.dead_letter_many("jobs.echo", 2)
    # WHEN only jobs.echo is replayed
    report = _replay(sqs_world, dry_run=False, task_names=["jobs.echo"])
    # THEN the 2 echoes moved and the 3 others are still in the DLQ, visible
    assert (report.received, report.matched, report.moved, report.skipped) == (5, 2, 2, 3)
    assert sorted(h["id"] for h in sqs_world.headers_in(sqs_world.urls["default"])) == sorted(echoes)
    assert sqs_world.dlq_counts() == (3, 0)
    assert sorted(h["id"] for h in sqs_world.headers_in(sqs_world.dlq_urls["default"])) == sorted(fails)


def test_task_ids_filter_moves_only_matches(sqs_world):
    # GIVEN 4 messages in the DLQ
    ids = sqs_world.dead_letter_many("jobs.fail", 4)
    chosen = [ids[1], ids[3]]
    # WHEN two of them are replayed by task id
    report = _replay(sqs_world, dry_run=False, task_ids=chosen)
    # THEN exactly those moved; the other two stay, visible
    assert (report.moved, report.skipped) == (2, 2)
    assert sorted(h["id"] for h in sqs_world.headers_in(sqs_world.urls["default"])) == sorted(chosen)
    assert sqs_world.dlq_counts() == (2, 0)
    assert sorted(h["id"] for h in sqs_world.headers_in(sqs_world.dlq_urls["default"])) == sorted([ids[0], ids[2]])


@pytest.mark.parametrize(
    ("filters", "moves"),
    [
        pytest.param({"min_age_seconds": 1800}, True, id="older-than-30min"),
        pytest.param({"min_age_seconds": 7200}, False, id="not-older-than-2h"),
        pytest.param({"max_age_seconds": 600}, False, id="not-younger-than-10min"),
        pytest.param({"max_age_seconds": 7200}, True, id="younger-than-2h"),
        pytest.param({"min_age_seconds": 3000, "max_age_seconds": 4000}, True, id="in-window"),
    ],
)
def test_age_filters_use_the_injected_clock(sqs_world, filters, moves):
    # GIVEN a message dead-lettered now, and a clock one hour ahead (so it is about 3600 s old)
    sqs_world.dead_letter("jobs.fail")
    clock = FakeClock(time.time() + 3600)
    # WHEN a real run is filtered by age
    report = _replay(sqs_world, dry_run=False, clock=clock, sleep=clock.sleep, **filters)
    # THEN it moves only when ~3600 s is inside the window; otherwise it stays visible in the DLQ
    assert report.moved == (1 if moves else 0)
    assert report.skipped == (0 if moves else 1)
    assert sqs_world.dlq_counts() == ((0, 0) if moves else (1, 0))
    assert sqs_world.source_counts() == ((1, 0) if moves else (0, 0))


def test_message_at_the_replay_limit_stays_in_the_dlq(sqs_world):
    # GIVEN a message replayed once with max_replays=1, then dead-lettered again
    task_id = sqs_world.dead_letter("jobs.fail")
    assert _replay(sqs_world, dry_run=False, max_replays=1).moved == 1
    assert sqs_world.move_to_dlq("default") == 1
    # WHEN it is replayed again with max_replays=1
    report = _replay(sqs_world, dry_run=False, max_replays=1)
    # THEN it is not moved: listed in over_limit with its count, still visible in the DLQ
    assert report.moved == 0 and report.matched == 0
    assert report.over_limit == [{"task_id": task_id, "task": "jobs.fail", "replays": 1}]
    assert sqs_world.dlq_counts() == (1, 0)
    assert sqs_world.source_counts() == (0, 0)
    # AND with a higher limit it moves, its counter now 2
    assert _replay(sqs_world, dry_run=False, max_replays=3).moved == 1
    [headers] = sqs_world.headers_in(sqs_world.urls["default"])
    assert headers[REPLAY_COUNT_HEADER] == 2


@pytest.mark.parametrize(
    "body",
    [
        pytest.param("not a celery message", id="plain-text"),
        pytest.param("eyJoZWxsbyI6IDF9", id="base64-json-not-an-envelope"),
    ],
)
def test_undecodable_body_stays_visible(sqs_world, body):
    # GIVEN a DLQ with one body no Celery producer made, and one real message
    sqs_world.put_raw(body)
    task_id = sqs_world.dead_letter("jobs.fail")
    # WHEN a real run is made
    report = _replay(sqs_world, dry_run=False)
    # THEN the real one moved, the other is counted undecodable and still visible in the DLQ
    assert (report.received, report.moved, report.undecodable) == (2, 1, 1)
    assert sqs_world.dlq_counts() == (1, 0)
    [left] = sqs_world.drain(sqs_world.dlq_urls["default"])
    assert left["Body"] == body
    assert [h["id"] for h in sqs_world.headers_in(sqs_world.urls["default"])] == [task_id]


def test_max_messages_bounds_what_is_received(sqs_world):
    # GIVEN 15 messages in the DLQ
    sqs_world.dead_letter_many("jobs.fail", 15)
    sqs = FastSqs(sqs_world.client)
    # WHEN a real run is limited to 10
    report = _replay(sqs_world, sqs=sqs, dry_run=False, max_messages=10)
    # THEN 10 were received and moved, and 5 are untouched in the DLQ
    assert (report.received, report.moved) == (10, 10)
    assert report.stopped == "max_messages (10) received"
    assert sqs_world.source_counts() == (10, 0)
    assert sqs_world.dlq_counts() == (5, 0)
    # AND it long-polled with 1 s (never asked more than the limit)
    assert sqs.waits == [1]


def test_max_messages_not_a_multiple_of_ten_asks_for_the_remainder(sqs_world):
    # GIVEN 15 messages in the DLQ
    sqs_world.dead_letter_many("jobs.fail", 15)
    # WHEN a dry run is limited to 13
    report = _replay(sqs_world, max_messages=13)
    # THEN exactly 13 were received, and all 15 are visible again after
    assert report.received == 13
    assert sqs_world.dlq_counts() == (15, 0)


# --- failures of SQS calls ---------------------------------------------------------------------------


def test_partial_send_failure_deletes_only_what_was_sent(sqs_world):
    # GIVEN 6 messages, and SendMessageBatch failing 2 of them (InternalError)
    ids = sqs_world.dead_letter_many("jobs.fail", 6)
    failing = frozenset(ids[1:3])
    sqs = PartialSendSqs(sqs_world.client, failing=failing)
    # WHEN they are replayed
    report = _replay(sqs_world, sqs=sqs, dry_run=False)
    # THEN the 4 sent are gone from the DLQ and on the source queue; the 2 failed remain, visible, in the DLQ
    assert report.moved == 4
    assert sorted(f["task_id"] for f in report.failed) == sorted(failing)
    assert all(f["error"].startswith("InternalError") for f in report.failed)
    assert report.matched == 6
    assert _outcomes(report) == report.received == 6
    assert sorted(h["id"] for h in sqs_world.headers_in(sqs_world.urls["default"])) == sorted(set(ids) - failing)
    assert sqs_world.dlq_counts() == (2, 0)
    assert sorted(h["id"] for h in sqs_world.headers_in(sqs_world.dlq_urls["default"])) == sorted(failing)


def test_delete_failure_is_reported_and_message_is_in_both_queues(sqs_world):
    # GIVEN 3 messages, and DeleteMessageBatch failing for one of them
    ids = sqs_world.dead_letter_many("jobs.fail", 3)
    sqs = PartialDeleteSqs(sqs_world.client)
    original = sqs.receive_message

    def receive_and_pick(**kwargs):
        response = original(**kwargs)
        for message in response.get("Messages", []):
            if task_id_of(message["Body"]) == ids[0]:
                sqs.keep.add(message["ReceiptHandle"])
        return response

    sqs.receive_message = receive_and_pick
    # WHEN they are replayed
    report = _replay(sqs_world, sqs=sqs, dry_run=False)
    # THEN all 3 were sent (moved 3), the one not deleted is reported with its error
    assert report.moved == 3
    assert report.not_deleted == [{"task_id": ids[0], "task": "jobs.fail", "error": "InternalError: nope"}]
    # AND at-least-once: it is on the source queue AND still in the DLQ (held, not visible)
    assert sorted(h["id"] for h in sqs_world.headers_in(sqs_world.urls["default"])) == sorted(ids)
    assert sum(sqs_world.dlq_counts()) == 1


def test_send_batch_client_error_moves_and_deletes_nothing(sqs_world):
    # GIVEN 4 messages, and SendMessageBatch raising ClientError
    ids = sqs_world.dead_letter_many("jobs.fail", 4)
    sqs = RaisingSendSqs(sqs_world.client)
    # WHEN they are replayed
    report = _replay(sqs_world, sqs=sqs, dry_run=False)
    # THEN nothing moved, nothing deleted; every message is reported failed and is visible again
    assert sqs.send_calls == 1 and sqs.delete_calls == 0
    assert report.moved == 0
    assert sorted(f["task_id"] for f in report.failed) == sorted(ids)
    assert all("NonExistentQueue" in f["error"] for f in report.failed)
    assert sqs_world.dlq_counts() == (4, 0)
    assert sqs_world.source_counts() == (0, 0)


# --- large messages: batches cut by size -------------------------------------------------------------


def test_ten_400_kib_messages_are_replayed_in_batches_under_1_mib(sqs_world):
    # GIVEN ten messages of about 400 KiB each in low_priority's DLQ (1 MiB messages; 4 MB in all)
    ids = [
        sqs_world.publish("jobs.echo", "low_priority", kwargs={"job_id": i, "message": "z" * 229_000})
        for i in range(10)
    ]
    assert sqs_world.move_to_dlq("low_priority") == 10
    sizes = [len(m["Body"]) for m in sqs_world.drain(sqs_world.dlq_urls["low_priority"])]
    assert all(400_000 < size < 420_000 for size in sizes)
    sent_batches: list[int] = []

    class Recording(FastSqs):
        def send_message_batch(self, **kwargs):
            sent_batches.append(sum(len(e["MessageBody"]) for e in kwargs["Entries"]))
            return self.client.send_message_batch(**kwargs)

    # WHEN they are replayed
    report = _replay(sqs_world, Recording(sqs_world.client), queue="low_priority", dry_run=False)

    # THEN all ten move, in SendMessageBatch calls of at most 1 MiB each (two messages each)
    assert (report.moved, report.failed) == (10, [])
    assert sent_batches and all(total <= 1_048_576 for total in sent_batches)
    assert len(sent_batches) == 5
    assert sorted(task_id_of(m["Body"]) for m in sqs_world.drain(sqs_world.urls["low_priority"])) == sorted(ids)
    assert sqs_world.dlq_counts("low_priority") == (0, 0)


def test_a_claim_checked_message_is_replayed_with_its_pointer_and_counted_by_task_name(sqs_world):
    # GIVEN a task whose 2 MB body went to S3, dead-lettered
    task_id = sqs_world.dead_letter("jobs.echo", "high_priority", kwargs={"job_id": 1, "message": "p" * 2_000_000})
    # WHEN it is replayed
    report = _replay(sqs_world, queue="high_priority", dry_run=False)
    # THEN it is reported by its task name (not undecodable), and moved with its pointer intact
    assert (report.moved, report.undecodable, dict(report.by_task)) == (1, 0, {"jobs.echo": 1})
    [message] = sqs_world.drain(sqs_world.urls["high_priority"])
    envelope = decode_sqs_body(message["Body"])
    assert envelope.task_id == task_id and envelope.claim_check["size"] > 2_000_000
    assert envelope.headers[REPLAY_COUNT_HEADER] == 1


# --- rate and time budget ----------------------------------------------------------------------------


def test_rate_limit_sleeps_exactly_what_the_rate_needs(sqs_world):
    # GIVEN 25 messages and a fake clock that only sleep advances
    sqs_world.dead_letter_many("jobs.fail", 25)
    clock = FakeClock(time.time())
    # WHEN they are replayed at 10 messages per second
    report = _replay(sqs_world, dry_run=False, rate_per_second=10, clock=clock, sleep=clock.sleep)
    # THEN batches of 10, 10, 5: no wait before the first, 1 s before each next one -> 2.0 s in total
    assert report.moved == 25
    assert clock.sleeps == pytest.approx([1.0, 1.0])
    assert sum(clock.sleeps) == pytest.approx(2.0)


def test_rate_limit_counts_only_elapsed_time(sqs_world):
    # GIVEN 20 messages and a clock where each SQS receive takes 0.4 s
    sqs_world.dead_letter_many("jobs.fail", 20)
    clock = FakeClock(time.time())
    sqs = FastSqs(sqs_world.client)
    original = sqs.receive_message

    def slow_receive(**kwargs):
        clock.now += 0.4
        return original(**kwargs)

    sqs.receive_message = slow_receive
    # WHEN replayed at 5/s (2 s per batch of 10)
    report = _replay(sqs_world, sqs=sqs, dry_run=False, rate_per_second=5, clock=clock, sleep=clock.sleep)
    # THEN the one wait is shortened by the 0.4 s the receive took
    assert report.moved == 20
    assert clock.sleeps == pytest.approx([1.6])


def test_time_budget_stops_the_run_and_releases_held_messages(sqs_world):
    # GIVEN 15 messages, and a time budget that is ample for the first receive and then nearly spent
    sqs_world.dead_letter_many("jobs.fail", 15)
    left = iter([300.0, STOP_WHEN_SECONDS_LEFT - 1])
    # WHEN a dry run is made
    report = _replay(sqs_world, time_left=lambda: next(left))
    # THEN it stopped after one batch, saying why, and the 10 held messages are visible again
    assert report.stopped == "time budget nearly spent"
    assert report.received == 10
    assert sqs_world.dlq_counts() == (15, 0)


def test_time_budget_already_spent_receives_nothing(sqs_world):
    # GIVEN 3 messages and only 19 s left
    sqs_world.dead_letter_many("jobs.fail", 3)
    # WHEN a real run is asked
    report = _replay(sqs_world, dry_run=False, time_left=lambda: 19.0)
    # THEN nothing was received nor moved
    assert (report.received, report.moved, report.stopped) == (0, 0, "time budget nearly spent")
    assert sqs_world.dlq_counts() == (3, 0)


def test_rate_limit_never_sleeps_past_the_time_budget(sqs_world):
    # GIVEN 20 messages, a valid rate of 0.1 message/s (10 messages need 100 s) and 60 s of Lambda time left
    sqs_world.dead_letter_many("jobs.fail", 20)
    clock = FakeClock(time.time())
    deadline = clock.now + 60
    # WHEN a real run is made
    report = _replay(
        sqs_world,
        dry_run=False,
        rate_per_second=0.1,
        clock=clock,
        sleep=clock.sleep,
        time_left=lambda: deadline - clock(),
    )
    # THEN the run ends (with its report) before the Lambda's time is up, instead of being killed mid-sleep
    assert clock() <= deadline
    assert report.stopped == "time budget nearly spent"


# --- property: no message is lost or counted twice ---------------------------------------------------


@hsettings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    fails=st.integers(0, 12),
    echoes=st.integers(0, 4),
    junk=st.integers(0, 2),
    names=st.none() | st.sampled_from([["jobs.fail"], ["jobs.echo"], ["jobs.nothing"]]),
    max_messages=st.integers(1, 25),
    dry_run=st.booleans(),
)
def test_every_message_is_accounted_for(sqs_world, fails, echoes, junk, names, max_messages, dry_run):
    # GIVEN a DLQ with a generated mix of real messages and undecodable bodies (fresh queues each example)
    sqs_world.empty()
    for name, count in (("jobs.fail", fails), ("jobs.echo", echoes)):
        if count:
            sqs_world.dead_letter_many(name, count)
    for _ in range(junk):
        sqs_world.put_raw("junk")
    total = fails + echoes + junk
    # WHEN a replay with generated filters and limits runs
    report = _replay(sqs_world, dry_run=dry_run, task_names=names, max_messages=max_messages)
    # THEN it received min(total, max_messages), each counted in one outcome, and no message was lost or doubled
    assert report.received == min(total, max_messages)
    if dry_run:
        assert report.matched + report.skipped + report.undecodable == report.received
        assert report.moved == 0
    else:
        assert _outcomes(report) == report.received
        assert report.moved == report.matched
    assert sum(report.by_task.values()) == report.matched
    assert sqs_world.source_counts() == (report.moved, 0)
    assert sqs_world.dlq_counts() == (total - report.moved, 0)


# --- the next receive overlaps the send and delete (issue L item 4) ----------------------------------


def test_the_next_receive_is_in_flight_while_a_batch_is_sent(sqs_world):
    # GIVEN 25 messages, and a client whose SendMessageBatch notes whether another receive had started by then
    # (it waits up to 5 s for one, so a run that receives only after its send and delete is caught)
    import threading

    sqs_world.dead_letter_many("jobs.fail", 25)
    sqs = FastSqs(sqs_world.client)
    started = threading.Semaphore(0)  # released once per receive started
    overlapped: list[bool] = []
    receive, send = sqs.receive_message, sqs_world.client.send_message_batch

    def counting_receive(**kwargs):
        started.release()
        return receive(**kwargs)

    def noting_send(**kwargs):
        if not overlapped:
            started.acquire(timeout=5)  # the first batch's own receive
        overlapped.append(started.acquire(timeout=5))  # the next batch's receive, started before this send
        return send(**kwargs)

    sqs.receive_message, sqs.send_message_batch = counting_receive, noting_send
    # WHEN they are replayed
    report = _replay(sqs_world, sqs=sqs, dry_run=False, rate_per_second=100)
    # THEN the first two batches had their successor's receive started before they were sent
    assert report.moved == 25
    assert overlapped[:2] == [True, True]
    # AND all 25 are in the queue, none left in the DLQ
    assert sqs_world.source_counts() == (25, 0)
    assert sqs_world.dlq_counts() == (0, 0)


def test_a_receive_in_flight_when_the_time_budget_ends_is_handed_back(sqs_world):
    # GIVEN 15 messages, and a time budget ample for the first batch and then nearly spent
    sqs_world.dead_letter_many("jobs.fail", 15)
    left = iter([300.0, 300.0, STOP_WHEN_SECONDS_LEFT - 1])  # asked before the receive, before the send, then
    # WHEN a real run moves the first 10 (the next 5 received while they were sent)
    report = _replay(sqs_world, dry_run=False, rate_per_second=100, time_left=lambda: next(left))
    # THEN it stopped after one batch, and the 5 it had already received are visible in the DLQ again
    assert (report.received, report.moved, report.stopped) == (10, 10, "time budget nearly spent")
    assert sqs_world.source_counts() == (10, 0)
    assert sqs_world.dlq_counts() == (5, 0)
