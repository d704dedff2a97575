"""The queues page (staff only; its first table rendered by Django from the same data as its JSON), the JSON,
and the DLQ replay it previews (grouped by task and last exception) and confirms (CSRF-protected POST)."""

from __future__ import annotations

import json
import logging
import time

from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET, require_POST

from api.ops.access import staff_json, staff_page
from api.ops.audit import audited_replay
from api.ops.preview import preview_groups
from api.ops.read_budget import ReadTimeout
from api.ops.services import EXPIRED_WINDOW_MINUTES, dlq_replay_run, jobs_latest, queues_snapshot
from core.dlq.request import ReplayRequestError
from core.queue_urls import QueueNotFoundError

__all__ = ["dlq_replay", "queues_data", "queues_page", "staff_json", "staff_page"]

logger = logging.getLogger(__name__)

# A web request must end well before gunicorn's worker timeout (30 s); the report says where it stopped.
REPLAY_MAX_SECONDS = 15
# How long the AWS reads may take: the page's first paint (else it renders without numbers and its script keeps
# trying), and its JSON (else 504); a hung endpoint must not hang the page.
FIRST_PAINT_SECONDS = 5
DATA_SECONDS = 20


def _error(status: int, message: str) -> JsonResponse:
    return JsonResponse({"error": message}, status=status)


def queues_payload(*, budget_seconds: float) -> dict:
    """What the page shows and its JSON answers: every queue's numbers and the latest jobs."""
    snapshot = queues_snapshot(budget_seconds=budget_seconds)
    return {"snapshot": snapshot.as_dict(), "jobs": jobs_latest(limit=settings.OPS_LATEST_JOBS)}


@staff_page
@require_GET
def queues_page(request: HttpRequest):
    """The page with its first numbers in it: the first paint needs no fetch, and a failing first fetch still
    leaves a page, with the error on top."""
    try:
        data, first_error = queues_payload(budget_seconds=FIRST_PAINT_SECONDS), None
    except ReadTimeout as exc:
        data, first_error = None, str(exc)
    except Exception as exc:  # the page must still render and say why; the JSON answers 500 for the same fault
        logger.exception("the queues page's first numbers could not be read")
        data, first_error = None, f"{type(exc).__name__}: {exc}"
    context = {
        "nav": "queues",
        "refresh_seconds": settings.OPS_REFRESH_SECONDS,
        "window_minutes": settings.OPS_THROUGHPUT_MINUTES,
        "expired_window_minutes": EXPIRED_WINDOW_MINUTES,
        "data": data,
        "first_error": first_error,
    }
    return render(request, "ops/queues.html", context)


@staff_json
@require_GET
def queues_data(request: HttpRequest) -> JsonResponse:
    try:
        return JsonResponse(queues_payload(budget_seconds=DATA_SECONDS))
    except ReadTimeout as exc:
        return _error(504, str(exc))


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
    groups = preview_groups(
        report.matched_ids,
        now_ms=time.time() * 1000,
        retention_seconds=settings.QUEUE_TOPOLOGY.queue(queue).dlq_retention_seconds,
    )
    return JsonResponse({**report.as_dict(), "groups": groups})
