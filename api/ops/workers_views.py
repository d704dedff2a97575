"""The workers page (staff only): server-rendered, refreshed from its JSON; both read api/ops/worker_list.py."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from api.ops.access import staff_json, staff_page
from api.ops.worker_list import workers_report
from workers.registry.tally import WINDOW_SECONDS
from workers.registry.writer import registry_keep


@staff_page
@require_GET
def workers_page(request: HttpRequest) -> HttpResponse:
    context = {
        "nav": "workers",
        "refresh_seconds": settings.OPS_REFRESH_SECONDS,
        "keep_hours": f"{registry_keep() / timedelta(hours=1):g}",
        "window_minutes": WINDOW_SECONDS // 60,
        "report": None,
        "error": None,
    }
    try:
        context["report"] = workers_report().as_dict()
    except DatabaseError as exc:
        context["error"] = f"cannot read the worker registry: {type(exc).__name__}"
    return render(request, "ops/workers.html", context, status=503 if context["error"] else 200)


@staff_json
@require_GET
def workers_data(request: HttpRequest) -> JsonResponse:
    try:
        return JsonResponse(workers_report().as_dict())
    except DatabaseError as exc:
        return JsonResponse({"error": f"cannot read the worker registry: {type(exc).__name__}"}, status=503)
