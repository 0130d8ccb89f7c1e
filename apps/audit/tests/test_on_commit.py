"""A change and its audit event: the event that cannot be written fails the change, before it commits."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.db import transaction

from apps.audit.models import AuditEvent
from apps.audit.writer import AuditRecord, audit_record_on_commit

pytestmark = pytest.mark.django_db(transaction=True)


def test_an_unwritable_event_rolls_its_change_back():
    # when a change records an event the writer refuses (an outcome it does not know)
    def change() -> None:
        with transaction.atomic():
            get_user_model().objects.create(username="never")
            audit_record_on_commit(AuditRecord(method="test.change", outcome="maybe"))

    with pytest.raises(ValueError, match="outcome"):
        change()
    # then neither the change nor an event exists
    assert not get_user_model().objects.filter(username="never").exists()
    assert not AuditEvent.objects.filter(method="test.change").exists()


def test_a_writable_event_is_appended_once_its_change_commits():
    # when a change records a valid event
    with transaction.atomic():
        get_user_model().objects.create(username="kept")
        audit_record_on_commit(AuditRecord(method="test.change", outcome="ok", detail={"user": "kept"}))
        # then nothing is appended before the commit
        assert not AuditEvent.objects.filter(method="test.change").exists()
    # and the event is there after it
    assert AuditEvent.objects.filter(method="test.change", outcome="ok").count() == 1
