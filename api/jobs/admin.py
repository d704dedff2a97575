"""Jobs in the Django admin."""

from django.contrib import admin

from api.jobs.models import Job


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ("id", "kind", "queue", "state", "attempts", "created_at", "finished_at")
    list_filter = ("state", "kind", "queue")
    readonly_fields = [f.name for f in Job._meta.fields]
