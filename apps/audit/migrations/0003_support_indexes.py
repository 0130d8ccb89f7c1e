"""Indexes for the support pages' audit filters (added by the support app; see apps/support/selectors.py).

Raw SQL with no model-state change: the models stay as the audit app defines them, and these are
access paths only. Free text uses trigram GIN indexes on UPPER(column), matching Django's `icontains` on
PostgreSQL (`UPPER(col) LIKE UPPER('%text%')`); the rest are b-trees ending in `sequence`, so a keyset page
is an index range scan; `audit_event_created` turns a time range into a sequence range in two index probes.
"""

from django.db import migrations

FORWARD = """
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE INDEX IF NOT EXISTS audit_event_args_trgm ON audit_auditevent USING gin (UPPER(arguments) gin_trgm_ops);
CREATE INDEX IF NOT EXISTS audit_event_detail_trgm ON audit_auditevent USING gin (UPPER(detail) gin_trgm_ops)
    WHERE detail <> '';
CREATE INDEX IF NOT EXISTS audit_event_created ON audit_auditevent (created_at);
CREATE INDEX IF NOT EXISTS audit_event_method ON audit_auditevent (method, sequence DESC);
CREATE INDEX IF NOT EXISTS audit_event_session ON audit_auditevent (session_id) WHERE session_id <> '';
CREATE INDEX IF NOT EXISTS audit_event_latency ON audit_auditevent (latency_ms DESC, sequence DESC)
    WHERE latency_ms IS NOT NULL;
"""

REVERSE = """
DROP INDEX IF EXISTS audit_event_args_trgm;
DROP INDEX IF EXISTS audit_event_detail_trgm;
DROP INDEX IF EXISTS audit_event_created;
DROP INDEX IF EXISTS audit_event_method;
DROP INDEX IF EXISTS audit_event_session;
DROP INDEX IF EXISTS audit_event_latency;
"""


class Migration(migrations.Migration):
    dependencies = [("audit", "0002_append_only")]

    operations = [migrations.RunSQL(FORWARD, REVERSE)]
