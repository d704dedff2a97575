"""kombu's SQS transport, hardened: publish guards (delays become DelaySeconds, size is checked, a body too large
for its queue goes through S3 where the queue allows it), a poll that survives failures, far ETAs hopped back into
SQS instead of held, and a consume pace set by the tasks (fetch when a slot frees, delete in batches)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from botocore.exceptions import BotoCoreError, ClientError
from kombu.log import get_logger
from kombu.transport import SQS
from kombu.transport.SQS import SQS_MAX_MESSAGES

from core.envelope import header_time
from workers import claim_check, eta_hop
from workers.delete_batches import DEFAULT_KEEP_SECONDS, DeleteBatches, PendingDelete
from workers.delete_health import DeleteFailures, unhealthy_after
from workers.dependency_gate import clear_stale_pause, dependency_gate
from workers.finished_messages import finished_messages
from workers.health import poll_heartbeat
from workers.publish_guards import check_encoded_size, encoded_message_bytes, sqs_delay_seconds
from workers.receive_failures import guard_receives

logger = get_logger(__name__)

# Transport option carrying {queue: {"visibility_timeout": s, "max_message_bytes": n}}, built from
# the topology by workers/celery_config.py.
QUEUE_LIMITS_OPTION = "queue_limits"
# Transport option: fetch again as soon as a prefetch slot frees (default), not after polling_interval.
FETCH_WHEN_SLOT_FREES_OPTION = "fetch_when_slot_frees"
# With some slots still busy, wait this long for more to free, so one receive fills them together.
FETCH_COALESCE_SECONDS = 0.02
# Transport option: seconds an acked message may wait to be deleted in a batch (0: one DeleteMessage per ack).
DELETE_BATCH_SECONDS_OPTION = "delete_batch_seconds"
# Transport option: the claim check's bucket and per-queue ceilings (workers/claim_check.py ClaimCheckOptions).
CLAIM_CHECK_OPTION = "claim_check"


def _eta_delay(eta: str | None, now: datetime) -> float:
    if not eta:
        return 0.0
    return (header_time(eta) - now).total_seconds()


class QoS(SQS.QoS):
    """kombu's SQS QoS that tells its channel when a prefetch slot frees (an ack or a reject)."""

    def ack(self, delivery_tag):
        super().ack(delivery_tag)
        self.channel.slot_freed()

    def reject(self, delivery_tag, requeue=False):
        super().reject(delivery_tag, requeue=requeue)
        self.channel.slot_freed()


class Channel(SQS.Channel):
    """An SQS channel that refuses what SQS would mishandle, survives a failed poll, proves it polls, and
    fetches again as soon as a task ends."""

    QoS = QoS
    _poll_failing = False
    _watching_gate = False

    def __init__(self, *args, **kwargs):
        # Queues whose poll loop waits for a free prefetch slot. kombu re-checks every polling_interval
        # (1 s): with short tasks a worker then idles most of each second (prefetch / (interval + round
        # trip) tasks/s). A freed slot resumes the loop within FETCH_COALESCE_SECONDS; the timer stays as
        # the fallback.
        self._waiting_for_slot: dict[str, None] = {}  # an ordered set: the longest waiting first
        self._slot_timer_set: set[str] = set()  # at most one fallback timer per queue
        self._coalescing = False  # a resume is due FETCH_COALESCE_SECONDS after the first freed slot
        self._released: set[str] = set()  # queues a timer let receive for fewer than _enough_slots()
        self._delete_batches: DeleteBatches | None = None
        self._hop_sender: eta_hop.HopSender | None = None  # workers/eta_hop.py, started by the first hop
        self._claim_check: claim_check.ClaimChecks | None = None
        super().__init__(*args, **kwargs)

    def _put(self, queue, message, **kwargs):
        if message.get("redelivered"):
            return self._hand_back(queue, message)
        self._apply_publish_guards(queue, message)
        return super()._put(queue, message, **kwargs)

    def _hand_back(self, queue, message) -> None:
        """A message the worker restores (a lost pool child, a requeue, shutdown) is visible again at once:
        kombu would hide it for wait_time_seconds (20 s) first. Marked finished first, so no heartbeat tick
        re-hides it afterwards (workers/finished_messages.py)."""
        finished_messages.finish(message["properties"]["delivery_tag"], after_extensions=True)
        try:
            self.sqs(queue=self.canonical_queue_name(queue)).change_message_visibility(
                QueueUrl=self._new_queue(queue),
                ReceiptHandle=message["properties"]["delivery_tag"],
                VisibilityTimeout=0,
            )
        except (ClientError, BotoCoreError) as exc:
            # E.g. ReceiptHandleIsInvalid after a pause past the visibility timeout: the message is back in the
            # queue already (or done by whoever took it), so there is nothing to hand back. Raising here would end
            # the worker (or, at shutdown, Celery's restore with an emergency dump).
            logger.warning(
                "could not hand back a message on %s (%s); it is visible again after its visibility timeout",
                queue,
                exc,
            )

    def _apply_publish_guards(self, queue: str, message: dict) -> None:
        limits = self.transport_options.get(QUEUE_LIMITS_OPTION, {}).get(queue)
        if limits is None:
            return  # not a topology queue: kombu's predefined_queues check refuses it
        headers = message.get("headers") or {}
        properties = message.setdefault("properties", {})
        # Either spelling kombu accepts, and the ETA Celery writes for a countdown: the longest wins.
        requested = [
            float(properties[key]) for key in ("DelaySeconds", "delay_seconds") if properties.get(key) is not None
        ]
        now = datetime.now(UTC)
        eta_delay = _eta_delay(headers.get("eta"), now)
        delay = max([*requested, eta_delay])
        seconds = sqs_delay_seconds(queue=queue, delay=delay, retention_seconds=limits["retention_seconds"])
        if seconds is not None:
            properties.pop("delay_seconds", None)
            properties["DelaySeconds"] = seconds
            if seconds >= delay:
                # SQS holds the message until it is due; the worker must not hold it again as an ETA.
                if headers.get("eta"):
                    headers["eta"] = None
            elif eta_delay < delay:
                # Longer than SQS holds: an `eta` header tells the worker that receives it to hop it on
                # (workers/eta_hop.py); a countdown's ETA header already does.
                message["headers"] = {**headers, "eta": (now + timedelta(seconds=delay)).isoformat()}
        claim_check.drop_stale_pointer(message)  # a retry carries its original's pointer, not its body
        encoded = encoded_message_bytes(message, sqs_base64=self.sqs_base64_encoding)
        if encoded > limits["max_message_bytes"] and self._claim_checks().ceiling(queue):
            # The body goes to S3; the headers (task, id, retries...) stay in the message, with the pointer.
            self._claim_checks().check_in(queue, message)
            encoded = encoded_message_bytes(message, sqs_base64=self.sqs_base64_encoding)
        check_encoded_size(queue=queue, encoded_bytes=encoded, max_message_bytes=limits["max_message_bytes"])

    def _claim_checks(self) -> claim_check.ClaimChecks:
        if self._claim_check is None:
            options = claim_check.ClaimCheckOptions.from_option(self.transport_options.get(CLAIM_CHECK_OPTION))
            self._claim_check = claim_check.ClaimChecks(options)
        return self._claim_check

    def _message_to_python(self, message, queue_name, q_url):
        """kombu's payload, with a claim-checked body fetched from S3 back in place before Celery decodes it. Any
        hook that re-sends a message as received must run before this: the pointer travels, not the body."""
        payload = super()._message_to_python(message, queue_name, q_url)
        if claim_check.HEADER in (payload.get("headers") or {}):
            self._claim_checks().check_out(payload, queue_name)
        return payload

    def _claim_check_acked(self, delivery_tag) -> None:
        try:
            headers = self.qos.get(delivery_tag).headers or {}
        except KeyError:
            return
        if claim_check.HEADER in headers:
            self._claim_checks().acked(headers)  # the S3 delete runs on a thread of its own

    def basic_ack(self, delivery_tag, multiple=False):
        """Delete through a batch, from a thread (workers/delete_batches.py), in a worker's event loop; kombu
        deletes each message with its own blocking DeleteMessage, which stalls the loop for a round trip."""
        finished_messages.finish(delivery_tag)  # the heartbeat never extends it again
        self._claim_check_acked(delivery_tag)
        batches = self._deletes()
        try:
            info = self.qos.get(delivery_tag).delivery_info
            receipt_handle = info["sqs_message"]["ReceiptHandle"]
        except KeyError:
            batches = None
        if batches is None:
            return super().basic_ack(delivery_tag, multiple)
        queue = self.canonical_queue_name(info["routing_key"]) if "routing_key" in info else None
        batches.add(PendingDelete(queue=queue, url=info["sqs_queue"], receipt_handle=receipt_handle))
        # kombu's virtual channel: the slot frees now (QoS.ack), the SQS delete follows in its batch.
        return super(SQS.Channel, self).basic_ack(delivery_tag, multiple)

    def basic_reject(self, delivery_tag, requeue=False):
        finished_messages.finish(delivery_tag)  # rejected or requeued: the heartbeat never extends it again
        return super().basic_reject(delivery_tag, requeue=requeue)

    def _deletes(self) -> DeleteBatches | None:
        window = float(self.transport_options.get(DELETE_BATCH_SECONDS_OPTION, 0) or 0)
        if self._delete_batches is None and window > 0 and self.hub is not None:
            limits = self.transport_options.get(QUEUE_LIMITS_OPTION, {})
            longest = max((q["visibility_timeout"] for q in limits.values()), default=DEFAULT_KEEP_SECONDS)
            self._delete_batches = DeleteBatches(
                client_for=lambda queue: self.sqs(queue=queue),
                window=window,
                # A receipt handle is worth retrying while its message may still be in flight: at most one
                # visibility timeout after the ack (the heartbeat stops extending it at the ack).
                keep_for=lambda queue: limits.get(queue, {}).get("visibility_timeout", longest),
                failures=DeleteFailures(unhealthy_after=unhealthy_after()),
            )
        return self._delete_batches

    def close(self):
        if self._hop_sender is not None:
            self._hop_sender.close()  # a hop submitted is sent before the channel goes
        if self._delete_batches is not None:
            self._delete_batches.close()  # before the channel goes: acked means deleted
        if self._claim_check is not None:
            self._claim_check.close()
        return super().close()

    def asynsqs(self, queue=None):
        """kombu's async client, whose failed receives arrive as FailedReceive instead of raising
        (workers/receive_failures.py)."""
        return guard_receives(super().asynsqs(queue))

    def _on_messages_ready(self, queue, qname, messages):
        if not isinstance(messages, dict):
            # kombu's async client answers a timeout, a 5xx or an unreachable endpoint with [] instead of
            # a response (kombu 5.7.0 then calls [].get() and the AttributeError kills the worker), and any
            # other error with a FailedReceive here. It is no messages: the loop polls again after
            # polling_interval, and the heartbeat goes stale if it keeps failing.
            if not self._poll_failing:
                why = messages or "timeout, 5xx or no connection"
                logger.warning("SQS receive on %s failed (%s); retrying", qname, why)
                self._poll_failing = True
            return 0
        if self._poll_failing:
            logger.warning("SQS receive on %s works again", qname)
            self._poll_failing = False
        poll_heartbeat.beat()
        received = len(messages.get("Messages") or [])
        messages = self._hop_far_etas(queue, qname, messages)
        taken = super()._on_messages_ready(queue, qname, messages)
        return received if received else taken  # anything received: poll again at once (kombu's _loop1)

    def _hop_far_etas(self, queue_url, qname, messages: dict) -> dict:
        """Celery holds a message with a future ETA in a timer, outside the visibility heartbeat, so SQS hands
        it out again every visibility timeout. One due further ahead than workers/eta_hop.py's hold bound goes
        back into SQS (DelaySeconds) instead, and never reaches Celery."""
        limits = self.transport_options.get(QUEUE_LIMITS_OPTION, {}).get(qname)
        if limits is None or not messages.get("Messages"):
            return messages
        try:
            take, hops = eta_hop.plan(
                messages["Messages"], now=datetime.now(UTC), hold=eta_hop.hold_seconds(limits["visibility_timeout"])
            )
            if hops:
                self._hops().submit(queue=qname, queue_url=queue_url, hops=hops)
        except Exception:  # never lose a receive to the hop: Celery gets them all, as before
            logger.exception("eta hop planning failed on %s; the messages go to Celery as received", qname)
            return messages
        return {**messages, "Messages": take}

    def _hops(self) -> eta_hop.HopSender:
        if self._hop_sender is None:
            # The channel's clients have the project's timeouts (transport option client-config).
            self._hop_sender = eta_hop.HopSender(
                client_for=lambda queue: self.sqs(queue=self.canonical_queue_name(queue))
            )
        return self._hop_sender

    def _schedule_queue(self, queue):
        if queue not in self._active_queues:
            return super()._schedule_queue(queue)
        if self._paused_for_dependency(queue):
            return None
        free = self.qos.can_consume_max_estimate()
        if free == 0 and not self._poll_failing:
            # Every slot is busy, so no poll is due: the loop is alive, the worker is not stuck.
            poll_heartbeat.beat()
        if free is not None and self._fetch_when_slot_frees():
            if free == 0 or (free < self._enough_slots() and queue not in self._released):
                self._park(queue, coalesce=free > 0)
                return None
            self._released.discard(queue)
        return super()._schedule_queue(queue)

    def _paused_for_dependency(self, queue) -> bool:
        """While the database is down (workers/dependency_gate.py) the loop is parked like a loop waiting for a
        slot, so it makes no ReceiveMessage and every message stays in SQS, unreceived. The gate resumes the
        parked loops on this event loop when the database answers; the fallback timer only re-parks them."""
        if self.hub is None:
            return False
        if not self._watching_gate:
            self._watching_gate = True
            if not dependency_gate.closed:
                clear_stale_pause()
            dependency_gate.watch(self._on_gate_reopened)
        if not dependency_gate.closed:
            return False
        self._park(queue, coalesce=False)
        return True

    def _on_gate_reopened(self) -> None:
        """Called from the gate's probe thread: resume on the event loop (Hub.call_soon wakes it up)."""
        self.hub.call_soon(self._resume_after_gate)

    def _resume_after_gate(self) -> None:
        self._resume_waiting(release=True)

    def _fetch_when_slot_frees(self) -> bool:
        return self.hub is not None and bool(self.transport_options.get(FETCH_WHEN_SLOT_FREES_OPTION, True))

    def _enough_slots(self) -> int:
        """Free slots worth a receive at once: the whole prefetch (a receive takes up to 10). With fewer, the
        loop waits FETCH_COALESCE_SECONDS for more to free: tasks that end together share one receive."""
        return max(1, min(self.qos.prefetch_count or 1, SQS_MAX_MESSAGES))

    def _park(self, queue, *, coalesce: bool) -> None:
        """Stop the queue's loop until slots free. Exactly one of slot_freed(), the coalescing timer and the
        fallback timer resumes it (_resume drops it from the set first), so a queue never has two loops, each
        of which would keep a receive outstanding."""
        self._waiting_for_slot[queue] = None
        if queue not in self._slot_timer_set:
            self._slot_timer_set.add(queue)
            self.hub.call_later(self.connection.polling_interval or 1, self._on_slot_timer, queue)
        if coalesce:
            self._start_coalescing()

    def _start_coalescing(self) -> None:
        if not self._coalescing:
            self._coalescing = True
            self.hub.call_later(FETCH_COALESCE_SECONDS, self._on_coalesce_timer)

    def _on_coalesce_timer(self) -> None:
        self._coalescing = False
        self._resume_waiting(release=True)

    def _on_slot_timer(self, queue) -> None:
        """The fallback, kombu's own pace: after polling_interval any free slot is worth a receive."""
        self._slot_timer_set.discard(queue)
        if queue in self._waiting_for_slot:
            self._released.add(queue)
            self._resume(queue)

    def _resume(self, queue) -> None:
        if queue in self._waiting_for_slot:
            del self._waiting_for_slot[queue]
            self._schedule_queue(queue)

    def slot_freed(self) -> None:
        """A task's message was acked or rejected: resume the loops that wait for a slot, at once when every
        slot is free, else FETCH_COALESCE_SECONDS later, so tasks that end together share one ReceiveMessage
        (SQS bills a receive of 1 like a receive of 10)."""
        if not self._waiting_for_slot or self.hub is None:
            return
        free = self.qos.can_consume_max_estimate()
        if free is None or free >= self._enough_slots():
            self._resume_waiting()
        else:
            self._start_coalescing()

    def _resume_waiting(self, *, release: bool = False) -> None:
        """Resume, on the event loop, as many waiting loops as there are free slots, longest waiting first
        (each resumed loop receives for every free slot; resuming more would fetch messages no slot can
        take, and a queue parked again goes to the back). `release`: they may receive for fewer than
        _enough_slots()."""
        free = self.qos.can_consume_max_estimate()
        waiting = list(self._waiting_for_slot)
        for queue in waiting if free is None else waiting[: max(free, 0)]:
            if release:
                self._released.add(queue)
            self.hub.call_soon(self._resume, queue)


class Transport(SQS.Transport):
    """kombu's SQS transport, with the guarded channel."""

    Channel = Channel
