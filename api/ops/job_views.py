"""The Jobs pages (staff only): /ops/jobs, a list of recent Jobs by state, and /ops/jobs/<id>, one Job's detail
with its history and a Cancel button for a Job not yet started (a CSRF-protected form POST)."""

from __future__ import annotations

import json

from django.conf import settings
from django.contrib.admin.views.decorators import staff_member_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from api.jobs.models import Job, JobState
from api.jobs.services import CANCELLABLE, job_cancel
from api.jobs.views import cancel_refusal

LIST_LIMIT = 100


@staff_member_required
@require_GET
def jobs_page(request: HttpRequest) -> HttpResponse:
    state = request.GET.get("state") or ""
    jobs = Job.objects.order_by("-id")
    if state:
        if state not in JobState.values:
            return HttpResponse(f"unknown state {state!r}; one of {sorted(JobState.values)}", status=400)
        jobs = jobs.filter(state=state)
    context = {"nav": "jobs", "jobs": jobs[:LIST_LIMIT], "state": state, "states": JobState.values, "limit": LIST_LIMIT}
    return render(request, "ops/jobs.html", context)


def _detail(request: HttpRequest, job: Job, *, error: str = "", status: int = 200) -> HttpResponse:
    spec = settings.QUEUE_TOPOLOGY.queues.get(job.queue)
    context = {
        "nav": "jobs",
        "job": job,
        "events": job.events.all()[:500],
        "max_receive_count": spec.max_receive_count if spec else None,
        "cancellable": job.state in CANCELLABLE,
        "payload": json.dumps(job.payload, indent=2, sort_keys=True),
        "result": json.dumps(job.result, indent=2, sort_keys=True) if job.result is not None else "",
        "error": error,
    }
    return render(request, "ops/job_detail.html", context, status=status)


def _job_or_404(job_id: int) -> Job:
    job = Job.objects.filter(pk=job_id).first()
    if job is None:
        raise Http404(f"no job {job_id}")
    return job


@staff_member_required
@require_GET
def job_page(request: HttpRequest, job_id: int) -> HttpResponse:
    return _detail(request, _job_or_404(job_id))


@staff_member_required
@require_POST
def job_cancel_form(request: HttpRequest, job_id: int) -> HttpResponse:
    """The detail page's Cancel button: back to the page when cancelled, the page with the reason (409) if not."""
    job = job_cancel(job_id=job_id)
    if job is None:
        raise Http404(f"no job {job_id}")
    if job.state != JobState.CANCELLED:
        return _detail(request, job, error=cancel_refusal(job), status=409)
    return redirect("ops-job", job_id=job_id)
