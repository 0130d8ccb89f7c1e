"""Two deployments on one Docker Engine, SANDBOX_SCOPE unset in both: each reaper removes only its own orphans."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import psycopg
import pytest
from django.conf import settings

from apps.common import deployment
from apps.sandbox import runtime, services
from apps.sandbox.tests.test_reaper import orphan

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("engine"), pytest.mark.django_db(transaction=True)]

ROOT = settings.BASE_DIR

# Deployment B: its own database (so its own Deployment row), the same engine, SANDBOX_SCOPE unset.
OTHER = """
import django, json, os, sys
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mcpplat.settings.test")
django.setup()
from django.conf import settings
settings.SANDBOX_POOL_SIZE = 0
from apps.common.deployment import sandbox_scope
from apps.sandbox import runtime, services
from apps.sandbox.tests.test_reaper import orphan
action = sys.argv[1]
if action == "orphan":
    orphan("other-deployment-orphan")
elif action == "reap":
    services.sandbox_reap(refill_pool=False)
print(json.dumps({"scope": sandbox_scope(), "mine": sorted(c.sandbox_id for c in runtime.containers_labelled())}))
"""


def _connect(dbname: str) -> psycopg.Connection:
    db = settings.DATABASES["default"]
    return psycopg.connect(host=db["HOST"], port=db["PORT"], user=db["USER"], dbname=dbname, autocommit=True)


@pytest.fixture
def other_deployment():
    """A second deployment's database, migrated by its own process; dropped afterwards with its containers."""
    name = f"mcpplat_other_{uuid.uuid4().hex[:8]}"
    with _connect(settings.DATABASES["default"]["NAME"]) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    env = {k: v for k, v in os.environ.items() if k != "SANDBOX_SCOPE"}
    env.update(MCPPLAT_TEST_WORKER_DB=name, DJANGO_SETTINGS_MODULE="mcpplat.settings.test")
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)

    def run(action: str) -> dict:
        import json

        out = subprocess.run(
            [sys.executable, "-c", OTHER, action], cwd=ROOT, env=env, check=True, capture_output=True, text=True
        )
        return json.loads(out.stdout.strip().splitlines()[-1])

    yield run
    scope = run("list")["scope"]
    for container in runtime.client().containers(all=True, filters={"label": f"{runtime.LABEL_SCOPE}={scope}"}):
        runtime.container_remove(container["Id"])
    with _connect(settings.DATABASES["default"]["NAME"]) as conn:
        conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def test_two_deployments_on_one_engine_never_reap_each_other(settings, other_deployment):
    # given this deployment with SANDBOX_SCOPE unset (its scope comes from its database) and an orphan of its own
    settings.SANDBOX_SCOPE = ""
    deployment.forget()
    mine = deployment.sandbox_scope()
    orphan("this-deployment-orphan")
    # and another deployment on the same engine, with an orphan of its own
    other = other_deployment("orphan")
    # then the two scopes differ and each lists only its own container
    assert other["scope"] != mine
    assert other["mine"] == ["other-deployment-orphan"]
    assert [c.sandbox_id for c in runtime.containers_labelled()] == ["this-deployment-orphan"]
    # when this deployment's reaper runs, the other's orphan survives
    report = services.sandbox_reap(refill_pool=False)
    assert report.orphans_removed == 1
    assert other_deployment("list")["mine"] == ["other-deployment-orphan"]
    # and when the other's reaper runs, it removes only its own
    assert other_deployment("reap")["mine"] == []
    # and the scope is stable: generated once, stored with the deployment's data
    deployment.forget()
    assert deployment.sandbox_scope() == mine
    deployment.forget()
