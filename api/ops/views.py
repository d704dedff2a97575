"""The queues page (staff only), its JSON, and the DLQ replay it previews and confirms (CSRF-protected POST)."""

from __future__ import annotations

import json
from functools import wraps

from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpRequest, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET, require_POST

from api.ops.audit import audited_replay
from api.ops.services import EXPIRED_WINDOW_MINUTES, dlq_replay_run, jobs_latest, queues_snapshot
from core.dlq.request import ReplayRequestError
from core.queue_urls import QueueNotFoundError

# A web request must end well before gunicorn's worker timeout (30 s); the report says where it stopped.
REPLAY_MAX_SECONDS = 15


def _error(status: int, message: str) -> JsonResponse:
    return JsonResponse({"error": message}, status=status)


def staff_json(view):
    """403 in JSON for anyone but active staff: a script or fetch() gets an answer, not a login page."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs):
        if not (request.user.is_active and request.user.is_staff):
            return _error(403, "staff only: log in at /admin/login/ with a staff account")
        return view(request, *args, **kwargs)

    return wrapper


@staff_member_required
@require_GET
def queues_page(request: HttpRequest):
    context = {
        "nav": "queues",
        "refresh_seconds": settings.OPS_REFRESH_SECONDS,
        "window_minutes": settings.OPS_THROUGHPUT_MINUTES,
        "expired_window_minutes": EXPIRED_WINDOW_MINUTES,
    }
    return render(request, "ops/queues.html", context)


@staff_json
@require_GET
def queues_data(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"snapshot": queues_snapshot().as_dict(), "jobs": jobs_latest(limit=settings.OPS_LATEST_JOBS)})


@staff_json
@require_POST
@audited_replay
def dlq_replay(request: HttpRequest, queue: str) -> JsonResponse:
    """The replay Lambda's payload fields (dry run unless "dry_run": false); the queue comes from the URL."""
    if queue not in settings.QUEUE_TOPOLOGY.queues:
        return _error(404, f"unknown queue {queue!r}; one of {sorted(settings.QUEUE_TOPOLOGY.queues)}")
    try:
        body = json.loads(request.body or b"{}")
    except (ValueError, UnicodeDecodeError) as exc:
        return _error(400, f"request body is not valid JSON: {exc}")
    if not isinstance(body, dict):
        return _error(400, "request body must be a JSON object of replay fields")
    if "queue" in body:
        return _error(400, "the queue is given by the URL, not the body")
    try:
        report = dlq_replay_run(payload={**body, "queue": queue}, max_seconds=REPLAY_MAX_SECONDS)
    except ReplayRequestError as exc:
        return _error(400, str(exc))
    except QueueNotFoundError as exc:
        return _error(502, str(exc))
    except (ClientError, BotoCoreError) as exc:
        return _error(502, f"SQS refused or did not answer: {type(exc).__name__}: {exc}")
    return JsonResponse(report.as_dict())
