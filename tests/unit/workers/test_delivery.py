"""What a task learns about its SQS delivery (workers/delivery.py), through the private structures it reads:
kombu's SQS channel keeps the received SQS message in delivery_info["sqs_message"], and Celery's Request hands
the message properties to the pool as request_dict["properties"]. An upgrade that moves either fails here."""

from __future__ import annotations

from celery.app.task import Context
from celery.worker.request import Request
from kombu import Producer

from api.jobs import tasks as demo
from core.dlq.replay import REPLAY_COUNT_HEADER
from workers.celery_app import app
from workers.delivery import delivery_of, delivery_of_request, retry_when


def _received_request(channel, **headers) -> Request:
    """A Celery task message published to SQS (moto), received through the project's channel."""
    task_headers = {"lang": "py", "task": "jobs.echo", "id": "t-1", "retries": 0, "root_id": "t-1", **headers}
    Producer(channel).publish(
        [[], {"job_id": 7, "message": "hi"}, {"callbacks": None, "errbacks": None, "chain": None}],
        routing_key="default",
        exchange="",
        serializer="json",
        headers=task_headers,
    )
    message = channel.basic_get("default", no_ack=False)
    assert message is not None
    return Request(message, app=app, hostname="celery@test-host", task=demo.echo)


def test_a_received_task_knows_its_receive_count_and_worker(make_channel):
    # GIVEN a task message received once from SQS
    channel, _ = make_channel()
    request = _received_request(channel)
    # WHEN the pool process builds the task's context from what Celery sends it
    delivery = delivery_of(Context(request.request_dict))
    # THEN it knows SQS's ApproximateReceiveCount, the worker and the queue
    assert delivery.receive_count == 1
    assert delivery.hostname == "celery@test-host"
    assert delivery.pid and delivery.worker.startswith("celery@test-host:")
    assert delivery.task_name == "jobs.echo"
    assert delivery.queue == "default"
    assert delivery.replays == 0


def test_a_replayed_task_carries_the_replay_lambdas_counter(make_channel):
    # GIVEN a message the replay Lambda moved back twice (its counter header)
    channel, _ = make_channel()
    request = _received_request(channel, **{REPLAY_COUNT_HEADER: 2})
    # WHEN the task reads its delivery THEN it sees the counter
    assert delivery_of(Context(request.request_dict)).replays == 2


def test_a_delivery_without_sqs_attributes_has_no_receive_count():
    # GIVEN a context without kombu's SQS message (an eager call, another broker), and a bogus counter
    context = Context({"hostname": "h", "properties": {"delivery_info": {}}, REPLAY_COUNT_HEADER: "x"})
    # THEN the receive count is unknown (not 0) and the counter is ignored
    delivery = delivery_of(context)
    assert delivery.receive_count is None
    assert delivery.replays == 0


def test_on_retry_learns_when_the_retry_is_due_from_celerys_einfo():
    # GIVEN the einfo Celery's trace builds for a Retry (celery.app.trace handle_retry: ExceptionInfo((type,
    # Retry, tb)), which billiard wraps in ExceptionWithTraceback)
    import sys

    from billiard.einfo import ExceptionInfo
    from celery.exceptions import Retry

    try:
        raise Retry(exc=RuntimeError("flaky"), when=6)
    except Retry:
        einfo = ExceptionInfo(sys.exc_info())
    # THEN the countdown is found; an einfo without a Retry gives None
    assert retry_when(einfo) == 6
    assert retry_when(None) is None


def test_the_main_process_reads_the_same_delivery_from_its_request(make_channel):
    # GIVEN a replayed task message received once, as the worker's main process holds it
    channel, _ = make_channel()
    request = _received_request(channel, **{REPLAY_COUNT_HEADER: 1})
    # THEN it reads the receive count and the counter from the kombu message
    delivery = delivery_of_request(request)
    assert (delivery.receive_count, delivery.replays, delivery.hostname) == (1, 1, "celery@test-host")
    assert (delivery.task_name, delivery.queue) == ("jobs.echo", "default")
