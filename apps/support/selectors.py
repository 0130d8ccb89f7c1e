"""Reads for the support pages: filtered, keyset-paged audit events, the chain's state, runs and jobs.

Keyset pages never count or OFFSET: each page is "the next `limit` rows after this key" on an index that ends
in `sequence` (apps/audit migrations 0001 and 0003), so page 10,000 costs what page 1 costs.
"""

from __future__ import annotations

import json
from collections.abc import Generator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.core.cache import cache
from django.db.models import Q, QuerySet
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.audit.selectors import ChainReport, DigestReport, audit_chain_verify, audit_digest_verify
from apps.runs.models import Job, JobEvent, Run, RunEvent
from apps.support.filters import AuditFilters, cursor_encode

_ORDER = {
    "newest": ("-sequence",),
    "oldest": ("sequence",),
    "slowest": ("-latency_ms", "-sequence"),
}


# Writers stamp `created_at` before taking the chain lock, so timestamps are in sequence order only to within the
# time between stamping and committing (milliseconds; bounded here by a generous CLOCK_SLACK).
CLOCK_SLACK = timedelta(minutes=10)


def _sequence_at(moment: datetime, *, before: bool) -> int | None:
    """The sequence of the latest event stamped before `moment`, or of the first stamped at or after it
    (b-tree on created_at: one index probe)."""
    events = (
        AuditEvent.objects.filter(created_at__lt=moment).order_by("-created_at")
        if before
        else AuditEvent.objects.filter(created_at__gte=moment).order_by("created_at")
    )
    return events.values_list("sequence", flat=True).first()


def audit_events_filtered(filters: AuditFilters) -> QuerySet[AuditEvent]:
    """Every event matching `filters` (unordered).

    A time range also becomes a sequence range, so the keyset order (by sequence) and the range meet in one index:
    an event stamped before `since - CLOCK_SLACK` was committed before anything stamped at or after `since`,
    hence every match has a larger sequence (and symmetrically for `until`). The exact `created_at` condition
    stays, so the hint can only narrow the scan, never change the result while the slack holds.
    """
    events = AuditEvent.objects.all()
    exact = {
        "principal_id": filters.principal,
        "tool": filters.tool,
        "outcome": filters.outcome,
        "error_code": filters.error_code,
        "identity_source": filters.identity_source,
    }
    events = events.filter(**{k: v for k, v in exact.items() if v})
    if filters.since:
        events = events.filter(created_at__gte=filters.since)
        if (low := _sequence_at(filters.since - CLOCK_SLACK, before=True)) is not None:
            events = events.filter(sequence__gt=low)
    if filters.until:
        events = events.filter(created_at__lt=filters.until)
        if (high := _sequence_at(filters.until + CLOCK_SLACK, before=False)) is not None:
            events = events.filter(sequence__lt=high)
    if filters.q:
        q = filters.q
        # Each branch has an index (b-tree equality or trigram), so PostgreSQL can BitmapOr them.
        events = events.filter(
            Q(principal_id=q)
            | Q(tool=q)
            | Q(method=q)
            | Q(error_code=q)
            | Q(request_id=q)
            | Q(trace_id=q)
            | Q(session_id=q)
            | Q(arguments__icontains=q)
            | (~Q(detail="") & Q(detail__icontains=q))
        )
    if filters.sort == "slowest":
        events = events.filter(latency_ms__isnull=False)
    return events


def _after(events: QuerySet[AuditEvent], sort: str, key: tuple[Any, ...], *, backwards: bool) -> QuerySet[AuditEvent]:
    """Rows strictly after `key` in the sort order (or strictly before it, going backwards)."""
    descending = sort != "oldest"
    older = descending != backwards  # the next rows have smaller keys
    if sort == "slowest":
        op = "<" if older else ">"
        # A row comparison, so the (latency_ms DESC, sequence DESC) index gives the range directly.
        return events.extra(where=[f"(latency_ms, sequence) {op} (%s, %s)"], params=list(key))  # noqa: S610
    return events.filter(sequence__lt=key[0]) if older else events.filter(sequence__gt=key[0])


def _key(event: AuditEvent, sort: str) -> tuple[Any, ...]:
    return (event.latency_ms, event.sequence) if sort == "slowest" else (event.sequence,)


@dataclass(frozen=True)
class AuditPage:
    events: list[AuditEvent]
    next_cursor: str | None
    prev_cursor: str | None


def audit_page(
    filters: AuditFilters,
    *,
    after: tuple[Any, ...] | None = None,
    before: tuple[Any, ...] | None = None,
    limit: int = 50,
) -> AuditPage:
    """One page in `filters.sort` order: the first, the one after key `after`, or the one before key `before`."""
    sort = filters.sort
    events = audit_events_filtered(filters)
    order = _ORDER[sort]
    if before is not None:
        reverse = tuple(o[1:] if o.startswith("-") else f"-{o}" for o in order)
        rows = list(_after(events, sort, before, backwards=True).order_by(*reverse)[: limit + 1])
        more_before = len(rows) > limit
        rows = rows[:limit][::-1]
        more_after = True
    else:
        page = _after(events, sort, after, backwards=False) if after is not None else events
        rows = list(page.order_by(*order)[: limit + 1])
        more_after = len(rows) > limit
        rows = rows[:limit]
        more_before = after is not None
    return AuditPage(
        events=rows,
        next_cursor=cursor_encode(sort, _key(rows[-1], sort)) if rows and more_after else None,
        prev_cursor=cursor_encode(sort, _key(rows[0], sort)) if rows and more_before else None,
    )


def audit_events_after(filters: AuditFilters, *, after_sequence: int, limit: int = 200) -> list[AuditEvent]:
    """For the live tail: matching events appended after `after_sequence`, oldest first."""
    events = audit_events_filtered(filters).filter(sequence__gt=after_sequence)
    return list(events.order_by("sequence")[:limit])


def audit_head_sequence() -> int:
    return AuditEvent.objects.order_by("-sequence").values_list("sequence", flat=True).first() or 0


def audit_export_chunks(filters: AuditFilters, *, chunk_size: int = 2000) -> Generator[list[AuditEvent]]:
    """The whole filtered set in `filters.sort` order, one keyset chunk at a time (constant memory)."""
    key = None
    while True:
        page = audit_page(filters, after=key, limit=chunk_size)
        if not page.events:
            return
        yield page.events
        if page.next_cursor is None:
            return
        key = _key(page.events[-1], filters.sort)


def audit_event_get(sequence: int) -> AuditEvent | None:
    return AuditEvent.objects.filter(sequence=sequence).first()


def json_or_text(text: str) -> Any:
    """A stored canonical-JSON column as a value ('' → None, unparsable → the text itself)."""
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def audit_event_row(event: AuditEvent) -> dict[str, Any]:
    """The JSON shape of an event for exports and the live tail."""
    return {
        "sequence": event.sequence,
        "created_at": event.created_at.isoformat(),
        "principal_id": event.principal_id,
        "identity_source": event.identity_source,
        "credential_id": event.credential_id,
        "method": event.method,
        "tool": event.tool,
        "outcome": event.outcome,
        "error_code": event.error_code,
        "latency_ms": event.latency_ms,
        "request_id": event.request_id,
        "trace_id": event.trace_id,
        "session_id": event.session_id,
        "client_host": event.client_host,
        "protocol_version": event.protocol_version,
        "run_id": event.run_id,
        "job_id": event.job_id,
        "arguments": json_or_text(event.arguments),
        "arguments_digest": event.arguments_digest,
        "detail": json_or_text(event.detail),
        "prev_hash": event.prev_hash,
        "hash": event.hash,
    }


# ------------------------------------------------------------------------------------------ chain state

_CHECKPOINT_KEY = "support:audit-chain:checkpoint"
_LAST_FULL_KEY = "support:audit-chain:last-full"


@dataclass(frozen=True)
class ChainState:
    report: ChainReport
    incremental_from: int | None
    checkpoint: dict[str, Any] | None
    last_full: dict[str, Any] | None
    digests: DigestReport | None
    checked_at: datetime


def _full_record(report: ChainReport, digests: DigestReport) -> dict[str, Any]:
    return {
        "ok": report.ok and digests.ok,
        "summary": report.summary(),
        "digests": "ok" if digests.ok else digests.problem,
        "digests_checked": digests.checked,
        "broken_at": report.broken_at,
        "at": timezone.now().isoformat(),
    }


def audit_chain_state(*, full: bool = False) -> ChainState:
    """Verify the chain: from the last verified checkpoint (fast, every view) or from #1 (`full`).

    The checkpoint (sequence + hash) lives in the cache; its hash is compared with the row's current one, so
    a rewritten checkpoint row is caught too. Edits further back show up in a full verification (this page's
    "verify everything" and `manage.py verify_audit_chain`).
    """
    checkpoint = cache.get(_CHECKPOINT_KEY)
    digests = None
    start = None
    if not full and checkpoint:
        current = AuditEvent.objects.filter(sequence=checkpoint["sequence"]).values_list("hash", flat=True).first()
        if current != checkpoint["hash"]:
            full = True  # the checkpoint itself changed or vanished: only a full pass can say where
        else:
            start = checkpoint["sequence"] + 1
    if full:
        report = audit_chain_verify()
        digests = audit_digest_verify()
        cache.set(_LAST_FULL_KEY, _full_record(report, digests), None)
    else:
        report = audit_chain_verify(start=start)
        if start is not None and report.ok and report.checked == 0:
            report = ChainReport(True, 0, None, checkpoint["sequence"], checkpoint["hash"])
    if report.ok and report.last_sequence is not None:
        checkpoint = {"sequence": report.last_sequence, "hash": report.head_hash, "at": timezone.now().isoformat()}
        cache.set(_CHECKPOINT_KEY, checkpoint, None)
    elif not report.ok:
        cache.delete(_CHECKPOINT_KEY)
    return ChainState(report, start, checkpoint, cache.get(_LAST_FULL_KEY), digests, timezone.now())


def audit_chain_banner() -> dict[str, Any] | None:
    """What the list page shows without verifying anything (the last results kept in the cache)."""
    return cache.get(_LAST_FULL_KEY) or (
        {"ok": True, "summary": f"verified up to #{c['sequence']}", "at": c["at"]}
        if (c := cache.get(_CHECKPOINT_KEY))
        else None
    )


# ----------------------------------------------------------------------------------------- runs and jobs


def run_list(*, state: str = "", owner: str = "", limit: int = 50, before: str | None = None) -> list[Run]:
    runs = Run.objects.all()
    if state:
        runs = runs.filter(state=state)
    if owner:
        runs = runs.filter(owner_principal_id=owner)
    if before:
        anchor = Run.objects.filter(pk=before).values("created_at", "id").first()
        if anchor is not None:
            runs = runs.filter(
                Q(created_at__lt=anchor["created_at"]) | Q(created_at=anchor["created_at"], id__lt=anchor["id"])
            )
    return list(runs.order_by("-created_at", "-id")[:limit])


def job_list(*, state: str = "", tool: str = "", run_id: str | None = None, limit: int = 50) -> list[Job]:
    jobs = Job.objects.all()
    if state:
        jobs = jobs.filter(state=state)
    if tool:
        jobs = jobs.filter(tool=tool)
    if run_id:
        jobs = jobs.filter(run_id=run_id)
    return list(jobs.order_by("-created_at", "-id")[:limit])


def run_get(run_id: Any) -> Run | None:
    return Run.objects.filter(pk=run_id).first()


def job_get(job_id: Any) -> Job | None:
    return Job.objects.select_related("run").filter(pk=job_id).first()


def run_timeline(run: Run, *, after_seq: int = 0, limit: int = 1000) -> list[RunEvent]:
    return list(RunEvent.objects.filter(run=run, seq__gt=after_seq).order_by("seq")[:limit])


def run_jobs(run: Run) -> list[Job]:
    return list(Job.objects.filter(run=run).order_by("created_at", "id"))


def job_timeline(job: Job, *, after_seq: int = 0, limit: int = 1000) -> list[JobEvent]:
    return list(JobEvent.objects.filter(job=job, seq__gt=after_seq).order_by("seq")[:limit])
