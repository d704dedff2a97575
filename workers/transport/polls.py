"""Polls that survive failure and prove the loop is alive: a failed ReceiveMessage is an empty poll with one
warning per streak, and every answered poll (or a loop waiting on busy slots) touches the liveness file."""

from __future__ import annotations

from kombu.log import get_logger

from workers.health import poll_liveness
from workers.receive_failures import guard_receives

logger = get_logger(__name__)

__all__ = ["PollHealth", "guard_receives"]


class PollHealth:
    """What the receive answers say about the poll: failing or working, logged once per change."""

    def __init__(self) -> None:
        self.failing = False

    def answered(self, qname: str, messages) -> bool:
        """True for a real answer (kombu's response dict). kombu's async client answers a timeout, a 5xx or an
        unreachable endpoint with [] instead (kombu 5.7.0 then calls [].get() and the AttributeError kills the
        worker), and any other error with a FailedReceive (workers/receive_failures.py): no messages, the loop
        polls again after polling_interval, and the liveness file goes stale if it keeps failing."""
        if not isinstance(messages, dict):
            if not self.failing:
                why = messages or "timeout, 5xx or no connection"
                logger.warning("SQS receive on %s failed (%s); retrying", qname, why)
                self.failing = True
            return False
        if self.failing:
            logger.warning("SQS receive on %s works again", qname)
            self.failing = False
        poll_liveness.touch()
        return True

    def busy(self) -> None:
        """Every slot is busy, so no poll is due: the loop is alive, the worker is not stuck."""
        if not self.failing:
            poll_liveness.touch()
