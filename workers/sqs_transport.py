"""The transport's former home, kept so a broker_transport of "workers.sqs_transport:Transport" (an older
deployment's setting, a pinned doc) still loads: everything lives in workers/transport/ now."""

from __future__ import annotations

from workers.transport import (
    CLAIM_CHECK_OPTION,
    DELETE_BATCH_SECONDS_OPTION,
    FETCH_WHEN_SLOT_FREES_OPTION,
    QUEUE_LIMITS_OPTION,
    Channel,
    QoS,
    Transport,
)

__all__ = [
    "CLAIM_CHECK_OPTION",
    "DELETE_BATCH_SECONDS_OPTION",
    "FETCH_WHEN_SLOT_FREES_OPTION",
    "QUEUE_LIMITS_OPTION",
    "Channel",
    "QoS",
    "Transport",
]
