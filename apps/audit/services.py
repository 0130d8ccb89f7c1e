"""Writes of the audit app besides events themselves: signed digests of the chain head."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from apps.audit.chain import digest_message, key_id, keyed_digest, signing_key
from apps.audit.models import AuditDigest, AuditEvent


@transaction.atomic
def audit_digest_create() -> AuditDigest | None:
    """Sign the current chain head (HMAC-SHA256 with AUDIT_SIGNING_KEY). None when there are no events yet."""
    head = AuditEvent.objects.order_by("-sequence").values("sequence", "hash").first()
    if head is None:
        return None
    first = AuditEvent.objects.order_by("sequence").values_list("sequence", flat=True).first() or 1
    key = signing_key()
    created_at = timezone.now()
    count = head["sequence"] - first + 1
    message = digest_message(
        sequence=head["sequence"], head_hash=head["hash"], event_count=count, created_at=created_at
    )
    digest = AuditDigest(
        sequence=head["sequence"],
        head_hash=head["hash"],
        event_count=count,
        created_at=created_at,
        key_id=key_id(key),
        signature=keyed_digest(message, key),
    )
    digest.full_clean()
    digest.save()
    return digest
