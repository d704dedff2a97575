"""HTTP views of the jobs API: POST /api/jobs, GET /api/jobs/<id>, POST /api/jobs/<id>/cancel."""

from __future__ import annotations

import json
import logging

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from api.jobs.auth import token_required
from api.jobs.kinds import JobInputError, parse_job_request
from api.jobs.models import Job, JobState
from api.jobs.services import CANCELLABLE, job_cancel, job_submit
from workers.publish_guards import PayloadTooLarge, PublishRefused

logger = logging.getLogger(__name__)


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
    try:
        # The body against its kind's model (api/jobs/kinds.py; its JSON Schema: api/jobs/request.schema.json)
        request = parse_job_request(body)
        submission = job_submit(
            kind=request.kind, payload=request.payload, queue=request.queue, countdown=request.countdown
        )
    except JobInputError as exc:
        return _error(400, str(exc), **({"field": exc.field} if exc.field else {}))
    except PublishRefused as exc:
        return _error(400, str(exc))
    except (OperationalError, InterfaceError) as exc:  # nothing stored: the one case where the client tries again
        logger.error("job not stored, the database failed: %r", exc)
        return _error(503, f"the job was not stored (database unavailable: {type(exc).__name__}); try again")

    job, attempt = submission.job, submission.attempt
    if attempt and attempt.refused:
        status = 413 if isinstance(attempt.refused, PayloadTooLarge) else 400
        return _error(status, str(attempt.refused), job=job.as_dict())
    return JsonResponse(_accepted(job), status=202)


def _accepted(job: Job) -> dict:
    """202: stored. `queued` once SQS took the task; `pending` until the relay publishes it."""
    body = {"job_id": job.pk, "task_id": str(job.task_id), "state": job.state}
    if job.state == JobState.PENDING:
        body.update(
            publish_attempts=job.publish_attempts,
            publish_error=job.publish_error,
            detail="stored, not yet published: the relay will publish it",
        )
    return body


@csrf_exempt  # a JSON API authenticated by a bearer token, not a cookie
@token_required
@require_POST
def job_cancel_view(request: HttpRequest, job_id: int) -> JsonResponse:
    """Cancel a Job not yet started (pending, queued, delayed, retrying); 409 once it runs or has ended."""
    job = job_cancel(job_id=job_id)
    if job is None:
        return _error(404, f"no job {job_id}")
    if job.state != JobState.CANCELLED:
        return _error(409, cancel_refusal(job), job=job.as_dict())
    return JsonResponse(job.as_dict())


def cancel_refusal(job: Job) -> str:
    cancellable = ", ".join(sorted(CANCELLABLE))
    return f"job {job.pk} is {job.state}: only a job that has not started ({cancellable}) can be cancelled"


@token_required
@require_GET
def job_detail(request: HttpRequest, job_id: int) -> JsonResponse:
    job = Job.objects.filter(pk=job_id).first()
    if job is None:
        return _error(404, f"no job {job_id}")
    return JsonResponse(job.as_dict())


def server_error(request: HttpRequest) -> HttpResponse:
    """handler500: JSON under /api/ (clients parse it), Django's page elsewhere."""
    if request.path.startswith("/api/"):
        return _error(500, "internal error: the request failed; see the server log")
    return defaults.server_error(request)
