"""Shared set-up for the memory benchmarks: Django on the test settings, in a database of the benchmark's own."""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def django_on(db_name: str) -> None:
    """Configure Django to use `db_name` on the embedded (or DATABASE_URL) server; create and migrate it."""
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mcpplat.settings.test")
    os.environ["MCPPLAT_TEST_WORKER_DB"] = db_name
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import django

    django.setup()
    import psycopg
    from django.conf import settings
    from django.core.management import call_command

    db = settings.DATABASES["default"]
    with psycopg.connect(
        host=db["HOST"], port=db["PORT"], user=db["USER"], password=db["PASSWORD"], dbname="postgres", autocommit=True
    ) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [db_name]).fetchone():
            conn.execute(f'CREATE DATABASE "{db_name}"')
    call_command("migrate", verbosity=0)
