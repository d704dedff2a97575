"""Record each message Celery deletes without running its task (expired, revoked): a row, a WARNING, its Job."""

from __future__ import annotations

import logging
from typing import Any

from django.dispatch import Signal

logger = logging.getLogger(__name__)

# Sent once a discard is recorded, with the task's task_id, task_name, queue, reason, detail and kwargs: the app
# that owns the task's effects reacts (api/jobs/apps.py marks an expired task's Job expired). workers/ never
# imports api/.
message_discarded = Signal()


def record_discard(
    *, task_id: str, task_name: str, queue: str, reason: str, detail: str = "", kwargs: dict | None = None
) -> None:
    """Log the discard at WARNING, then store it: a DiscardedMessage row, then message_discarded's receivers (for an
    expired task with a `job_id` keyword, its Job `expired`). A database error is logged, never raised: this runs
    in the worker's consumer, which must go on consuming."""
    logger.warning(
        "task %s: %s[%s] on queue %s was deleted without running (%s)", reason, task_name, task_id, queue, detail
    )
    from django.db import close_old_connections, connection

    from workers.models import DiscardedMessage

    try:
        if not connection.in_atomic_block:
            close_old_connections()  # the worker's main process has no request cycle to drop a broken connection
        DiscardedMessage.objects.create(
            task_id=task_id, task_name=task_name, queue=queue, reason=reason, detail=detail[:1000]
        )
        message_discarded.send(
            sender=None,
            task_id=task_id,
            task_name=task_name,
            queue=queue,
            reason=reason,
            detail=detail,
            kwargs=kwargs if isinstance(kwargs, dict) else {},
        )
    except Exception:
        logger.exception("could not record the discard of %s[%s] (%s)", task_name, task_id, reason)


def on_task_revoked(sender=None, request=None, terminated=False, expired=False, **_kwargs) -> None:
    """Celery's task_revoked signal: sent by Request._announce_revoked after it acked (deleted) the message.

    Every path by which Celery's worker drops a task without running it goes through Request.revoked(): the
    strategy on receipt (an `expires` passed, or the id in the revoked set) and execute_using_pool/execute
    before the pool gets it (an ETA held past `expires`). `terminated` is a running task killed by
    revoke(terminate=True): it started, so it is not a discard."""
    if terminated or request is None:
        return
    from workers.models import DiscardReason  # not at import: this module loads before Django's apps

    delivery_info: dict[str, Any] = getattr(request, "delivery_info", None) or {}
    name = getattr(request, "task", None) or getattr(sender, "name", "?")
    reason = DiscardReason.EXPIRED if expired else DiscardReason.REVOKED
    if expired:
        detail = f"its expires {getattr(request, 'expires', None)} had passed"
    else:
        detail = "its id is in the worker's revoked set"
    record_discard(
        task_id=request.id,
        task_name=name,
        queue=delivery_info.get("routing_key") or "",
        reason=reason,
        detail=detail,
        kwargs=getattr(request, "kwargs", None),
    )
