"""The Jobs pages: /ops/jobs (recent jobs, filtered by state) and /ops/jobs/<id> (one Job's detail, its history,
its Cancel button): staff only, the cancel a CSRF-protected POST."""

from __future__ import annotations

import pytest
from django.test import Client
from django.utils import timezone

from api.jobs.models import Job, JobState
from api.jobs.services import job_mark_failed, job_mark_started
from workers.delivery import Delivery

pytestmark = pytest.mark.django_db


def _job(state: str = JobState.QUEUED, **fields) -> Job:
    return Job.objects.create(kind="fail", payload={"message": "bug #7"}, queue="default", state=state, **fields)


def _dead_lettered_and_replayed() -> Job:
    """A Job that failed on its last receive (maxReceiveCount 2), was replayed, and failed there again."""
    job = _job()
    worker = dict(hostname="celery@w1", pid=31, task_name="jobs.fail", queue="t-default")
    try:
        raise RuntimeError("bug #7")
    except RuntimeError as exc:
        error = exc
    for replays in (0, 1):
        for receive in (1, 2):
            delivery = Delivery(receive_count=receive, replays=replays, **worker)
            job_mark_started(job_id=job.pk, delivery=delivery)
            job_mark_failed(job_id=job.pk, exc=error, delivery=delivery)
    job.refresh_from_db()
    return job


@pytest.mark.parametrize("path", ["/ops/jobs", "/ops/jobs/1"])
def test_anonymous_visitors_and_non_staff_are_sent_to_the_login(client, django_user_model, path):
    _job()
    assert client.get(path)["Location"] == f"/admin/login/?next={path}"
    client.force_login(django_user_model.objects.create_user("visitor", password="pw"))
    assert client.get(path)["Location"].startswith("/admin/login/")


def test_non_staff_cannot_cancel(client, django_user_model):
    # GIVEN a queued job and a logged-in user who is not staff
    job = _job()
    client.force_login(django_user_model.objects.create_user("visitor", password="pw"))
    # WHEN they post the cancel THEN they are sent to the login and the job is unchanged
    assert client.post(f"/ops/jobs/{job.pk}/cancel").status_code == 302
    assert Job.objects.get(pk=job.pk).state == JobState.QUEUED


def test_the_list_links_each_job_and_filters_by_state(staff_client):
    # GIVEN a queued and a dead-lettered job
    queued, dead = _job(), _job(JobState.DEAD_LETTERED, error="RuntimeError: bug #7")
    # WHEN staff open the list, then filter it
    everything = staff_client.get("/ops/jobs").content.decode()
    filtered = staff_client.get("/ops/jobs?state=dead_lettered").content.decode()
    # THEN every job links to its detail; the filter keeps one; the nav marks Jobs
    assert f'href="/ops/jobs/{queued.pk}"' in everything and f'href="/ops/jobs/{dead.pk}"' in everything
    assert f'href="/ops/jobs/{dead.pk}"' in filtered and f'href="/ops/jobs/{queued.pk}"' not in filtered
    assert '<a href="/ops/jobs" aria-current="page">Jobs</a>' in everything
    assert staff_client.get("/ops/jobs?state=nonsense").status_code == 400


def test_the_detail_of_a_dead_lettered_replayed_job(staff_client):
    # GIVEN a Job that went to the DLQ, was replayed once and went back
    job = _dead_lettered_and_replayed()
    # WHEN staff open its detail
    response = staff_client.get(f"/ops/jobs/{job.pk}")
    page = response.content.decode()
    # THEN its state, DLQ trip, receive count, replays, worker, error, traceback, payload and history show
    assert response.status_code == 200
    assert 'id="job-state" class="badge state-dead_lettered">dead_lettered<' in page
    assert 'id="dlq-receive-count">2<' in page and "of 2 (the queue's maxReceiveCount)" in page
    assert 'id="replays">×1<' in page
    assert "celery@w1 pid 31" in page
    assert 'id="last-error">RuntimeError: bug #7<' in page
    assert "Traceback (most recent call last)" in page
    assert "bug #7" in page.split('id="payload"')[1]
    assert page.count('<tr data-state="running">') == 4 and page.count('<tr data-state="dead_lettered">') == 2
    assert "replayed ×1" in page
    # AND no Cancel button: it is not cancellable
    assert 'id="cancel"' not in page


def test_an_unknown_job_is_404(staff_client):
    assert staff_client.get("/ops/jobs/999").status_code == 404
    token = _csrf(staff_client)
    assert staff_client.post("/ops/jobs/999/cancel", HTTP_X_CSRFTOKEN=token).status_code == 404


def _csrf(client: Client) -> str:
    client.get("/ops/jobs")
    return client.cookies["csrftoken"].value


def test_the_cancel_button_cancels_a_job_not_started(staff_client):
    # GIVEN a queued job, whose page shows a Cancel form with a CSRF token
    job = _job()
    page = staff_client.get(f"/ops/jobs/{job.pk}").content.decode()
    assert f'action="/ops/jobs/{job.pk}/cancel"' in page and "csrfmiddlewaretoken" in page
    # WHEN the form is posted without the token THEN 403 (CSRF), nothing changes
    assert staff_client.post(f"/ops/jobs/{job.pk}/cancel").status_code == 403
    assert Job.objects.get(pk=job.pk).state == JobState.QUEUED
    # WHEN posted with the token THEN back to the page, the job cancelled
    response = staff_client.post(f"/ops/jobs/{job.pk}/cancel", {"csrfmiddlewaretoken": _csrf(staff_client)})
    assert response.status_code == 302 and response["Location"] == f"/ops/jobs/{job.pk}"
    assert Job.objects.get(pk=job.pk).state == JobState.CANCELLED
    assert 'id="cancel"' not in staff_client.get(f"/ops/jobs/{job.pk}").content.decode()


def test_cancelling_a_running_job_from_the_page_is_refused_with_the_reason(staff_client):
    # GIVEN a job that started after the page was shown
    job = _job(JobState.RUNNING, started_at=timezone.now())
    # WHEN the Cancel form is posted
    response = staff_client.post(f"/ops/jobs/{job.pk}/cancel", {"csrfmiddlewaretoken": _csrf(staff_client)})
    # THEN 409, the page says why, the job runs on
    assert response.status_code == 409
    assert f"job {job.pk} is running: only a job that has not started" in response.content.decode()
    assert Job.objects.get(pk=job.pk).state == JobState.RUNNING


def test_a_job_running_on_its_last_receive_is_flagged(staff_client):
    # GIVEN a job started on receive 2 of 2 (a kill now would send it to the DLQ unseen)
    job = _job(JobState.RUNNING, receive_count=2)
    # THEN its page says so; on receive 1 it does not
    assert 'id="last-receive"' in staff_client.get(f"/ops/jobs/{job.pk}").content.decode()
    Job.objects.filter(pk=job.pk).update(receive_count=1)
    assert 'id="last-receive"' not in staff_client.get(f"/ops/jobs/{job.pk}").content.decode()
