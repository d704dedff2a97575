"""Send a Job's task to SQS within the publish budget: short client timeouts, and a thread joined with a deadline."""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from django.db import connection
from django.utils import timezone
from kombu.exceptions import LimitExceeded, OperationalError
from kombu.pools import ProducerPool

from api.jobs.kinds import JOB_KINDS
from api.jobs.models import Job
from workers.celery_app import app as celery_app
from workers.publish_guards import PublishRefused

logger = logging.getLogger(__name__)

# What says the broker is unreachable or failing, rather than something about one Job: Celery re-raises
# transport connection errors as kombu's OperationalError; botocore's own; sockets; the producer pool full.
BROKER_ERRORS = (OperationalError, LimitExceeded, BotoCoreError, ClientError, OSError)
POOL_LIMIT = 10  # publishes in flight per process; a hung one holds its producer until its timeouts end

Publish = Callable[[Job], None]  # sends the Job's task; raises PublishRefused or the broker's error


@dataclass(frozen=True)
class Attempt:
    """What one bounded publish came to."""

    published: bool = False
    refused: PublishRefused | None = None  # a publish guard refused it: terminal
    error: str | None = None  # not published: the relay tries again after the Job's backoff
    timed_out: bool = False
    broker_down: bool = False  # the error says SQS failed or did not answer (not something about this Job)


_pool_lock = threading.Lock()
_pools: dict[tuple, tuple[object, ProducerPool]] = {}  # each keeps its options alive, so their id stays unique


def _producer_pool() -> ProducerPool:
    """Producers on a connection of their own, whose botocore client has the budget's timeouts.

    kombu builds SendMessage's boto3 client from the `client-config` transport option (Channel.
    _new_boto_client), so overriding it for this connection alone leaves the worker's own settings (a
    read timeout that outlasts its 20 s long poll) untouched. Keyed on the app's broker settings, which
    tests swap.
    """
    conf = celery_app.conf
    key = (conf.broker_url, id(conf.broker_transport_options), settings.PUBLISH_BUDGET)
    with _pool_lock:
        if key not in _pools:
            conn = celery_app.connection_for_write(
                transport_options={"client-config": settings.PUBLISH_BUDGET.client_config()}
            )
            _pools[key] = (conf.broker_transport_options, ProducerPool(conn.Pool(limit=POOL_LIMIT), limit=POOL_LIMIT))
        return _pools[key][1]


def remaining_countdown(due_at: datetime | None, now: datetime) -> int | None:
    """A countdown counts from the submit, not from a late publish: what is left of it, in whole seconds."""
    if due_at is None:
        return None
    left = math.ceil((due_at - now).total_seconds())
    return left if left > 0 else None


def send_job_task(job: Job) -> None:
    """The real publish: the Job's task id, payload, queue and time limits; no Celery-level retry."""
    spec = settings.QUEUE_TOPOLOGY.queue(job.queue)
    with _producer_pool().acquire(block=True, timeout=settings.PUBLISH_BUDGET.seconds) as producer:
        celery_app.send_task(
            JOB_KINDS[job.kind].task_name,
            kwargs={"job_id": job.pk, **job.payload},
            task_id=str(job.task_id),
            queue=job.queue,
            countdown=remaining_countdown(job.due_at, timezone.now()),
            # The limits of the queue it is sent to, which the client may have chosen over the task's
            # routed one: the queue's visibility timeout (or heartbeat) is sized for these.
            time_limit=spec.time_limit,
            soft_time_limit=spec.soft_time_limit,
            producer=producer,
            retry=False,  # the relay retries, with backoff, outside the request
        )


def publish_within_budget(
    job: Job, *, publish: Publish, budget: float, on_late: Callable[[Attempt], None] | None = None
) -> Attempt:
    """Run `publish(job)` in a thread and wait at most `budget` seconds for it.

    Past the budget the caller moves on (the Job stays pending); if the publish ends later after all,
    `on_late` records its outcome from that thread, which then closes its own database connection.
    """
    done = threading.Event()
    lock = threading.Lock()
    state: dict[str, object] = {}

    def run() -> None:
        attempt = _attempt(job, publish)
        with lock:
            abandoned = state.get("abandoned", False)
            state["attempt"] = attempt
        done.set()
        if abandoned and on_late is not None:
            try:
                on_late(attempt)
            except Exception:  # a late record is best effort: the relay's next attempt covers it
                logger.exception("job %s: could not record the late publish outcome", job.pk)
            finally:
                connection.close()

    threading.Thread(target=run, name=f"publish-job-{job.pk}", daemon=True).start()
    done.wait(budget)
    with lock:
        attempt = state.get("attempt")
        if attempt is None:
            state["abandoned"] = True
            return Attempt(
                error=f"SQS did not answer within the {budget:g} s publish budget; the relay will publish it",
                timed_out=True,
                broker_down=True,
            )
    return attempt  # type: ignore[return-value]


def _attempt(job: Job, publish: Publish) -> Attempt:
    try:
        publish(job)
    except PublishRefused as exc:
        return Attempt(refused=exc)
    except BROKER_ERRORS as exc:  # the broker did not take it
        return Attempt(error=f"{type(exc).__name__}: {exc}"[:1000], broker_down=True)
    except Exception as exc:  # something about this Job (a kind no longer known, a payload kombu cannot encode)
        logger.exception("job %s could not be published", job.pk)
        return Attempt(error=f"{type(exc).__name__}: {exc}"[:1000])
    return Attempt(published=True)
