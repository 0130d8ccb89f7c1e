from django.contrib import admin

from apps.browser.models import BlockedRequest, BrowserPolicy


@admin.register(BrowserPolicy)
class BrowserPolicyAdmin(admin.ModelAdmin):
    list_display = ("role", "max_sessions", "allow_downloads", "updated_at")
    search_fields = ("role",)


@admin.register(BlockedRequest)
class BlockedRequestAdmin(admin.ModelAdmin):
    list_display = ("created_at", "principal_id", "session_id", "reason", "url")
    list_filter = ("reason",)
    search_fields = ("principal_id", "session_id", "url")

    def has_add_permission(self, request):  # a record of what happened, not something to edit
        return False

    def has_change_permission(self, request, obj=None):
        return False
