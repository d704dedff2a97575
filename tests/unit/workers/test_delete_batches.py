"""Unit tests of batched deletes (workers/delete_batches.py) as the channel uses them, on moto."""

from __future__ import annotations

import logging
import time
from collections import Counter

import pytest
from botocore.exceptions import ClientError
from kombu import Producer

from workers.delete_batches import DeleteBatches, PendingDelete


@pytest.fixture(autouse=True)
def own_health_files(tmp_path, monkeypatch):
    """The delete-failure state file lives beside the liveness file: keep both in this test's directory."""
    monkeypatch.setenv("WORKER_LIVENESS_FILE", str(tmp_path / "liveness"))


def hold(channel, n: int, queue: str = "default") -> list[int]:
    """Publish n messages and take them into the channel's QoS, as running tasks hold them."""
    producer = Producer(channel)
    for i in range(n):
        producer.publish({"n": i}, routing_key=queue, exchange="", serializer="json")
    tags = []
    for _ in range(n):
        message = channel.basic_get(queue, no_ack=False)
        assert message is not None
        tags.append(message.delivery_tag)
    return tags


def stored(make_channel, queue_name: str = "default") -> int:
    """Messages SQS still holds on the queue (visible or not)."""
    url = make_channel.client.get_queue_url(QueueName=queue_name)["QueueUrl"]
    attrs = make_channel.client.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])


def count_calls(channel, queue: str = "default") -> Counter:
    calls: Counter = Counter()
    channel.sqs(queue=queue).meta.events.register("before-call.sqs.*", lambda model, **_: calls.update([model.name]))
    return calls


def wait_until(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_an_ack_frees_the_slot_at_once_and_the_delete_follows_within_the_window(make_channel):
    # GIVEN a channel that batches deletes within 0.1 s, holding one message of a running task
    channel, _ = make_channel(prefetch=4, delete_batch_seconds=0.1)
    (tag,) = hold(channel, 1)
    calls = count_calls(channel)

    # WHEN the task ends and its message is acked
    channel.basic_ack(tag)

    # THEN its slot is free at once, and within the window one DeleteMessageBatch deletes the message
    assert channel.qos.can_consume_max_estimate() == 4
    assert wait_until(lambda: stored(make_channel) == 0)
    assert calls == {"DeleteMessageBatch": 1}
    # AND the event loop was never asked to wait for it
    assert channel.hub.later == [] and channel.hub.soon == []


def test_until_its_batch_goes_out_an_acked_message_is_still_in_sqs(make_channel):
    # GIVEN a long window, so the batch is still open when we look
    channel, _ = make_channel(prefetch=2, delete_batch_seconds=30)
    tags = hold(channel, 2)

    # WHEN both messages are acked
    for tag in tags:
        channel.basic_ack(tag)

    # THEN SQS still holds them (a worker killed now has the tasks run again, as if before the ack)
    time.sleep(0.2)
    assert stored(make_channel) == 2
    # WHEN the worker shuts down and closes its channel before the window ends
    channel.close()
    # THEN acked means deleted
    assert stored(make_channel) == 0


def test_ten_acks_are_one_request_sent_without_waiting_for_the_window(make_channel):
    # GIVEN ten running tasks' messages and a long window
    channel, _ = make_channel(prefetch=10, delete_batch_seconds=30)
    tags = hold(channel, 10)
    calls = count_calls(channel)

    # WHEN all ten are acked
    for tag in tags:
        channel.basic_ack(tag)

    # THEN a full batch goes out at once: one request for ten deletes
    assert wait_until(lambda: stored(make_channel) == 0)
    assert calls == {"DeleteMessageBatch": 1}
    channel.close()


def test_without_a_window_each_ack_is_kombus_own_delete(make_channel):
    # GIVEN batching off (WORKER_DELETE_BATCH_SECONDS=0)
    channel, _ = make_channel(delete_batch_seconds=0)
    (tag,) = hold(channel, 1)
    calls = count_calls(channel)

    # WHEN the message is acked
    channel.basic_ack(tag)

    # THEN kombu deletes it there and then, one DeleteMessage, no timer
    assert stored(make_channel) == 0
    assert calls == {"DeleteMessage": 1}
    assert channel.hub.later == []


class RefusingClient:
    def delete_message_batch(self, **kwargs):
        raise ClientError({"Error": {"Code": "AccessDenied", "Message": "no sqs:DeleteMessage"}}, "DeleteMessageBatch")


class PartlyFailingClient:
    def delete_message_batch(self, *, QueueUrl, Entries):  # noqa: N803 (boto3's names)
        return {
            "Successful": [{"Id": Entries[0]["Id"]}],
            "Failed": [{"Id": e["Id"], "Code": "ReceiptHandleIsInvalid", "Message": "stale"} for e in Entries[1:]],
        }


def test_a_failed_delete_is_logged_not_raised(caplog):
    # GIVEN a batch whose DeleteMessageBatch is refused
    batches = DeleteBatches(client_for=lambda queue: RefusingClient(), window=0.1)

    # WHEN a delete is sent
    with caplog.at_level(logging.WARNING, logger="workers.delete_batches"):
        batches.add(PendingDelete(queue="default", url="https://sqs/q", receipt_handle="h1"))
        batches.close()

    # THEN the worker goes on; the log says the message will run again
    assert batches.failed == 1 and batches.deleted == 0
    assert "run again after their visibility timeout" in caplog.text and "AccessDenied" in caplog.text


def test_entries_sqs_refused_are_counted_and_logged(caplog):
    # GIVEN a batch of three where SQS refuses two entries
    batches = DeleteBatches(client_for=lambda queue: PartlyFailingClient(), window=30)

    # WHEN the three are sent (at close, before the window ends)
    with caplog.at_level(logging.WARNING, logger="workers.delete_batches"):
        for handle in ("h1", "h2", "h3"):
            batches.add(PendingDelete(queue="default", url="https://sqs/q", receipt_handle=handle))
        batches.close()

    # THEN one is deleted, two are reported with SQS's reason
    assert (batches.deleted, batches.failed) == (1, 2)
    assert caplog.text.count("ReceiptHandleIsInvalid") == 2


class RecordingClient:
    def __init__(self):
        self.requests: list[tuple[str, int]] = []

    def delete_message_batch(self, *, QueueUrl, Entries):  # noqa: N803 (boto3's names)
        self.requests.append((QueueUrl, len(Entries)))
        return {"Successful": [{"Id": e["Id"]} for e in Entries]}


def test_one_request_per_queue_per_window_however_many_acks():
    # GIVEN a batcher with a window long enough to gather everything below
    client = RecordingClient()
    batches = DeleteBatches(client_for=lambda queue: client, window=30)

    # WHEN 3 acks on one queue and 12 on another arrive, then the worker stops
    for i in range(3):
        batches.add(PendingDelete(queue="a", url="https://sqs/a", receipt_handle=f"a{i}"))
    for i in range(12):
        batches.add(PendingDelete(queue="b", url="https://sqs/b", receipt_handle=f"b{i}"))
    batches.close()

    # THEN one request per full batch of 10 and one per remainder: 3 requests for 15 deletes, all deleted
    assert sorted(client.requests) == [("https://sqs/a", 3), ("https://sqs/b", 2), ("https://sqs/b", 10)]
    assert batches.deleted == 15


def test_acks_that_keep_coming_within_the_window_share_one_batch():
    # GIVEN a window of 0.3 s after the last ack, and a cap far away
    client = RecordingClient()
    batches = DeleteBatches(client_for=lambda queue: client, window=0.3, max_hold=5)
    # WHEN six acks arrive 0.1 s apart (0.5 s from first to last: longer than the window)
    for i in range(6):
        batches.add(PendingDelete(queue="a", url="https://sqs/a", receipt_handle=f"a{i}"))
        time.sleep(0.1)
    # THEN they go out together, once the acks stop, in one DeleteMessageBatch
    assert wait_until(lambda: client.requests, timeout=5)
    batches.close()
    assert client.requests == [("https://sqs/a", 6)]


def test_acks_coming_within_the_window_wake_the_delete_thread_a_few_times_not_once_each():
    # GIVEN a window of 0.5 s after the last ack, and a cap far away
    client = RecordingClient()
    batches = DeleteBatches(client_for=lambda queue: client, window=0.5, max_hold=5)
    # WHEN nine acks arrive 10 ms apart (a worker's tasks ending one after another)
    for i in range(9):
        batches.add(PendingDelete(queue="a", url="https://sqs/a", receipt_handle=f"a{i}"))
        time.sleep(0.01)
    # THEN they go out in one batch once the window passes, and the thread woke for the first ack and for the
    # window's end, not once per ack (each wake-up costs the worker's main process a GIL hand-off and a context switch)
    assert wait_until(lambda: client.requests, timeout=5)
    wakeups = batches.wakeups
    batches.close()
    assert client.requests == [("https://sqs/a", 9)]
    assert wakeups <= 3


def test_a_queue_whose_acks_fill_a_batch_is_sent_at_once_while_other_queues_wait_for_the_window():
    # GIVEN a window of 5 s, and 3 acks each on two queues gathered in it
    client = RecordingClient()
    batches = DeleteBatches(client_for=lambda queue: client, window=5, max_hold=10)
    for i in range(3):
        batches.add(PendingDelete(queue="a", url="https://sqs/a", receipt_handle=f"a{i}"))
        batches.add(PendingDelete(queue="b", url="https://sqs/b", receipt_handle=f"b{i}"))
    # WHEN a third queue's acks reach 10 within the window
    for i in range(10):
        batches.add(PendingDelete(queue="c", url="https://sqs/c", receipt_handle=f"c{i}"))
    # THEN its full batch goes out without waiting for the window (the thread, asleep until the window's end, is woken
    # by the count that could fill the fullest batch), and the others only at the close
    assert wait_until(lambda: client.requests, timeout=3)
    assert client.requests == [("https://sqs/c", 10)]
    batches.close()
    assert sorted(client.requests) == [("https://sqs/a", 3), ("https://sqs/b", 3), ("https://sqs/c", 10)]


def test_a_steady_trickle_of_acks_is_sent_when_the_cap_runs_out():
    # GIVEN a window of 0.3 s after the last ack, capped at 0.5 s after the batch's first ack
    client = RecordingClient()
    sent_before: list[int] = []
    batches = DeleteBatches(client_for=lambda queue: client, window=0.3, max_hold=0.5)
    # WHEN nine acks arrive 0.15 s apart (never a quiet window; 1.2 s from first to last)
    for i in range(9):
        batches.add(PendingDelete(queue="a", url="https://sqs/a", receipt_handle=f"a{i}"))
        sent_before.append(len(client.requests))
        time.sleep(0.15)
    batches.close()
    # THEN a batch went out before the last ack came (the cap, not the quiet window, sent it), none of them late
    assert sent_before[-1] >= 1
    assert sum(n for _url, n in client.requests) == 9
    assert all(n < 9 for _url, n in client.requests)


class FlakyClient:
    """Fails the first `failures` requests with `error`, then deletes everything."""

    def __init__(self, error: BaseException, failures: int = 1):
        self.error, self.failures = error, failures
        self.calls: list[list[str]] = []

    def delete_message_batch(self, *, QueueUrl, Entries):  # noqa: N803 (boto3's names)
        self.calls.append([e["ReceiptHandle"] for e in Entries])
        if len(self.calls) <= self.failures:
            raise self.error
        return {"Successful": [{"Id": e["Id"]} for e in Entries]}


def test_a_non_botocore_exception_does_not_stop_later_deletes():
    # GIVEN a client lookup that raises something that is not a botocore error once (kombu's
    # UndefinedQueueException for a routing key outside predefined_queues)
    from kombu.transport.SQS import UndefinedQueueException

    client = RecordingClient()
    lookups = []

    def client_for(queue):
        lookups.append(queue)
        if queue == "elsewhere":
            raise UndefinedQueueException("Queue with name 'elsewhere' must be defined in 'predefined_queues'.")
        return client

    batches = DeleteBatches(client_for=client_for, window=0.01)

    # WHEN that ack's batch fails, and later acks arrive
    batches.add(PendingDelete(queue="elsewhere", url="https://sqs/a", receipt_handle="first"))
    assert wait_until(lambda: lookups)
    time.sleep(0.1)
    batches.add(PendingDelete(queue="a", url="https://sqs/a", receipt_handle="later"))

    # THEN the later ack is still deleted
    assert wait_until(lambda: batches.deleted == 1), "the delete thread stopped for good"
    batches.close()


class Boom(BaseException):
    """Something even `except Exception` lets through: it ends the thread."""


def test_add_restarts_a_dead_thread_and_keeps_the_delete_it_held():
    # GIVEN a delete thread killed while it held a batch
    client = FlakyClient(Boom("thread killed"), failures=1)
    batches = DeleteBatches(client_for=lambda queue: client, window=0.01)
    batches.add(PendingDelete(queue="a", url="https://sqs/a", receipt_handle="held"))
    assert wait_until(lambda: client.calls)
    time.sleep(0.1)

    # WHEN another ack arrives
    batches.add(PendingDelete(queue="a", url="https://sqs/a", receipt_handle="next"))
    batches.close()

    # THEN a new thread deletes both, the one the dead thread held included
    assert sorted(h for call in client.calls[1:] for h in call) == ["held", "next"]
    assert batches.deleted == 2 and batches.restarts == 1


def test_a_refused_delete_is_retried_until_it_succeeds():
    # GIVEN a DeleteMessageBatch that fails once (a 5xx after botocore's own retries)
    error = ClientError({"Error": {"Code": "InternalError", "Message": "try later"}}, "DeleteMessageBatch")
    client = FlakyClient(error, failures=1)
    batches = DeleteBatches(client_for=lambda queue: client, window=0.01, backoff=0.05)

    # WHEN a delete is sent
    batches.add(PendingDelete(queue="a", url="https://sqs/a", receipt_handle="h1"))

    # THEN it is sent again and the message deleted
    assert wait_until(lambda: batches.deleted == 1)
    assert client.calls == [["h1"], ["h1"]]
    batches.close()


def test_retries_stop_once_the_message_may_be_back_in_the_queue():
    # GIVEN deletes that always fail, and a queue whose messages are in flight at most 0.5 s after an ack
    error = ClientError({"Error": {"Code": "InternalError", "Message": "down"}}, "DeleteMessageBatch")
    client = FlakyClient(error, failures=10**6)
    batches = DeleteBatches(client_for=lambda queue: client, window=0.01, backoff=0.05, keep_for=lambda queue: 0.5)

    # WHEN a delete is sent and keeps failing
    batches.add(PendingDelete(queue="a", url="https://sqs/a", receipt_handle="h1"))
    assert wait_until(lambda: batches.failed == 1, timeout=5)
    attempts = len(client.calls)
    time.sleep(0.5)

    # THEN it was retried (more than once, with backoff) and then given up: no more requests for it
    assert 2 <= attempts <= 8
    assert len(client.calls) == attempts
    assert batches.pending == 0
    batches.close()


def _denied() -> ClientError:
    return ClientError({"Error": {"Code": "AccessDenied", "Message": "no sqs:DeleteMessage"}}, "DeleteMessageBatch")


def test_access_denied_makes_the_worker_unhealthy_at_once_and_a_success_heals_it(tmp_path):
    # GIVEN deletes refused with AccessDenied twice, then allowed (the policy was fixed)
    from workers import delete_health, healthcheck

    (tmp_path / "liveness").write_text(f"{time.time()}\n")  # a fresh poll: only deletes can fail the check
    client = FlakyClient(_denied(), failures=2)
    # (retries 1 s, then 2 s later: time enough, on a loaded machine, to read the health check in between)
    batches = DeleteBatches(client_for=lambda queue: client, window=0.01, backoff=1.0)

    # WHEN an ack's delete is refused
    batches.add(PendingDelete(queue="a", url="https://sqs/a", receipt_handle="h1"))
    assert wait_until(lambda: delete_health.failure_reason() is not None)

    # THEN the health check fails, naming deletes and the count
    ok, message = healthcheck.check("worker")
    assert not ok and "deletes failing: 1 acked messages not deleted since" in message
    # WHEN the retry succeeds THEN the worker is healthy again
    assert wait_until(lambda: batches.deleted == 1, timeout=15)
    assert healthcheck.check("worker")[0]
    batches.close()


def test_a_lasting_failure_logs_error_at_most_once_a_minute(caplog):
    # GIVEN a failure streak reported many times over three minutes (a fake clock)
    from workers.delete_health import DeleteFailures

    now = [0.0]
    failures = DeleteFailures(unhealthy_after=60, clock=lambda: now[0])

    # WHEN deletes fail every 5 s
    with caplog.at_level(logging.ERROR, logger="workers.delete_health"):
        for step in range(37):
            now[0] = step * 5.0
            failures.failed(undeleted=step + 1, error="InternalError", denied=False)

    # THEN nothing before 60 s, then one ERROR a minute, each with the count of undeleted messages
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 3
    counts = [e.split(" acked")[0] for e in errors]
    assert counts == ["deletes failing: 13", "deletes failing: 25", "deletes failing: 37"]


def test_the_channel_retries_a_delete_for_its_queues_visibility_timeout(make_channel):
    # GIVEN a worker's channel on the production topology
    from core.topology import DEFAULT_TOPOLOGY_PATH, load_topology

    topology = load_topology(DEFAULT_TOPOLOGY_PATH, profile="")
    channel, _ = make_channel(delete_batch_seconds=0.1)

    # WHEN its delete batches are built
    batches = channel.deletes.start()

    # THEN a failed delete is kept as long as its message may be in flight: its queue's visibility timeout
    for key, spec in topology.queues.items():
        assert batches.keep_for(key) == spec.visibility_timeout
    # AND a queue outside the topology gets the longest of them
    assert batches.keep_for("elsewhere") == max(q.visibility_timeout for q in topology.queues.values())


def test_a_bad_delete_failure_setting_is_refused(monkeypatch):
    from core.env import EnvError
    from workers.delete_health import unhealthy_after

    monkeypatch.setenv("WORKER_DELETE_FAILURE_SECONDS", "0")
    with pytest.raises(EnvError, match="WORKER_DELETE_FAILURE_SECONDS=0.0 must be above 0"):
        unhealthy_after()
    monkeypatch.setenv("WORKER_DELETE_FAILURE_SECONDS", "soon")
    with pytest.raises(EnvError, match="is not a number"):
        unhealthy_after()
