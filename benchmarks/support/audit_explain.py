"""EXPLAIN ANALYZE the support pages' audit queries on a generated table of N rows.

Run (embedded PostgreSQL, a scratch database `support_explain` that this script creates and fills once):

    DJANGO_SETTINGS_MODULE=mcpplat.settings.test MCPPLAT_TEST_WORKER_DB=support_explain \
        .venv/bin/python benchmarks/support/audit_explain.py --rows 300000

The rows are inserted with SQL (no hash chain: the chain is not what is measured here). Distribution: 2,000
principals, 24 tools, ~94 % ok outcomes, 30 days of timestamps in sequence order, short JSON arguments.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mcpplat.settings.test")
os.environ.setdefault("MCPPLAT_TEST_WORKER_DB", "support_explain")

import django

django.setup()

import psycopg  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.utils import timezone  # noqa: E402

from apps.audit.models import AuditEvent  # noqa: E402
from apps.support.filters import AuditFilters  # noqa: E402
from apps.support.selectors import _ORDER, _after, audit_events_after, audit_events_filtered  # noqa: E402

FILL = """
INSERT INTO audit_auditevent (sequence, created_at, principal_id, identity_source, credential_id, method, tool,
    arguments, arguments_digest, outcome, error_code, latency_ms, request_id, trace_id, session_id, client_host,
    protocol_version, run_id, job_id, detail, prev_hash, hash)
SELECT s,
       now() - interval '30 days' + (s * interval '30 days' / %(n)s),
       'service:' || (hashint %% 2000),
       (ARRAY['api_token','oauth','tailnet','session'])[1 + hashint %% 4],
       'mcpp_' || (hashint %% 5000),
       CASE WHEN s %% 50 = 0 THEN 'tools/list' ELSE 'tools/call' END,
       (ARRAY['task.list','task.create','task.update','task.dep_graph','task.next_action','memory.store',
              'memory.search','memory.timeline','memory.compact','sandbox.create','sandbox.exec','sandbox.snapshot',
              'sandbox.destroy','browser.open','browser.act','browser.extract','browser.trace','run.start',
              'run.heartbeat','run.resume','run.cancel','platform.whoami','task.list','memory.search'])[1 + s %% 24],
       '{"query":"' || md5(s::text) || '","limit":' || (s %% 100) || '}',
       md5('d' || s),
       CASE WHEN hashint %% 100 < 94 THEN 'ok' WHEN hashint %% 100 < 97 THEN 'denied'
            WHEN hashint %% 100 < 99 THEN 'error' ELSE 'rate_limited' END,
       CASE WHEN hashint %% 100 < 94 THEN '' WHEN hashint %% 100 < 97 THEN 'forbidden'
            WHEN hashint %% 100 < 99 THEN 'timeout' ELSE 'rate_limited' END,
       (hashint %% 50000) / 100.0,
       'req-' || s, md5('t' || s), '', '127.0.0.1', '2025-11-25', '', '', '',
       md5('p' || (s - 1)), md5('p' || s)
FROM (SELECT s, abs(hashtext(s::text)) AS hashint FROM generate_series(%(start)s, %(n)s) AS s) AS g
"""


def ensure_database(name: str) -> None:
    params = connection.get_connection_params()
    admin = {k: v for k, v in params.items() if k in {"host", "port", "user", "password"}}
    with psycopg.connect(dbname="postgres", autocommit=True, **admin) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def fill(rows: int) -> None:
    have = AuditEvent.objects.count()
    if have >= rows:
        return
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(FILL, {"n": rows, "start": have + 1})
        cursor.execute("ANALYZE audit_auditevent")
    print(f"inserted {rows - have} rows in {time.perf_counter() - started:.1f} s")


def plan(label: str, queryset) -> None:
    text = queryset.explain(analyze=True, buffers=True)
    used = sorted(set(re.findall(r"(?:Index(?: Only)? Scan(?: Backward)? using|Bitmap Index Scan on) (\w+)", text)))
    seq = "Seq Scan" in text
    took = re.search(r"Execution Time: ([\d.]+) ms", text)
    print(f"| {label} | {', '.join(used) or '—'}{' + SEQ SCAN' if seq else ''} | {took.group(1) if took else '?'} ms |")
    if os.environ.get("VERBOSE"):
        print(text)


def page(filters: AuditFilters, key=None, limit: int = 50):
    qs = audit_events_filtered(filters)
    if key is not None:
        qs = _after(qs, filters.sort, key, backwards=False)
    return qs.order_by(*_ORDER[filters.sort])[: limit + 1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=300_000)
    args = parser.parse_args()
    ensure_database(os.environ["MCPPLAT_TEST_WORKER_DB"])
    call_command("migrate", verbosity=0)
    fill(args.rows)
    head = AuditEvent.objects.order_by("-sequence").values_list("sequence", flat=True).first()
    mid = head // 2
    now = timezone.now()
    print(f"\nrows: {AuditEvent.objects.count()}\n")
    print("| query | indexes used | execution |\n|---|---|---|")
    plan("first page, no filter", page(AuditFilters()))
    plan("page at the middle (keyset)", page(AuditFilters(), key=(mid,)))
    plan("principal", page(AuditFilters(principal="service:77")))
    plan("principal, deep page", page(AuditFilters(principal="service:77"), key=(mid,)))
    plan("tool", page(AuditFilters(tool="sandbox.exec")))
    plan("outcome denied", page(AuditFilters(outcome="denied")))
    plan("outcome ok (most rows)", page(AuditFilters(outcome="ok")))
    plan("error code timeout", page(AuditFilters(error_code="timeout")))
    plan("identity source oauth", page(AuditFilters(identity_source="oauth")))
    plan("last hour", page(AuditFilters(since=now - timedelta(hours=1))))
    plan("one day, 10 days ago", page(AuditFilters(since=now - timedelta(days=11), until=now - timedelta(days=10))))
    plan("principal + outcome", page(AuditFilters(principal="service:77", outcome="denied")))
    plan("text: request id", page(AuditFilters(q=f"req-{mid}")))
    plan("text: in arguments (rare)", page(AuditFilters(q="f00ba")))
    plan("text: in arguments (common)", page(AuditFilters(q="limit")))
    plan("sort oldest", page(AuditFilters(sort="oldest")))
    plan("sort slowest", page(AuditFilters(sort="slowest")))
    plan("sort slowest, deep page", page(AuditFilters(sort="slowest"), key=(250.0, mid)))
    plan(
        "live tail poll (after head-10)",
        audit_events_filtered(AuditFilters()).filter(sequence__gt=head - 10).order_by("sequence")[:200],
    )
    plan(
        "live tail poll, tool filter",
        audit_events_filtered(AuditFilters(tool="task.list")).filter(sequence__gt=head - 10).order_by("sequence")[:200],
    )
    started = time.perf_counter()
    audit_events_after(AuditFilters(), after_sequence=head - 10)
    print(f"\nlive poll round trip through the ORM: {(time.perf_counter() - started) * 1000:.1f} ms")


if __name__ == "__main__":
    main()
