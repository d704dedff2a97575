"""The transport options this project adds to kombu's SQS transport (set by workers/celery_config.py)."""

from __future__ import annotations

# {queue: {"visibility_timeout": s, "visibility_heartbeat_seconds": s (0: none), "max_message_bytes": n,
# "retention_seconds": s}}, built from the topology.
QUEUE_LIMITS_OPTION = "queue_limits"
# Fetch again as soon as a prefetch slot frees (default), not after polling_interval.
FETCH_WHEN_SLOT_FREES_OPTION = "fetch_when_slot_frees"
# With fetch_when_slot_frees: a slot that frees while the queue's receive is in flight gets a receive of its own
# (workers/transport/pacer.py, receive ahead); off: one receive per queue at a time.
RECEIVE_AHEAD_OPTION = "receive_ahead"
# With receive_ahead: a hot queue whose tasks are shorter than its round trip, and which has a visibility heartbeat,
# also receives for the busy slots predicted free when the receive comes back (pacer.py, slot_forecast.py); off:
# only for slots free now.
RECEIVE_AHEAD_PREDICT_OPTION = "receive_ahead_predict"
# With receive_ahead: seconds a freed slot waits for company while a receive of its queue is in flight (0: none).
RECEIVE_AHEAD_COALESCE_OPTION = "receive_ahead_coalesce_seconds"
# Seconds an acked message may wait to be deleted in a batch (0: one DeleteMessage per ack).
DELETE_BATCH_SECONDS_OPTION = "delete_batch_seconds"
# The claim check's bucket and per-queue ceilings (workers/claim_check.py ClaimCheckOptions).
CLAIM_CHECK_OPTION = "claim_check"


def queue_limits(options: dict, queue: str) -> dict | None:
    """The topology's limits of `queue`, or None for a queue outside the topology."""
    return options.get(QUEUE_LIMITS_OPTION, {}).get(queue)
