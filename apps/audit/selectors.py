"""Reads of the audit trail: verification of the chain and digests, and keyset-paged listing for support pages."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import QuerySet

from apps.audit.chain import COLUMNS, GENESIS_HASH, digest_message, key_id, keyed_digest, row_hash, signing_key
from apps.audit.models import AuditDigest, AuditEvent


@dataclass(frozen=True)
class ChainReport:
    ok: bool
    checked: int
    first_sequence: int | None
    last_sequence: int | None
    head_hash: str | None
    broken_at: int | None = None
    reason: str | None = None

    def summary(self) -> str:
        if not self.ok:
            return f"audit chain BROKEN at #{self.broken_at}: {self.reason} ({self.checked} events checked before it)"
        if not self.checked:
            return "audit chain ok: no events"
        return (
            f"audit chain ok: {self.checked} events #{self.first_sequence}..#{self.last_sequence}, "
            f"head {self.head_hash}"
        )


def audit_chain_verify(*, start: int | None = None, chunk_size: int = 5000) -> ChainReport:
    """Recompute every hash from `start` (default: the first row) and report the first broken link.

    Streams rows with a server-side cursor, so millions of rows need constant memory.
    """
    rows = AuditEvent.objects.order_by("sequence").values(*COLUMNS, "hash")
    expected_prev: str | None = None
    expected_sequence: int | None = None
    if start is not None and start > 1:
        rows = rows.filter(sequence__gte=start)
        before = AuditEvent.objects.filter(sequence=start - 1).values_list("hash", flat=True).first()
        if before is None:
            return ChainReport(False, 0, None, None, None, start, f"event #{start - 1} (before the start) is missing")
        expected_prev, expected_sequence = before, start
    checked = 0
    first: int | None = None
    last: dict[str, Any] | None = None
    for row in rows.iterator(chunk_size=chunk_size):
        sequence = row["sequence"]
        problem = None
        if expected_sequence is None:
            if sequence != 1 and start is None:
                problem = f"the chain starts at #{sequence}: events #1..#{sequence - 1} are missing"
            elif sequence == 1 and row["prev_hash"] != GENESIS_HASH:
                problem = "the first event does not link to the genesis hash"
        elif sequence != expected_sequence:
            problem = f"events #{expected_sequence}..#{sequence - 1} are missing"
        elif row["prev_hash"] != expected_prev:
            problem = f"its prev_hash does not match event #{sequence - 1}'s hash (that event was rewritten)"
        if problem is None and row_hash(row) != row["hash"]:
            problem = "its content does not match its hash (the row was edited)"
        if problem is not None:
            return ChainReport(
                False,
                checked,
                first,
                last["sequence"] if last else None,
                last["hash"] if last else None,
                sequence,
                problem,
            )
        first = sequence if first is None else first
        checked += 1
        last = row
        expected_prev, expected_sequence = row["hash"], sequence + 1
    return ChainReport(True, checked, first, last["sequence"] if last else None, last["hash"] if last else None)


@dataclass(frozen=True)
class DigestReport:
    ok: bool
    checked: int
    problem: str | None = None


def audit_digest_verify() -> DigestReport:
    """Check every signed digest: the signature, and that the chain still has that hash at that sequence."""
    key = signing_key()
    current = key_id(key)
    heads = dict(
        AuditEvent.objects.filter(sequence__in=AuditDigest.objects.values("sequence")).values_list("sequence", "hash")
    )
    checked = 0
    for digest in AuditDigest.objects.order_by("sequence", "pk").iterator(chunk_size=2000):
        label = f"digest {digest.pk} (@#{digest.sequence}, {digest.created_at:%Y-%m-%d %H:%M:%S})"
        if digest.key_id != current:
            return DigestReport(
                False,
                checked,
                f"{label} was signed with key {digest.key_id}, not the current AUDIT_SIGNING_KEY ({current})",
            )
        message = digest_message(
            sequence=digest.sequence,
            head_hash=digest.head_hash,
            event_count=digest.event_count,
            created_at=digest.created_at,
        )
        if keyed_digest(message, key) != digest.signature:
            return DigestReport(False, checked, f"{label}: the signature does not verify (digest row forged)")
        if heads.get(digest.sequence) != digest.head_hash:
            found = "missing" if digest.sequence not in heads else "a different hash"
            return DigestReport(
                False,
                checked,
                f"{label}: the chain now has {found} at #{digest.sequence} (events rewritten or removed)",
            )
        checked += 1
    return DigestReport(True, checked)


def audit_event_page(
    *,
    principal_id: str | None = None,
    tool: str | None = None,
    outcome: str | None = None,
    error_code: str | None = None,
    identity_source: str | None = None,
    request_id: str | None = None,
    trace_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    before: int | None = None,
    limit: int = 50,
) -> list[AuditEvent]:
    """Newest first, `limit` events matching every given filter; page on with `before=<last sequence seen>`.

    Each filter has an index ending in `sequence`, so a page is an index range scan at any table size.
    """
    events: QuerySet[AuditEvent] = AuditEvent.objects.order_by("-sequence")
    filters = {
        "principal_id": principal_id,
        "tool": tool,
        "outcome": outcome,
        "error_code": error_code,
        "identity_source": identity_source,
        "request_id": request_id,
        "trace_id": trace_id,
        "created_at__gte": since,
        "created_at__lt": until,
        "sequence__lt": before,
    }
    events = events.filter(**{k: v for k, v in filters.items() if v is not None})
    return list(events[: max(1, min(limit, 500))])
