"""The support and staff pages in a real browser (Playwright + the system Chromium) against a live daphne.

pytest-django's live_server is WSGI-only, so the fixture starts daphne itself on the test database (the test is
transactional: the server's connections see what the test commits). Screenshots go to var/screenshots/.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.conf import settings
from django.db import connection

from apps.accounts.principal import Principal
from apps.audit.models import AuditEvent
from apps.runs import services as runs_services
from apps.runs.models import Job
from apps.support.tests.conftest import PASSWORD, make_user, record
from tests import capability

ROOT = Path(settings.BASE_DIR)
SHOTS = ROOT / "var" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def _require_browser() -> Any:
    problem = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        problem = "the playwright package is missing: make venv (requirements/dev.txt)"
    if problem is None and not Path(CHROMIUM).exists():
        problem = f"{CHROMIUM} is missing"
    capability.require("browser", problem, "run scripts/provision.d/40-chromium.sh as root")
    return sync_playwright


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def daphne_url(django_db_setup) -> Iterator[str]:
    """One server for the module: it only needs the test database's name; each test commits its own data."""
    port = _free_port()
    log_path = ROOT / "var" / "log" / "support-browser-daphne.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "mcpplat.settings.test",
        "MCPPLAT_TEST_WORKER_DB": connection.settings_dict["NAME"],
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
    }
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "mcpplat.asgi:application"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                pytest.fail(f"daphne exited with {proc.returncode}: see {log_path}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"daphne did not listen on {port} within 30 s: see {log_path}")
                time.sleep(0.2)
        yield f"http://127.0.0.1:{port}"
    finally:
        os.killpg(proc.pid, 15)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    sync_playwright = _require_browser()
    # Playwright's sync API keeps an event loop on this thread; the tests' own ORM calls are still plain sync.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    SHOTS.mkdir(parents=True, exist_ok=True)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            yield browser
            browser.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def browser_page(chromium, daphne_url, transactional_db) -> Iterator[Any]:
    context = chromium.new_context(base_url=daphne_url, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(10_000)
    try:
        yield context.new_page()
    finally:
        context.close()


def _shot(page: Any, name: str) -> None:
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


@pytest.fixture
def seeded(transactional_db) -> dict[str, Any]:
    from apps.accounts.services import role_catalog_seed

    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE audit_auditevent")
    role_catalog_seed()
    support = make_user("sam-support", role="support", otp_code="11112222")
    staff = make_user("stella-staff", staff=True, otp_code="33334444")
    staff.is_superuser = True
    staff.save(update_fields=["is_superuser"])
    staff.staticdevice_set.get().token_set.create(token="55556666")
    owner = Principal(id="service:8", kind="service", name="agent", identity_source="api_token", grants=frozenset())
    run = runs_services.run_start(principal=owner, name="nightly import", metadata=None, lease_seconds=600)
    job = Job.objects.create(
        tool="task.list",
        queue="default",
        arguments={"q": "x"},
        arguments_digest="0" * 64,
        principal_id=owner.id,
        principal=owner.to_dict(),
        run=run,
        ttl_ms=60000,
    )
    for i in range(30):
        record(principal_id="service:8", tool="task.list" if i % 3 else "memory.search", latency_ms=float(i))
    record(
        principal_id="service:8",
        tool="task.create",
        outcome="denied",
        error_code="forbidden",
        arguments={"title": "ship it", "token": "sk-secret-value"},
        trace_id="0af7651916cd43dd8448eb211c80319c",
        run_id=str(run.pk),
    )
    return {"support": support, "staff": staff, "run": run, "job": job}


def test_support_user_reviews_the_audit_log_live_and_cannot_change_anything(browser_page, seeded):
    page = browser_page
    # given: the login page, reached from a protected page
    page.goto("/support/audit/")
    assert "/support/login/" in page.url
    page.fill("#id_username", "sam-support")
    page.fill("#id_password", PASSWORD)
    page.fill("#id_otp_token", "11112222")
    _shot(page, "support-login")
    page.press("#id_otp_token", "Enter")  # keyboard only
    page.wait_for_url(re.compile(r"/support/audit/$"))

    # when: filter by outcome and tool
    page.select_option("#id_outcome", "denied")
    page.fill("#id_tool", "task.create")
    page.press("#id_tool", "Enter")
    page.wait_for_url(re.compile(r"outcome=denied"))
    # then
    rows = page.locator("#audit-table tbody tr")
    assert rows.count() == 1
    assert "forbidden" in rows.first.inner_text()
    _shot(page, "support-audit-filtered")

    # when: the unfiltered first page, live; an event is written
    page.goto("/support/audit/?tool=task.list")
    page.wait_for_selector("text=Live: connected")
    event = record(principal_id="service:8", tool="task.list", outcome="error", error_code="timeout", latency_ms=3.5)
    # then: it appears without a reload
    page.wait_for_selector(f'#audit-table tr[data-sequence="{event.sequence}"]')
    assert "1 new event" in page.inner_text(".live-text")
    _shot(page, "support-audit-live")

    # when: open the detail of the denied event
    denied = AuditEvent.objects.get(outcome="denied", tool="task.create")
    page.goto(f"/support/audit/?q={denied.trace_id}")
    page.click(f'a[href="/support/audit/{denied.sequence}/"]')
    page.wait_for_selector("#trace-id")
    # then
    assert page.inner_text("#trace-id") == "0af7651916cd43dd8448eb211c80319c"
    assert "sk-secret-value" not in page.content()
    assert "nightly import" in page.inner_text("#content-main")
    _shot(page, "support-audit-detail")
    assert AuditEvent.objects.filter(method="support.audit_event_view", principal_id=f"user:{seeded['support'].pk}")

    page.goto("/support/audit/chain/")
    assert "Chain intact." in page.inner_text("#content-main")
    _shot(page, "support-audit-chain")

    # when: the runs list, then the run page; the cancel button is disabled for support, and forcing it is refused
    page.goto("/support/runs/")
    page.click("text=nightly import")
    page.wait_for_url(re.compile(rf"/support/runs/{seeded['run'].pk}/$"))
    page.go_back()
    _shot(page, "support-runs")
    page.goto(f"/support/runs/{seeded['run'].pk}/")
    page.wait_for_selector("text=Live: connected")
    job_state = page.locator(f'tr[data-job-id="{seeded["job"].pk}"] [data-field="state"]')
    assert job_state.inner_text() == "queued"
    # the job starts while the page is open: its state and the event appear without a reload
    runs_services.job_transition(job_id=seeded["job"].pk, to="running")
    page.wait_for_selector(f'tr[data-job-id="{seeded["job"].pk}"] [data-field="state"]:has-text("running")')
    page.wait_for_selector("#timeline tr.live-new")
    assert page.is_disabled("#cancel-button")
    _shot(page, "support-run-timeline")
    page.evaluate("document.getElementById('cancel-button').disabled = false")
    page.click("#cancel-button")
    # then
    page.wait_for_selector("text=Not allowed")
    assert "cancelling a run needs a staff account" in page.inner_text("#content-main")
    seeded["run"].refresh_from_db()
    assert seeded["run"].state == "active"
    _shot(page, "support-refused")


def _mcp_call(base_url: str, token: str, tool: str, arguments: dict[str, Any] | None = None) -> dict[str, Any]:
    """One stateless-era (2026-07-28) tools/call, as an MCP client sends it."""
    response = httpx.post(
        f"{base_url}/mcp",
        headers={
            "authorization": f"Bearer {token}",
            "accept": "application/json, text/event-stream",
            "content-type": "application/json",
            "mcp-protocol-version": "2026-07-28",
            "mcp-method": "tools/call",
            "mcp-name": tool,
        },
        json={
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {
                "name": tool,
                "arguments": arguments or {},
                "_meta": {
                    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                    "io.modelcontextprotocol/clientCapabilities": {},
                },
            },
        },
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def _admin_login(page: Any) -> None:
    page.goto("/admin/")
    page.fill("#id_username", "stella-staff")
    page.fill("#id_password", PASSWORD)
    page.fill("#id_otp_token", "33334444")
    page.click("input[type=submit][value='Log in']")
    if page.locator("#id_otp_device").count():  # django-otp asks which device when the user has one to pick
        page.select_option("#id_otp_device", label="backup")
        page.fill("#id_password", PASSWORD)
        page.fill("#id_otp_token", "33334444")
        page.click("input[type=submit][value='Log in']")
    page.wait_for_selector("#site-name")
    assert page.locator("#user-tools").count() == 1, page.inner_text("#content")


def test_staff_creates_a_role_grants_a_tool_and_issues_a_working_token(browser_page, seeded, daphne_url):
    page = browser_page
    _admin_login(page)
    _shot(page, "admin-index")

    # when: a service account, then a role granting one tool, bound to that account (select2 autocomplete)
    page.goto("/admin/accounts/serviceaccount/add/")
    page.fill("#id_name", "browser-agent")
    page.click("input[name=_save]")
    page.wait_for_selector("text=was added successfully")
    page.goto("/admin/accounts/role/add/")
    page.fill("#id_name", "browser-testers")
    page.fill("#id_grants-0-pattern", "platform.whoami")
    page.click("#bindings-group .add-row a")
    page.click("#bindings-0 .field-service_account .select2-selection")
    page.fill(".select2-search__field", "browser-agent")
    page.click(".select2-results__option:has-text('browser-agent')")
    _shot(page, "admin-role-add")
    page.click("input[name=_save]")
    page.wait_for_selector("text=was added successfully")
    _shot(page, "admin-roles")

    # when: a token issued from the list action (shown once)
    page.goto("/admin/accounts/serviceaccount/?q=browser-agent")
    page.check("input.action-select")
    page.select_option("select[name=action]", "issue_token")
    page.click("button[name=index]")
    message = page.locator("ul.messagelist li.warning code")
    token = message.inner_text()
    _shot(page, "admin-token-issued")

    # then: through /mcp, the token calls the granted tool and is refused the others (explicitly, and audited)
    assert token.startswith("mcpp_")
    whoami = _mcp_call(daphne_url, token, "platform.whoami")
    assert whoami["result"]["structuredContent"]["name"] == "browser-agent"
    assert whoami["result"]["structuredContent"]["tools"] == ["platform.whoami"]
    refused = _mcp_call(daphne_url, token, "run.start", {"name": "x", "lease_seconds": 60})
    assert refused["error"]["data"]["permission"] == "run.start", refused  # an explicit denial, not "unknown"
    principal_id = whoami["result"]["structuredContent"]["id"]
    outcomes = set(
        AuditEvent.objects.filter(principal_id=principal_id, method="tools/call").values_list("tool", "outcome")
    )
    assert outcomes == {("platform.whoami", "ok"), ("run.start", "denied")}

    # and: staff may cancel the run from the support page
    page.goto(f"/support/runs/{seeded['run'].pk}/")
    page.fill("#cancel-reason", "browser test")
    page.click("#cancel-button")
    page.wait_for_selector("text=Run cancelled")
    assert page.inner_text("#object-state") == "cancelled"
    assert page.locator(f'tr[data-job-id="{seeded["job"].pk}"] [data-field="state"]').inner_text() == "cancelled"
