"""URL routes: the jobs API and the health check."""

from django.contrib import admin
from django.urls import include, path

from api.health import healthz

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("api/", include("api.jobs.urls")),
    path("admin/", admin.site.urls),
]
