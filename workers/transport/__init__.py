"""kombu's SQS transport, hardened: publish guards, hand-back, claim check, ETA hops, polls that survive failure,
the dependency-gate pause, a fetch pace set by the tasks and batched deletes, one module each."""

from __future__ import annotations

from workers.transport.channel import Channel, QoS, Transport
from workers.transport.options import (
    CLAIM_CHECK_OPTION,
    DELETE_BATCH_SECONDS_OPTION,
    FETCH_WHEN_SLOT_FREES_OPTION,
    QUEUE_LIMITS_OPTION,
    RECEIVE_AHEAD_COALESCE_OPTION,
    RECEIVE_AHEAD_OPTION,
    RECEIVE_AHEAD_PREDICT_OPTION,
)
from workers.transport.pacer import AHEAD_COALESCE_SECONDS, FETCH_COALESCE_SECONDS, FetchPacer

__all__ = [
    "CLAIM_CHECK_OPTION",
    "AHEAD_COALESCE_SECONDS",
    "DELETE_BATCH_SECONDS_OPTION",
    "FETCH_COALESCE_SECONDS",
    "FETCH_WHEN_SLOT_FREES_OPTION",
    "QUEUE_LIMITS_OPTION",
    "RECEIVE_AHEAD_COALESCE_OPTION",
    "RECEIVE_AHEAD_OPTION",
    "RECEIVE_AHEAD_PREDICT_OPTION",
    "Channel",
    "FetchPacer",
    "QoS",
    "Transport",
]
