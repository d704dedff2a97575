"""The channel's side of the ETA hop: a received message due further ahead than the worker may hold it goes back
into SQS (DelaySeconds) and never reaches Celery (workers/eta_hop.py plans and sends)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from kombu.log import get_logger

from workers import eta_hop

logger = get_logger(__name__)


class EtaHops:
    """Celery holds a message with a future ETA in a timer, outside the visibility heartbeat, so SQS hands it out
    again every visibility timeout: those due too far ahead are taken out of a receive and hopped instead."""

    def __init__(self, *, client_for: Callable[[str], object]):
        self._client_for = client_for
        self.sender: eta_hop.HopSender | None = None  # started by the first hop

    def take(
        self,
        *,
        queue_url: str,
        queue: str,
        limits: dict | None,
        messages: dict,
        headers_of: Callable[[dict], dict | None] | None = None,
    ) -> dict:
        """The receive's answer without the messages hopped (submitted to the sender's thread). `headers_of`: the
        envelope headers of a message whose body the channel decoded already (received_bodies.py)."""
        if limits is None or not messages.get("Messages"):
            return messages
        try:
            take, hops = eta_hop.plan(
                messages["Messages"],
                now=datetime.now(UTC),
                hold=eta_hop.hold_seconds(limits["visibility_timeout"]),
                headers_of=headers_of,
            )
            if hops:
                self._sender().submit(queue=queue, queue_url=queue_url, hops=hops)
        except Exception:  # never lose a receive to the hop: Celery gets them all, as before
            logger.exception("eta hop planning failed on %s; the messages go to Celery as received", queue)
            return messages
        return {**messages, "Messages": take}

    def _sender(self) -> eta_hop.HopSender:
        if self.sender is None:
            self.sender = eta_hop.HopSender(client_for=self._client_for)
        return self.sender

    def close(self) -> None:
        """A hop submitted is sent before the channel goes."""
        if self.sender is not None:
            self.sender.close()
