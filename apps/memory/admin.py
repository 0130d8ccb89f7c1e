from django.contrib import admin

from apps.memory.models import Memory, MemoryNamespaceGrant


@admin.register(Memory)
class MemoryAdmin(admin.ModelAdmin):
    list_display = ("namespace", "kind", "short_content", "event_time", "embedding_state", "superseded_by")
    list_filter = ("embedding_state", "kind")
    search_fields = ("namespace", "content", "key")
    readonly_fields = (
        "id",
        "content_hash",
        "ingested_at",
        "embedding_model",
        "embedding_error",
        "embedding_attempts",
        "superseded_by",
        "superseded_at",
        "supersede_reason",
        "expired_at",
        "source",
    )
    exclude = ("embedding",)

    @admin.display(description="content")
    def short_content(self, obj: Memory) -> str:
        return obj.content[:80]

    def has_delete_permission(self, request, obj=None) -> bool:  # provenance is never deleted from the admin
        return False


@admin.register(MemoryNamespaceGrant)
class MemoryNamespaceGrantAdmin(admin.ModelAdmin):
    list_display = ("namespace", "principal_id", "role", "can_write", "created_at")
    search_fields = ("namespace", "principal_id", "role")
