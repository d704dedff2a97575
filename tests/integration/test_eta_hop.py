"""A message whose ETA is further ahead than its queue's visibility allows to hold: the worker hops it back into
SQS with DelaySeconds instead of holding it, so it runs once, at its ETA, and never spends a receive."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from celery import Celery
from django.conf import settings

from api.jobs.models import Job, JobState
from bench.counting_proxy import CountingProxy
from devstack import processes
from devstack.fault_proxy import FaultProxy
from tests.integration.conftest import wait_for_job

pytestmark = pytest.mark.integration


@pytest.fixture
def counting_proxy(queues):
    """Counts the worker's SQS requests (and the messages its receives carry) on their way to moto."""
    proxy = CountingProxy(queues.endpoint)
    proxy.start()
    yield proxy
    proxy.stop()


def _stock_app(queues) -> Celery:
    """A plain Celery producer on kombu's own SQS transport: it sends the ETA as a header and no DelaySeconds."""
    hostport = queues.endpoint.split("://", 1)[1]
    app = Celery("stock-producer", broker=f"sqs://testing:testing@{hostport}", set_as_current=False)
    app.conf.update(
        broker_transport_options={
            "region": "us-east-1",
            "is_secure": False,
            "predefined_queues": {"default": {"url": queues.urls["default"]}},
        },
        task_default_queue="default",
        task_serializer="json",
    )
    return app


def _send_with_eta(queues, job: Job, ahead: float) -> datetime:
    """The stock producer sends the Job's task due `ahead` seconds from now; returns that ETA."""
    stock = _stock_app(queues)
    eta = datetime.now(UTC) + timedelta(seconds=ahead)
    with stock.connection_for_write() as conn:
        stock.send_task(
            "jobs.echo",
            kwargs={"job_id": job.pk, "message": "later"},
            task_id=str(job.task_id),
            eta=eta,
            connection=conn,
        )
    return eta


def test_a_stock_producers_far_eta_runs_once_at_its_eta_without_spending_receives(start_worker, queues, counting_proxy):
    # GIVEN a Job whose task a stock Celery producer sends with an ETA further ahead than the default
    # queue's maxReceiveCount x visibility timeout (2 x 5 s): held by a worker, SQS would redeliver it
    spec = settings.QUEUE_TOPOLOGY.queue("default")
    ahead = spec.max_receive_count * spec.visibility_timeout + 4
    job = Job.objects.create(kind="echo", payload={"message": "later"}, queue="default", state=JobState.QUEUED)
    worker = start_worker(env={"SQS_ENDPOINT_URL": counting_proxy.endpoint})
    eta = _send_with_eta(queues, job, ahead=ahead)  # once the worker is up: its start may take a while here

    # WHEN its ETA passes
    done = wait_for_job(job.pk, {JobState.SUCCEEDED}, timeout=ahead + 30)

    # THEN it ran once, not before its ETA, and no copy is left anywhere (queue or DLQ)
    assert done.attempts == 1
    assert done.started_at >= eta
    assert queues.drained("default")
    assert sum(queues.dlq_depth("default").values()) == 0
    # AND the worker hopped it once and received each SQS copy once: the original, then the delayed copy
    counted = counting_proxy.snapshot()
    print(f"worker's SQS requests through the proxy: {dict(counted)}")  # shown with -s, and on failure
    assert counted["messages_received"] == 2, counted
    assert counted["SendMessageBatch"] == 1, counted
    assert worker.log().count("eta hop: ") == 1
    # AND stopping the worker restores nothing it should not hold
    processes.stop(worker.proc, grace=15)
    assert "UNABLE TO RESTORE" not in worker.log()
    assert Job.objects.get(pk=job.pk).attempts == 1


def test_a_hop_whose_send_fails_deletes_nothing_and_hops_on_the_next_receive(start_worker, queues):
    # GIVEN a worker whose SQS endpoint answers 500 to the next SendMessageBatch and botocore's retries of it
    # (client-config's retries.max_attempts=2 is botocore's count of retries: 3 attempts in all)
    port = int(queues.endpoint.rsplit(":", 1)[1])
    with FaultProxy(port, http=True) as proxy:
        proxy.set_mode("http_5xx", actions="SendMessageBatch", count=3)
        job = Job.objects.create(kind="echo", payload={"message": "later"}, queue="default", state=JobState.QUEUED)
        worker = start_worker(env={"SQS_ENDPOINT_URL": proxy.url})

        # WHEN a message due in 24 s arrives (it must still be due later than the hold bound, 1.25 s, when it comes
        # back: on a loaded CI machine, 2026-12-02, the failed hop and the visibility timeout took 14.4 s of 14)
        eta = _send_with_eta(queues, job, ahead=24)
        done = wait_for_job(job.pk, {JobState.SUCCEEDED}, timeout=60)

        # THEN the failed hop deleted nothing: the message came back after its visibility timeout, hopped
        # then, and ran once, at its ETA, with nothing left in the queue or the DLQ
        assert done.attempts == 1 and done.started_at >= eta
        assert queues.drained("default")
        assert sum(queues.dlq_depth("default").values()) == 0
        counted = proxy.snapshot()
        assert (counted["faulted"]["SendMessageBatch"], counted["seen"]["SendMessageBatch"]) == (3, 4), counted
        assert "eta hop failed on queue default" in worker.log()
        assert worker.log().count("eta hop: ") == 1
