from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from apps.sandbox import runtime, services
from apps.sandbox.models import LIVE_STATES, ImageAllowlist, Sandbox, Snapshot


@admin.register(Sandbox)
class SandboxAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "owner_id",
        "image",
        "state",
        "runtime",
        "created_at",
        "expires_at",
        "idle_expires_at",
        "exec_count",
    )
    list_filter = ("state", "runtime", "image")
    search_fields = ("id", "owner_id", "container_id", "image")
    date_hierarchy = "created_at"
    actions = ["destroy_selected"]
    readonly_fields = [f.name for f in Sandbox._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # sandboxes are created through sandbox.create, with the caller's quota

    @admin.action(description="Destroy selected sandboxes (kill and remove their containers)")
    def destroy_selected(self, request: HttpRequest, queryset: QuerySet[Sandbox]) -> None:
        try:
            destroyed = services.sandboxes_destroy_by_staff(
                sandboxes=list(queryset.filter(state__in=LIVE_STATES)), staff=str(request.user.pk)
            )
        except runtime.EngineUnavailable as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return
        self.message_user(request, f"{destroyed} sandbox(es) destroyed.", messages.SUCCESS)


@admin.register(ImageAllowlist)
class ImageAllowlistAdmin(admin.ModelAdmin):
    list_display = ("image", "enabled", "description", "created_at")
    list_filter = ("enabled",)
    search_fields = ("image", "description")


@admin.register(Snapshot)
class SnapshotAdmin(admin.ModelAdmin):
    list_display = ("id", "owner_id", "base_image", "image_ref", "workdir_bytes", "image_bytes", "created_at")
    search_fields = ("id", "owner_id", "image_ref")
    readonly_fields = [f.name for f in Snapshot._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
