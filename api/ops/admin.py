"""The DLQ replay audit in the Django admin: read-only, nobody edits or deletes the record there."""

from django.contrib import admin

from api.ops.models import ReplayAudit


@admin.register(ReplayAudit)
class ReplayAuditAdmin(admin.ModelAdmin):
    list_display = ("at", "username", "queue", "dry_run", "status", "moved")
    list_filter = ("queue", "dry_run", "status")
    readonly_fields = [f.name for f in ReplayAudit._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
