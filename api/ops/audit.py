"""Every DLQ replay posted from the queues page leaves a ReplayAudit row and a log line."""

from __future__ import annotations

import json
import logging
from functools import wraps

from django.db import DatabaseError
from django.http import HttpRequest, JsonResponse
from django.utils import timezone

from api.ops.models import ReplayAudit

logger = logging.getLogger("api.ops.audit")


def _filters(body: bytes) -> object:
    try:
        return json.loads(body or b"{}")
    except (ValueError, UnicodeDecodeError):
        return body.decode(errors="replace")[:2000]


def audited_replay(view):
    """Records who asked for what before the replay runs (a replay that cannot be audited does not run:
    503), and what it answered after; logs one line with the same fields."""

    @wraps(view)
    def wrapper(request: HttpRequest, queue: str, *args, **kwargs):
        filters = _filters(request.body)
        dry_run = not (isinstance(filters, dict) and filters.get("dry_run") is False)
        user = request.user if request.user.is_authenticated else None
        try:
            audit = ReplayAudit.objects.create(
                user=user,
                username=user.get_username() if user else "",
                queue=queue[:100],
                dry_run=dry_run,
                filters=filters,
            )
        except DatabaseError:
            logger.exception("dlq replay of %s refused: its audit record could not be written", queue)
            return JsonResponse(
                {"error": "the replay's audit record could not be written: nothing replayed"}, status=503
            )

        response = view(request, queue, *args, **kwargs)

        answer = json.loads(response.content) if response.get("Content-Type", "").startswith("application/json") else {}
        audit.status = response.status_code
        audit.report = answer
        audit.moved = answer.get("moved", 0) if response.status_code == 200 else 0
        audit.finished_at = timezone.now()
        try:
            audit.save(update_fields=["status", "report", "moved", "finished_at"])
        except DatabaseError:  # the replay already ran: answer it, and the log line below still records it
            logger.exception("dlq replay audit %s: its outcome could not be saved", audit.pk)
        logger.info(
            "dlq %s of %s by %s: status %s, moved %s",
            "preview" if dry_run else "replay",
            queue,
            audit.username or "?",
            audit.status,
            audit.moved,
            extra={
                "audit_id": audit.pk,
                "user": audit.username,
                "queue": queue,
                "dry_run": dry_run,
                "filters": filters,
                "status": audit.status,
                "moved": audit.moved,
                "error": answer.get("error"),
            },
        )
        return response

    return wrapper
