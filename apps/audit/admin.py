"""A read-only view of the audit trail for staff (the support pages are the main reading room)."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin
from django.core.paginator import Paginator
from django.db import connection
from django.http import HttpRequest
from django.utils.functional import cached_property
from django.utils.html import format_html, format_html_join

from apps.audit.chain import COLUMNS
from apps.audit.models import AuditDigest, AuditEvent


class EstimatedCountPaginator(Paginator):
    """Unfiltered, the table's row estimate instead of COUNT(*) (which reads every row of millions)."""

    @cached_property
    def count(self) -> int:  # type: ignore[override]
        query = getattr(self.object_list, "query", None)
        if query is not None and not query.where:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass", [AuditEvent._meta.db_table]
                )
                row = cursor.fetchone()
            if row and row[0] > 10_000:
                return int(row[0])
        return super().count


def _pairs(text: str) -> Any:
    if not text:
        return "—"
    try:
        value = json.loads(text)
    except ValueError:
        return text
    if not isinstance(value, dict):
        return format_html("<code>{}</code>", json.dumps(value))
    rows = format_html_join(
        "",
        "<tr><th>{}</th><td><code>{}</code></td></tr>",
        ((k, json.dumps(v, ensure_ascii=False)) for k, v in value.items()),
    )
    return format_html("<table>{}</table>", rows)


class ReadOnly(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


# Every column, in chain order, with the JSON ones shown as tables.
_EVENT_FIELDS = (*({"arguments": "arguments_table", "detail": "detail_table"}.get(c, c) for c in COLUMNS), "hash")


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnly):
    list_display = [
        "sequence",
        "created_at",
        "principal_id",
        "identity_source",
        "method",
        "tool",
        "outcome",
        "error_code",
        "latency_ms",
    ]
    list_filter = ["outcome", "identity_source", "method"]
    search_fields = ["=principal_id", "=tool", "=request_id", "=trace_id", "=session_id", "=error_code"]
    paginator = EstimatedCountPaginator
    show_full_result_count = False
    fields = _EVENT_FIELDS
    readonly_fields = _EVENT_FIELDS

    @admin.display(description="arguments (redacted)")
    def arguments_table(self, event: AuditEvent) -> Any:
        return _pairs(event.arguments)

    @admin.display(description="detail")
    def detail_table(self, event: AuditEvent) -> Any:
        return _pairs(event.detail)


@admin.register(AuditDigest)
class AuditDigestAdmin(ReadOnly):
    list_display = ["sequence", "created_at", "event_count", "key_id", "head_hash"]
    readonly_fields = ["sequence", "head_hash", "event_count", "created_at", "key_id", "signature"]
