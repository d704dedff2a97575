"""URL routes: the jobs API, the health check, the ops pages (staff only) and the admin."""

from django.contrib import admin
from django.urls import include, path

from api.health import healthz

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("api/", include("api.jobs.urls")),
    path("ops/", include("api.ops.urls")),
    path("admin/", admin.site.urls),
]

handler500 = "api.jobs.views.server_error"  # JSON under /api/
