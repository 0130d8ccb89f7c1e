from __future__ import annotations

import asyncio
from itertools import pairwise

import pytest
from asgiref.sync import async_to_sync
from django.db import connection, transaction
from django.db.utils import ProgrammingError

from apps.audit.chain import GENESIS_HASH, row_hash
from apps.audit.models import AuditEvent
from apps.audit.writer import AuditRecord, audit_record, audit_record_sync, audit_writer_close


def _record(n: int = 0, **values) -> AuditRecord:
    base = {
        "principal_id": "service:1",
        "identity_source": "api_token",
        "credential_id": "mcpp_abcdefghijkl",
        "method": "tools/call",
        "tool": "task.create",
        "arguments": {"title": f"task {n}", "api_key": "sk-live-123", "nested": {"password": "hunter2"}},
        "outcome": "ok",
        "latency_ms": 1.23456,
        "request_id": f"req-{n}",
    }
    return AuditRecord(**{**base, **values})


def _head() -> int:
    return AuditEvent.objects.order_by("-sequence").values_list("sequence", flat=True).first() or 0


def test_sync_record_appends_a_linked_row_with_secrets_redacted(db):
    # given the current head of the chain
    head = AuditEvent.objects.order_by("-sequence").first()
    # when two events are recorded
    first = audit_record_sync(_record(1))
    second = audit_record_sync(_record(2, outcome="denied", error_code="forbidden"))
    # then they follow the head, each linked to the previous hash
    assert first.sequence == (head.sequence + 1 if head else 1)
    assert first.prev_hash == (head.hash if head else GENESIS_HASH)
    assert second.prev_hash == first.hash
    stored = AuditEvent.objects.get(sequence=second.sequence)
    assert stored.hash == row_hash(stored.__dict__)
    assert stored.arguments == '{"api_key":"[REDACTED]","nested":{"password":"[REDACTED]"},"title":"task 2"}'
    assert len(stored.arguments_digest) == 64
    assert stored.latency_ms == 1.235
    assert (stored.outcome, stored.error_code) == ("denied", "forbidden")


def test_the_database_refuses_updates_and_deletes(db):
    # given a recorded event
    event = audit_record_sync(_record())
    # when it is updated, or deleted, directly in SQL
    # then the trigger refuses both
    for statement in (
        "UPDATE audit_auditevent SET outcome = 'error' WHERE sequence = %s",
        "DELETE FROM audit_auditevent WHERE sequence = %s",
    ):
        with pytest.raises(ProgrammingError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(statement, [event.sequence])
    assert AuditEvent.objects.get(sequence=event.sequence).outcome == "ok"


def test_an_unknown_outcome_is_a_programming_error(db):
    with pytest.raises(ValueError, match="outcome='fine'"):
        audit_record_sync(_record(outcome="fine"))


def test_over_long_fields_are_cut_instead_of_failing_the_batch(db):
    # when a client sends a 10 kB request id and a NUL character
    event = audit_record_sync(_record(request_id="r" * 10_000, session_id="a\x00b"))
    # then the row is stored with the fields cut to their column size
    stored = AuditEvent.objects.get(sequence=event.sequence)
    assert len(stored.request_id) == 200
    assert stored.session_id == "ab"


def test_group_commit_writes_every_concurrent_event_into_one_chain(db):
    # given the head before
    before = _head()

    # when 300 callers record at once (more than one batch of AUDIT_BATCH_MAX=256)
    async def burst() -> None:
        try:
            await asyncio.gather(*(audit_record(_record(n, request_id=f"burst-{n}")) for n in range(300)))
        finally:
            await audit_writer_close()

    async_to_sync(burst)()
    # then every event is durable (committed, visible to this connection), numbered without gaps and chained
    rows = list(AuditEvent.objects.filter(sequence__gt=before).order_by("sequence"))
    assert len(rows) == 300
    assert {r.request_id for r in rows} == {f"burst-{n}" for n in range(300)}
    assert [r.sequence for r in rows] == list(range(before + 1, before + 301))
    for previous, row in pairwise(rows):
        assert row.prev_hash == previous.hash
        assert row.hash == row_hash(row.__dict__)


def test_two_writers_on_separate_connections_keep_one_chain(db):
    # given two independent event loops (as two gateway processes would have), each with its own connection
    before = _head()

    async def writer(tag: str) -> None:
        try:
            for n in range(20):
                await asyncio.gather(*(audit_record(_record(n, request_id=f"{tag}-{n}-{k}")) for k in range(5)))
        finally:
            await audit_writer_close()

    import threading

    threads = [threading.Thread(target=async_to_sync(writer), args=(tag,)) for tag in ("a", "b")]
    # when both write concurrently
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    # then all 200 rows form one gap-free chain
    rows = list(AuditEvent.objects.filter(sequence__gt=before).order_by("sequence"))
    assert len(rows) == 200
    assert [r.sequence for r in rows] == list(range(before + 1, before + 201))
    assert all(b.prev_hash == a.hash for a, b in pairwise(rows))
