"""HTTP views of the jobs API: POST /api/jobs, GET /api/jobs/<id>."""

from __future__ import annotations

import json

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from api.jobs.auth import token_required
from api.jobs.kinds import JobInputError
from api.jobs.models import Job
from api.jobs.services import job_submit
from workers.publish_guards import PayloadTooLarge, PublishRefused

ALLOWED_FIELDS = {"kind", "payload", "queue", "countdown"}


def _refuse_constant(name: str) -> None:
    # json accepts NaN and Infinity, which no range check catches and no JSON column stores.
    raise ValueError(f"{name} is not a JSON number")


def _error(status: int, message: str, **extra) -> JsonResponse:
    return JsonResponse({"error": message, **extra}, status=status)


@csrf_exempt  # a JSON API authenticated by a bearer token, not a cookie
@token_required
@require_POST
def job_create(request: HttpRequest) -> JsonResponse:
    try:
        body = json.loads(request.body or b"null", parse_constant=_refuse_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        return _error(400, f"request body is not valid JSON: {exc}")
    if not isinstance(body, dict):
        return _error(400, "request body must be a JSON object with `kind` and `payload`")
    unknown = sorted(set(body) - ALLOWED_FIELDS)
    if unknown:
        return _error(400, f"unknown field(s) {unknown}; allowed: {sorted(ALLOWED_FIELDS)}")
    try:
        submission = job_submit(
            kind=body.get("kind"),
            payload=body.get("payload", {}),
            queue=body.get("queue"),
            countdown=body.get("countdown", 0),
        )
    except (JobInputError, PublishRefused) as exc:
        return _error(400, str(exc))

    job, outcome = submission.job, submission.outcome
    if outcome and outcome.refused:
        status = 413 if isinstance(outcome.refused, PayloadTooLarge) else 400
        return _error(status, str(outcome.refused), job=job.as_dict())
    if outcome and outcome.broker_error:
        return _error(503, outcome.broker_error, job=job.as_dict())
    return JsonResponse({"job_id": job.pk, "task_id": str(job.task_id), "state": job.state}, status=202)


@token_required
@require_GET
def job_detail(request: HttpRequest, job_id: int) -> JsonResponse:
    job = Job.objects.filter(pk=job_id).first()
    if job is None:
        return _error(404, f"no job {job_id}")
    return JsonResponse(job.as_dict())
