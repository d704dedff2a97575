"""Routes of the ops pages: /ops/queues, its JSON, and the DLQ replay; /ops/workers and its JSON; /ops/jobs and a
Job's detail."""

from django.urls import path

from api.ops import job_views, views, workers_views

urlpatterns = [
    path("queues", views.queues_page, name="ops-queues"),
    path("queues.json", views.queues_data, name="ops-queues-data"),
    path("queues/<str:queue>/replay", views.dlq_replay, name="ops-dlq-replay"),
    path("workers", workers_views.workers_page, name="ops-workers"),
    path("workers.json", workers_views.workers_data, name="ops-workers-data"),
    path("jobs", job_views.jobs_page, name="ops-jobs"),
    path("jobs/<int:job_id>", job_views.job_page, name="ops-job"),
    path("jobs/<int:job_id>/cancel", job_views.job_cancel_form, name="ops-job-cancel"),
]
