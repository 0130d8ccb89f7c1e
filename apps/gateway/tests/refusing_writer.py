"""A fake audit writer (MCP_AUDIT_WRITER) whose serializer refuses one key, to prove the gateway checks first.

Everything else is the real writer: what it accepts is committed to the real chain.
"""

from __future__ import annotations

from typing import Any

from apps.audit import writer
from apps.audit.writer import AuditRecord, audit_record

__all__ = ["AuditRecord", "audit_record", "prepare"]

UNRECORDABLE = "unrecordable"


def prepare(record: AuditRecord, **kwargs: Any) -> dict[str, Any]:
    if isinstance(record.arguments, dict) and UNRECORDABLE in record.arguments.get("metadata", {}):
        raise ValueError(f"this writer cannot record {UNRECORDABLE!r}")
    return writer.prepare(record, **kwargs)
