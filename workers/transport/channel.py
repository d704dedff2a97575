"""kombu's SQS channel and transport composed with the project's parts, one job per module of this package."""

from __future__ import annotations

import time

from botocore.config import Config
from kombu.log import get_logger
from kombu.transport import SQS
from kombu.transport.SQS import SQS_MAX_MESSAGES
from vine import promise, transform

from workers.finished_messages import finished_messages
from workers.transport.acks import BatchedDeletes
from workers.transport.boto_loader import new_session
from workers.transport.claim_checks import ChannelClaimChecks
from workers.transport.curl_timer import install_http_client
from workers.transport.dependency_pause import DependencyPause
from workers.transport.eta_hops import EtaHops
from workers.transport.hand_back import hand_back
from workers.transport.options import (
    CLAIM_CHECK_OPTION,
    DELETE_BATCH_SECONDS_OPTION,
    FETCH_WHEN_SLOT_FREES_OPTION,
    QUEUE_LIMITS_OPTION,
    RECEIVE_AHEAD_COALESCE_OPTION,
    RECEIVE_AHEAD_OPTION,
    RECEIVE_AHEAD_PREDICT_OPTION,
    queue_limits,
)
from workers.transport.pacer import AHEAD_COALESCE_SECONDS, FetchPacer, Reservation
from workers.transport.polls import PollHealth, guard_receives
from workers.transport.publishing import guard_publish
from workers.transport.received_bodies import ReceivedBodies
from workers.transport.slot_forecast import SlotForecast

logger = get_logger(__name__)

# A receive ahead waits at most this long for a message: on a queue that just emptied it comes back soon and the
# queue's loop (one long poll of wait_time_seconds) takes over, so an idle worker keeps one receive per queue.
RECEIVE_AHEAD_WAIT_SECONDS = 1


class QoS(SQS.QoS):
    """kombu's SQS QoS that tells its channel when a prefetch slot frees (an ack or a reject)."""

    def ack(self, delivery_tag):
        queue = self._queue_of(delivery_tag)
        super().ack(delivery_tag)
        self.channel.slot_freed(queue)

    def reject(self, delivery_tag, requeue=False):
        queue = self._queue_of(delivery_tag)
        super().reject(delivery_tag, requeue=requeue)
        self.channel.slot_freed(queue)

    def _queue_of(self, delivery_tag) -> str | None:
        """The queue a delivered message came from (its routing key), for the pacer's forecast."""
        try:
            return (self.get(delivery_tag).delivery_info or {}).get("routing_key")
        except (KeyError, AttributeError):
            return None


class Channel(SQS.Channel):
    """An SQS channel that refuses what SQS would mishandle (publishing), hands restored messages back at once
    (hand_back), fetches large bodies from S3 (claim_checks), hops far ETAs back into SQS (eta_hops), survives a
    failed poll (polls), parks while the database is down (dependency_pause), fetches again as soon as a task ends
    (pacer) and deletes in batches off the event loop (acks)."""

    QoS = QoS

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        options = self.transport_options
        self.polls = PollHealth()
        ahead = options.get(RECEIVE_AHEAD_OPTION, True) and self._fetch_when_slot_frees()
        predict = ahead and options.get(RECEIVE_AHEAD_PREDICT_OPTION, True)
        self.pacer = FetchPacer(
            hub=lambda: self.hub,
            free_slots=lambda: self.qos.can_consume_max_estimate(),
            prefetch=lambda: self.qos.prefetch_count,
            polling_interval=lambda: self.connection.polling_interval,
            resume=self._schedule_queue,
            receive_ahead=self._receive_ahead if ahead else None,
            wait_seconds=lambda: self.wait_time_seconds,
            max_per_receive=SQS_MAX_MESSAGES,
            ahead_coalesce_seconds=float(options.get(RECEIVE_AHEAD_COALESCE_OPTION, AHEAD_COALESCE_SECONDS)),
            clock=time.monotonic,
            forecast=SlotForecast(time.monotonic) if predict else None,
            may_predict=self._heartbeat_covers,
        )
        self.dependency_pause = DependencyPause(
            call_soon=lambda callback: self.hub.call_soon(callback), on_reopen=self._resume_after_gate
        )
        self.claim_checks = ChannelClaimChecks(options.get(CLAIM_CHECK_OPTION))
        # The channel's clients have the project's timeouts (transport option client-config).
        self.eta_hops = EtaHops(client_for=lambda queue: self.sqs(queue=self.canonical_queue_name(queue)))
        self.received_bodies = ReceivedBodies(decode=self._decode_python_message_body, parse=self._prepare_json_payload)
        self.deletes = BatchedDeletes(
            client_for=lambda queue: self.sqs(queue=queue),
            window=float(options.get(DELETE_BATCH_SECONDS_OPTION, 0) or 0),
            queue_limits=options.get(QUEUE_LIMITS_OPTION, {}),
        )

    def _new_boto_client(self, service, region, access_key_id, secret_access_key, session_token=None, config=None):
        """kombu's own (kombu 5.7.0), in a session that reads models through the shared loader
        (workers/transport/boto_loader.py) instead of a boto3.Session that parses them again."""
        is_secure = self.is_secure if self.is_secure is not None else True
        client_config = Config(**(self.transport_options.get("client-config") or {}))
        if config is not None:
            client_config = client_config.merge(config)
        return new_session().create_client(
            service,
            region_name=region,
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
            aws_session_token=session_token,
            endpoint_url=self.endpoint_url,
            use_ssl=is_secure,
            config=client_config,
        )

    # --- publishing -------------------------------------------------------------------------------------------

    def _put(self, queue, message, **kwargs):
        if message.get("redelivered"):
            return self.hand_back(queue, message)
        self.apply_publish_guards(queue, message)
        return super()._put(queue, message, **kwargs)

    def hand_back(self, queue, message) -> None:
        """A message the worker restores (kombu's _restore puts it back, `redelivered`) is visible again at once."""
        hand_back(
            self.sqs(queue=self.canonical_queue_name(queue)),
            queue=queue,
            queue_url=self._new_queue(queue),
            message=message,
        )

    def apply_publish_guards(self, queue: str, message: dict) -> None:
        limits = queue_limits(self.transport_options, queue)
        if limits is None:
            return  # not a topology queue: kombu's predefined_queues check refuses it
        guard_publish(
            queue, message, limits=limits, sqs_base64=self.sqs_base64_encoding, claim_checks=self.claim_checks
        )

    # --- receiving ------------------------------------------------------------------------------------------

    def asynsqs(self, queue=None):
        """kombu's async client, whose failed receives arrive as FailedReceive instead of raising, on the event
        loop's HTTP client with curl's timer honoured (curl_timer)."""
        install_http_client()
        return guard_receives(super().asynsqs(queue))

    def _on_messages_ready(self, queue, qname, messages):
        if not self.polls.answered(qname, messages):
            return 0
        received = len(messages.get("Messages") or [])
        with self.received_bodies.decoded(messages.get("Messages") or ()):  # once, for the hop's plan and Celery
            messages = self.eta_hops.take(
                queue_url=queue,
                queue=qname,
                limits=queue_limits(self.transport_options, qname),
                messages=messages,
                headers_of=self.received_bodies.headers,
            )
            taken = super()._on_messages_ready(queue, qname, messages)
        return received if received else taken  # anything received: poll again at once (kombu's _loop1)

    def _message_to_python(self, message, queue_name, q_url):
        """kombu's payload, with a claim-checked body fetched from S3 back in place before Celery decodes it. Any
        hook that re-sends a message as received must run before this: the pointer travels, not the body.
        A body decoded already (received_bodies.py) is not decoded again: the rest is kombu's own
        _message_to_python (tests/unit/workers/transport/test_received_bodies.py compares the two)."""
        decoded = self.received_bodies.take(message)
        if decoded is None or queue_name in self._noack_queues:
            payload = super()._message_to_python(message, queue_name, q_url)
        else:
            text, payload = decoded
            payload = self._envelope_payload(payload, text, message, q_url)
        return self.claim_checks.received(payload, queue_name)

    # --- pacing -------------------------------------------------------------------------------------------

    def _schedule_queue(self, queue):
        if queue not in self._active_queues or self.hub is None:
            return super()._schedule_queue(queue)
        if self.dependency_pause.closed():
            self.pacer.park(queue)  # the gate's reopening resumes it; the fallback timer only re-parks it
            self.pacer.cool(queue)
            return None
        if self.qos.can_consume_max_estimate() == 0:
            self.polls.busy()
        if self._fetch_when_slot_frees() and not self.pacer.may_receive(queue):
            return None
        return super()._schedule_queue(queue)

    def _get_bulk_async(self, queue, callback=None):
        """kombu's receive for the queue's loop, asking for the slots the pacer holds for it (with receive ahead:
        the free slots no receive in flight asked for), and telling the pacer when it is answered."""
        reservation = self.pacer.reserve(queue) if self.hub is not None and self._fetch_when_slot_frees() else None
        if reservation is None:
            return super()._get_bulk_async(queue, callback=callback)
        return self._get_async(queue, reservation.count, callback=promise(self._loop_answered, (reservation, callback)))

    def _loop_answered(self, reservation: Reservation, callback, fetched=0):
        self.pacer.answered(reservation, fetched or 0)
        if callback is not None:
            callback(fetched)

    def _receive_ahead(self, reservation: Reservation) -> bool:
        """One receive beside the queue's loop, for the slots of `reservation`, waiting at most
        RECEIVE_AHEAD_WAIT_SECONDS; its answer goes where the loop's goes (_on_messages_ready), then to the pacer,
        not to kombu's _loop1 (the queue keeps one loop). False when it cannot go now."""
        queue = reservation.queue
        if queue not in self._active_queues or self.dependency_pause.closed():
            return False
        try:
            q_url, qname = self._new_queue(queue), self.canonical_queue_name(queue)
            self.asynsqs(queue=qname).receive_message(
                qname,
                q_url,
                number_messages=reservation.count,
                wait_time_seconds=RECEIVE_AHEAD_WAIT_SECONDS,
                callback=transform(self._on_messages_ready, promise(self.pacer.answered, (reservation,)), q_url, queue),
            )
        except Exception:  # the loop still receives: a receive ahead is only ever a head start
            logger.exception("a receive ahead on %s could not be sent; the queue's loop receives as before", queue)
            return False
        return True

    def _heartbeat_covers(self, queue: str) -> bool:
        """Whether the visibility heartbeat keeps `queue`'s held messages invisible (the pacer predicts only then)."""
        limits = queue_limits(self.transport_options, queue) or {}
        return bool(limits.get("visibility_heartbeat_seconds"))

    def _fetch_when_slot_frees(self) -> bool:
        return bool(self.transport_options.get(FETCH_WHEN_SLOT_FREES_OPTION, True))

    def slot_freed(self, queue: str | None = None) -> None:
        if self.hub is not None:
            self.pacer.slot_freed(queue)

    def _resume_after_gate(self) -> None:
        self.pacer.resume_waiting(release=True)

    # --- acks ---------------------------------------------------------------------------------------------

    def basic_ack(self, delivery_tag, multiple=False):
        """Delete through a batch, from a thread, in a worker's event loop; kombu deletes each message with its own
        blocking DeleteMessage, which stalls the loop for a round trip."""
        finished_messages.finish(delivery_tag)  # the heartbeat never extends it again
        try:
            message = self.qos.get(delivery_tag)
        except KeyError:
            return super().basic_ack(delivery_tag, multiple)
        self.claim_checks.acked(message.headers)
        info = message.delivery_info
        queue = self.canonical_queue_name(info["routing_key"]) if "routing_key" in info else None
        if self.hub is None or not self.deletes.delete(queue=queue, delivery_info=info):
            return super().basic_ack(delivery_tag, multiple)
        # kombu's virtual channel: the slot frees now (QoS.ack), the SQS delete follows in its batch.
        return super(SQS.Channel, self).basic_ack(delivery_tag, multiple)

    def basic_reject(self, delivery_tag, requeue=False):
        finished_messages.finish(delivery_tag)  # rejected or requeued: the heartbeat never extends it again
        return super().basic_reject(delivery_tag, requeue=requeue)

    def close(self):
        self.eta_hops.close()  # a hop submitted is sent before the channel goes
        self.deletes.close()  # before the channel goes: acked means deleted
        self.claim_checks.close()
        return super().close()


class Transport(SQS.Transport):
    """kombu's SQS transport, with the guarded channel."""

    Channel = Channel
