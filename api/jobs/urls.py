"""Routes of the jobs API."""

from django.urls import path

from api.jobs import views

urlpatterns = [
    path("jobs", views.job_create, name="job-create"),
    path("jobs/<int:job_id>", views.job_detail, name="job-detail"),
    path("jobs/<int:job_id>/cancel", views.job_cancel_view, name="job-cancel"),
]
