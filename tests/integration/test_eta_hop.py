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


def test_a_stock_producers_far_eta_runs_once_at_its_eta_without_spending_receives(start_worker, queues, counting_proxy):
    # GIVEN a Job whose task a stock Celery producer sends with an ETA further ahead than the default
    # queue's maxReceiveCount x visibility timeout (2 x 5 s): held by a worker, SQS would redeliver it
    spec = settings.QUEUE_TOPOLOGY.queue("default")
    ahead = spec.max_receive_count * spec.visibility_timeout + 4
    job = Job.objects.create(kind="echo", payload={"message": "later"}, queue="default", state=JobState.QUEUED)
    worker = start_worker(env={"SQS_ENDPOINT_URL": counting_proxy.endpoint})
    stock = _stock_app(queues)
    eta = datetime.now(UTC) + timedelta(seconds=ahead)  # once the worker is up: its start may take a while here
    with stock.connection_for_write() as conn:
        stock.send_task(
            "jobs.echo", kwargs={"job_id": job.pk, "message": "later"}, task_id=job.task_id, eta=eta, connection=conn
        )

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
