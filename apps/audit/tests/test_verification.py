from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from apps.audit.chain import row_hash
from apps.audit.models import AuditDigest, AuditEvent
from apps.audit.selectors import audit_chain_verify, audit_digest_verify, audit_event_page
from apps.audit.services import audit_digest_create
from apps.audit.writer import AuditRecord, audit_record_sync


def _events(count: int) -> list[AuditEvent]:
    return [
        audit_record_sync(
            AuditRecord(
                principal_id=f"user:{n % 2}",
                method="tools/call",
                tool="task.list",
                outcome="ok",
                arguments={"n": n},
                request_id=f"v-{n}",
            )
        )
        for n in range(count)
    ]


def _tamper(sql: str, params: list) -> None:
    """Change a row behind the trigger's back, as a superuser with direct database access could."""
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE audit_auditevent DISABLE TRIGGER audit_auditevent_append_only")
        cursor.execute(sql, params)
        cursor.execute("ALTER TABLE audit_auditevent ENABLE TRIGGER audit_auditevent_append_only")


def test_an_intact_chain_verifies(db, capsys):
    events = _events(5)
    report = audit_chain_verify(start=events[0].sequence)
    assert report.ok
    assert report.checked == 5
    assert report.head_hash == events[-1].hash
    call_command("verify_audit_chain", "--from", str(events[0].sequence))
    assert f"audit chain ok: 5 events #{events[0].sequence}..#{events[-1].sequence}" in capsys.readouterr().out


def test_editing_one_row_breaks_verification_at_that_row(db):
    # given a chain of five events
    events = _events(5)
    victim = events[2].sequence
    # when one row's outcome is edited directly in the database (trigger disabled)
    _tamper("UPDATE audit_auditevent SET outcome = 'denied' WHERE sequence = %s", [victim])
    # then verification fails at exactly that row, and the command exits 1 naming it
    report = audit_chain_verify(start=events[0].sequence)
    assert (report.ok, report.broken_at, report.checked) == (False, victim, 2)
    assert "content does not match its hash" in report.reason
    with pytest.raises(CommandError) as caught:
        call_command("verify_audit_chain", "--from", str(events[0].sequence))
    assert caught.value.returncode == 1
    assert f"BROKEN at #{victim}" in str(caught.value)


def test_rewriting_a_row_and_its_hash_breaks_the_next_link(db):
    events = _events(4)
    victim = AuditEvent.objects.get(sequence=events[1].sequence)
    victim.outcome = "error"
    forged = row_hash(victim.__dict__)
    _tamper("UPDATE audit_auditevent SET outcome = 'error', hash = %s WHERE sequence = %s", [forged, victim.sequence])
    report = audit_chain_verify(start=events[0].sequence)
    assert (report.ok, report.broken_at) == (False, events[2].sequence)
    assert "prev_hash does not match" in report.reason


def test_deleting_a_row_is_reported_as_missing_events(db):
    events = _events(4)
    _tamper("DELETE FROM audit_auditevent WHERE sequence = %s", [events[1].sequence])
    report = audit_chain_verify(start=events[0].sequence)
    assert (report.ok, report.broken_at) == (False, events[2].sequence)
    assert f"#{events[1].sequence}..#{events[1].sequence} are missing" in report.reason


def test_signed_digests_detect_a_rewritten_head(db, capsys):
    # given a signed digest of the head
    events = _events(3)
    digest = audit_digest_create()
    assert digest.sequence == events[-1].sequence
    assert audit_digest_verify().ok
    # when the head event is rewritten wholesale (content and hash)
    _tamper("UPDATE audit_auditevent SET hash = %s WHERE sequence = %s", ["f" * 64, digest.sequence])
    # then the digest no longer matches the chain
    report = audit_digest_verify()
    assert not report.ok
    assert f"has a different hash at #{digest.sequence}" in report.problem


def test_a_forged_digest_row_fails_its_signature(db, settings):
    _events(1)
    digest = audit_digest_create()
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE audit_auditdigest DISABLE TRIGGER audit_auditdigest_append_only")
        cursor.execute("UPDATE audit_auditdigest SET event_count = 999 WHERE id = %s", [digest.pk])
        cursor.execute("ALTER TABLE audit_auditdigest ENABLE TRIGGER audit_auditdigest_append_only")
    assert "signature does not verify" in audit_digest_verify().problem
    # and a different key is named as such
    settings.AUDIT_SIGNING_KEY = "another-key"
    assert "not the current AUDIT_SIGNING_KEY" in audit_digest_verify().problem


def test_event_pages_filter_and_continue_from_a_cursor(db):
    events = _events(6)
    first_page = audit_event_page(principal_id="user:0", limit=2)
    assert [e.sequence for e in first_page] == [events[4].sequence, events[2].sequence]
    second_page = audit_event_page(principal_id="user:0", limit=2, before=first_page[-1].sequence)
    assert [e.sequence for e in second_page][:1] == [events[0].sequence]


def test_the_periodic_actor_signs_the_head(db):
    from apps.audit.actors import audit_digest

    events = _events(1)
    audit_digest.fn()
    assert AuditDigest.objects.latest().sequence == events[-1].sequence


def test_event_pages_find_a_request_by_its_id(db):
    events = _events(3)
    assert [e.sequence for e in audit_event_page(request_id="v-1")][:1] == [events[1].sequence]
