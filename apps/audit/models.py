"""The audit trail: one append-only, hash-chained row per MCP request and per staff action.

`hash = sha256(prev_hash + canonical JSON of the row)`, rows numbered by a gap-free `sequence`; the database
refuses UPDATE and DELETE (trigger, migration 0002). Editing or removing a row breaks the chain at that row, and
`verify_audit_chain` names it. `AuditDigest` rows are HMAC-signed chain heads, so truncating the tail or
rewriting the whole chain is detected too.

Indexes serve the support pages: filter by principal, tool, outcome, error code or identity source, newest first,
paged by `sequence` (keyset cursor: `sequence < last seen`), with time ranges through a BRIN index on the
append-ordered `created_at`.
"""

from __future__ import annotations

from django.contrib.postgres.indexes import BrinIndex
from django.db import models
from django.db.models import Q


class Outcome(models.TextChoices):
    OK = "ok", "ok"
    DENIED = "denied", "denied"
    INVALID = "invalid", "invalid"
    ERROR = "error", "error"
    RATE_LIMITED = "rate_limited", "rate limited"
    # A queued call's job was stored: its final outcome follows in a `job.finished` row with the same job_id.
    ACCEPTED = "accepted", "accepted"


class AuditEvent(models.Model):
    sequence = models.BigIntegerField(primary_key=True)
    created_at = models.DateTimeField()
    principal_id = models.CharField(max_length=200, blank=True)
    identity_source = models.CharField(max_length=32, blank=True)
    credential_id = models.CharField(max_length=200, blank=True)
    method = models.CharField(max_length=100)
    tool = models.CharField(max_length=128, blank=True)
    # Canonical JSON text (exactly what was hashed; jsonb would renormalise numbers), secrets redacted.
    arguments = models.TextField(blank=True)
    arguments_digest = models.CharField(max_length=64, blank=True, help_text="HMAC-SHA256 of the original arguments")
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    error_code = models.CharField(max_length=64, blank=True)
    latency_ms = models.FloatField(null=True, blank=True)
    request_id = models.CharField(max_length=200, blank=True)
    trace_id = models.CharField(max_length=64, blank=True)
    session_id = models.CharField(max_length=200, blank=True)
    client_host = models.CharField(max_length=100, blank=True)
    protocol_version = models.CharField(max_length=32, blank=True)
    run_id = models.CharField(max_length=64, blank=True)
    job_id = models.CharField(max_length=64, blank=True)
    detail = models.TextField(blank=True, help_text="Canonical JSON, secrets redacted")
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64)

    class Meta:
        ordering = ["-sequence"]
        indexes = [
            BrinIndex(fields=["created_at"], name="audit_event_created_brin"),
            models.Index(fields=["principal_id", "-sequence"], name="audit_event_principal"),
            models.Index(fields=["tool", "-sequence"], name="audit_event_tool"),
            models.Index(fields=["identity_source", "-sequence"], name="audit_event_source"),
            # Most rows are `ok`: index only the interesting outcomes and error codes (small, hot).
            models.Index(fields=["outcome", "-sequence"], name="audit_event_outcome", condition=~Q(outcome="ok")),
            models.Index(fields=["error_code", "-sequence"], name="audit_event_error", condition=~Q(error_code="")),
            models.Index(fields=["request_id"], name="audit_event_request", condition=~Q(request_id="")),
            models.Index(fields=["trace_id"], name="audit_event_trace", condition=~Q(trace_id="")),
        ]

    def __str__(self) -> str:
        return f"#{self.sequence} {self.principal_id} {self.method} {self.tool} {self.outcome}"


class AuditDigest(models.Model):
    """A signed checkpoint of the chain: (sequence, hash) at a moment, HMAC-SHA256 with AUDIT_SIGNING_KEY."""

    sequence = models.BigIntegerField(help_text="the last event covered")
    head_hash = models.CharField(max_length=64)
    event_count = models.BigIntegerField()
    created_at = models.DateTimeField()
    key_id = models.CharField(max_length=16, help_text="first characters of sha256(key): which key signed it")
    signature = models.CharField(max_length=64)

    class Meta:
        ordering = ["-sequence"]
        get_latest_by = "sequence"

    def __str__(self) -> str:
        return f"digest @#{self.sequence} ({self.created_at:%Y-%m-%d %H:%M})"


class AuditOutbox(models.Model):
    """An event already durable but not yet in the chain: written in the transaction of the change it records (no chain
    lock there), moved into the chain in batches by `writer.audit_outbox_drain` (right after commit, and by the runs
    sweep for what a process that died left behind)."""

    id = models.BigAutoField(primary_key=True)
    row = models.JSONField(help_text="writer.prepare() of the record; created_at as ISO 8601")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"outbox #{self.id} {self.row.get('method', '')}"
