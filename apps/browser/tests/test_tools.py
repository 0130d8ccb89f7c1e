"""browser.open/act/extract/trace against pages served by a loopback test site (allowed by the test policy)."""

from __future__ import annotations

import json
import time
import zipfile

import pytest

from apps.browser import leases, tools
from apps.browser.runtime import runtime
from apps.browser.tests.conftest import CallContext, make_principal
from apps.gateway.registry import ToolError, registry

pytestmark = [pytest.mark.django_db, pytest.mark.slow]


def test_tools_are_declared_queued_on_the_browser_queue():
    for name in ("browser.open", "browser.act", "browser.extract", "browser.trace"):
        spec = registry.get(name)
        assert spec is not None
        assert (spec.execution, spec.queue) == ("queued", "browser")


def test_open_returns_page_and_snapshot_with_refs(browser, ctx, site):
    # when
    result = tools.browser_open(ctx, {"url": site.base + "/"})
    # then
    assert result["url"] == site.base + "/"
    assert result["title"] == "Home"
    assert result["status"] == 200
    assert 'heading "Welcome" [level=1]' in result["snapshot"]
    assert "[ref=e" in result["snapshot"]
    assert result["blocks"] == []
    assert leases.lease_get(result["session"]).owner == runtime.worker_id


def test_act_fills_selects_and_clicks_by_ref_and_role(browser, ctx, site):
    # given
    opened = tools.browser_open(ctx, {"url": site.base + "/form"})
    session = opened["session"]
    textbox = _ref(opened["snapshot"], 'textbox "Name"')
    # when
    tools.browser_act(ctx, {"session": session, "action": "fill", "ref": textbox, "text": "Ada"})
    tools.browser_act(
        ctx, {"session": session, "action": "select", "role": "combobox", "name": "Colour", "values": ["g"]}
    )
    after = tools.browser_act(ctx, {"session": session, "action": "click", "role": "button", "name": "Greet"})
    # then
    assert "hello Ada g" in after["snapshot"]
    assert opened["blocks"] == after["blocks"] == []  # no calls home from Chromium itself (autofill)


def test_type_press_hover_wait_and_scroll(browser, ctx, site):
    # given
    opened = tools.browser_open(ctx, {"url": site.base + "/form"})
    session = opened["session"]
    textbox = _ref(opened["snapshot"], 'textbox "Name"')
    # when
    tools.browser_act(ctx, {"session": session, "action": "type", "ref": textbox, "text": "Grace"})
    tools.browser_act(ctx, {"session": session, "action": "press", "ref": textbox, "key": "Backspace"})
    tools.browser_act(ctx, {"session": session, "action": "hover", "role": "button", "name": "Greet"})
    tools.browser_act(ctx, {"session": session, "action": "scroll", "direction": "down", "amount": 200})
    tools.browser_act(ctx, {"session": session, "action": "press", "key": "Tab"})
    tools.browser_act(ctx, {"session": session, "action": "click", "role": "button", "name": "Greet"})
    waited = tools.browser_act(ctx, {"session": session, "action": "wait", "text": "hello Grac", "ms": 2000})
    # then
    assert "hello Grac r" in waited["snapshot"]
    # and a step missing its input names it
    with pytest.raises(ToolError) as err:
        tools.browser_act(ctx, {"session": session, "action": "fill", "ref": textbox})
    assert (err.value.code, err.value.data["field"]) == ("invalid_arguments", "text")
    with pytest.raises(ToolError) as err:
        tools.browser_act(ctx, {"session": session, "action": "wait", "text": "never shown", "ms": 300})
    assert err.value.code == "action_timeout"


def test_downloads_are_off_by_default_and_reported(browser, ctx, site):
    session = tools.browser_open(ctx, {"url": site.base + "/downloads"})["session"]
    # when
    result = tools.browser_act(ctx, {"session": session, "action": "click", "role": "link", "name": "Get the report"})
    blocks = result["blocks"] or tools.browser_extract(ctx, {"session": session})["blocks"]
    # then
    assert [(b["reason"], b["url"]) for b in blocks] == [("download_blocked", site.base + "/file")]
    assert "report.bin" in blocks[0]["detail"]


def test_stale_ref_is_a_clear_error(browser, ctx, site):
    # given a ref from a snapshot, then the page replaced under it
    opened = tools.browser_open(ctx, {"url": site.base + "/form"})
    session = opened["session"]
    greet = _ref(opened["snapshot"], 'button "Greet"')
    tools.browser_act(ctx, {"session": session, "action": "click", "role": "button", "name": "Replace"})
    # when / then
    with pytest.raises(ToolError) as err:
        tools.browser_act(ctx, {"session": session, "action": "click", "ref": greet})
    assert err.value.code == "stale_ref"
    assert greet in err.value.message
    with pytest.raises(ToolError) as err:
        tools.browser_act(ctx, {"session": session, "action": "click", "ref": "e999"})
    assert err.value.code == "stale_ref"


def test_back_and_forward(browser, ctx, site):
    session = tools.browser_open(ctx, {"url": site.base + "/"})["session"]
    tools.browser_open(ctx, {"url": site.base + "/table", "session": session})
    back = tools.browser_act(ctx, {"session": session, "action": "back"})
    assert back["title"] == "Home"
    forward = tools.browser_act(ctx, {"session": session, "action": "forward"})
    assert forward["title"] == "Prices"


def test_extract_text_markdown_links_and_tables(browser, ctx, site):
    session = tools.browser_open(ctx, {"url": site.base + "/table"})["session"]
    # when
    result = tools.browser_extract(ctx, {"session": session, "what": ["text", "markdown", "links", "tables"]})
    # then
    assert "Price list" in result["text"]
    assert "## Price list" in result["markdown"]
    assert "| Apple | 1.50 |" in result["markdown"]
    assert result["tables"] == [{"headers": ["Item", "Price"], "rows": [["Apple", "1.50"], ["Pear", "2.25"]]}]
    assert result["links"] == []
    home = tools.browser_open(ctx, {"url": site.base + "/", "session": session})
    links = tools.browser_extract(ctx, {"session": home["session"], "what": ["links"]})["links"]
    assert links == [
        {"text": "Form page", "href": site.base + "/form"},
        {"text": "Table page", "href": site.base + "/table"},
    ]


def test_structured_extraction_into_the_callers_schema(browser, ctx, site):
    session = tools.browser_open(ctx, {"url": site.base + "/table"})["session"]
    schema = {
        "type": "object",
        "properties": {
            "heading": {"type": "string"},
            "items": {"type": "array", "items": {"type": "string"}},
            "prices": {"type": "array", "items": {"type": "number"}},
            "count": {"type": "integer"},
        },
        "required": ["heading", "items", "prices", "count"],
    }
    fields = {"heading": "h2", "items": "td.item", "prices": "td.price", "count": "p.count"}
    # when
    result = tools.browser_extract(ctx, {"session": session, "structured": {"schema": schema, "fields": fields}})
    # then
    assert result["data"] == {"heading": "Price list", "items": ["Apple", "Pear"], "prices": [1.5, 2.25], "count": 2}


@pytest.mark.parametrize(
    ("schema", "field"),
    [
        ({"type": "object", "properties": {"heading": {"$ref": "{base}/x.json"}}}, "properties.heading.$ref"),
        ({"anyOf": [{"type": "object"}, {"$ref": "{base}/x.json#/a"}]}, "anyOf.1.$ref"),
        ({"$id": "{base}/", "properties": {"heading": {"$ref": "x.json"}}}, "properties.heading.$ref"),
        ({"$dynamicRef": "file:///etc/passwd"}, "$dynamicRef"),
    ],
)
def test_a_structured_schema_pointing_outside_itself_is_refused_unfetched(browser, ctx, site, schema, field):
    # given a page and a caller schema that references the loopback site (or a file)
    session = tools.browser_open(ctx, {"url": site.base + "/table"})["session"]
    schema = json.loads(json.dumps(schema).replace("{base}", site.base))
    site.hits.clear()
    # when
    with pytest.raises(ToolError) as err:
        tools.browser_extract(ctx, {"session": session, "structured": {"schema": schema, "fields": {"heading": "h2"}}})
    # then a clear error naming the keyword, and the worker fetched nothing
    assert err.value.code == "invalid_arguments"
    assert err.value.message.startswith(f"structured.schema.{field}: ")
    assert "does not resolve inside the schema" in err.value.message
    assert site.hits == []


def test_selectors_matching_nothing_are_named(browser, ctx, site):
    session = tools.browser_open(ctx, {"url": site.base + "/table"})["session"]
    schema = {"type": "object", "properties": {"missing": {"type": "string"}}, "required": ["missing"]}
    with pytest.raises(ToolError) as err:
        tools.browser_extract(
            ctx, {"session": session, "structured": {"schema": schema, "fields": {"missing": "div.nope"}}}
        )
    assert err.value.code == "extraction_invalid"
    assert "div.nope" in err.value.message
    with pytest.raises(ToolError) as err:
        tools.browser_extract(ctx, {"session": session, "selector": "#nowhere"})
    assert err.value.code == "selector_no_match"
    with pytest.raises(ToolError) as err:
        tools.browser_act(ctx, {"session": session, "action": "click", "role": "button", "name": "Nope"})
    assert err.value.code == "element_not_found"


def test_screenshot_and_trace_go_to_artifact_storage(browser, ctx, site):
    session = tools.browser_open(ctx, {"url": site.base + "/"})["session"]
    # when
    shot = tools.browser_extract(ctx, {"session": session, "what": ["screenshot"]})["screenshot"]
    tools.browser_trace(ctx, {"session": session, "action": "start"})
    tools.browser_act(ctx, {"session": session, "action": "click", "role": "link", "name": "Form page"})
    trace = tools.browser_trace(ctx, {"session": session, "action": "stop"})["trace"]
    # then
    with open(shot["path"], "rb") as handle:
        assert handle.read(8) == b"\x89PNG\r\n\x1a\n"
    assert trace["name"].startswith(f"browser/traces/{session}/")
    assert trace["url"].startswith("/artifacts/browser/traces/")
    with zipfile.ZipFile(trace["path"]) as archive:
        assert any(n.endswith(".trace") for n in archive.namelist())
    with pytest.raises(ToolError) as err:
        tools.browser_trace(ctx, {"session": session, "action": "stop"})
    assert err.value.code == "trace_not_active"


def test_sessions_do_not_share_cookies(browser, ctx, site):
    # given two sessions, one of which set a cookie
    one = tools.browser_open(ctx, {"url": site.base + "/set-cookie?v=alice"})["session"]
    two = tools.browser_open(ctx, {"url": site.base + "/"})["session"]
    # when
    seen_one = tools.browser_open(ctx, {"url": site.base + "/show-cookie", "session": one})
    seen_two = tools.browser_open(ctx, {"url": site.base + "/show-cookie", "session": two})
    # then
    assert "who=alice" in seen_one["snapshot"]
    assert "who=alice" not in seen_two["snapshot"]
    assert "none" in seen_two["snapshot"]


def test_a_session_is_invisible_to_another_principal(browser, ctx, site):
    session = tools.browser_open(ctx, {"url": site.base + "/"})["session"]
    other = CallContext(make_principal("test:other"))
    with pytest.raises(ToolError) as err:
        tools.browser_extract(other, {"session": session})
    assert err.value.code == "session_not_found"


def test_unknown_and_expired_sessions(browser, ctx, site):
    with pytest.raises(ToolError) as err:
        tools.browser_extract(ctx, {"session": "nope"})
    assert err.value.code == "session_not_found"
    # given a session whose lease expired (idle timeout)
    session = tools.browser_open(ctx, {"url": site.base + "/"})["session"]
    leases.lease_release(session)
    with pytest.raises(ToolError) as err:
        tools.browser_act(ctx, {"session": session, "action": "scroll"})
    assert err.value.code == "session_not_found"
    # and the owner's sweep closes its context
    from apps.browser.services import sessions_sweep_local

    assert session in sessions_sweep_local()
    assert session not in runtime.sessions


def test_invalid_urls_name_the_field(browser, ctx):
    for url in ("not a url", "/relative", "http://", "http://[::zz]/"):
        with pytest.raises(ToolError) as err:
            tools.browser_open(ctx, {"url": url})
        assert err.value.code == "invalid_url", url
        assert err.value.message.startswith("url:")


def test_a_page_that_never_loads_times_out_and_leaks_nothing(browser, ctx, site, settings):
    settings.BROWSER_NAVIGATION_TIMEOUT_MS = 1500
    before = set(runtime.sessions)
    with pytest.raises(ToolError) as err:
        tools.browser_open(ctx, {"url": site.base + "/never"})
    assert err.value.code == "navigation_timeout"
    assert set(runtime.sessions) == before
    assert leases.role_sessions("tester") == []


class CancelledAfter(CallContext):
    """A job context whose cancel request arrives `after` seconds into the call."""

    def __init__(self, principal, after: float):
        super().__init__(principal)
        self.at = time.monotonic() + after

    def cancelled(self) -> bool:
        return time.monotonic() >= self.at


def test_a_cancelled_call_stops_waiting_for_the_page_within_a_second(browser, ctx, site, settings):
    # given a session, and a navigation that would hang for its full 30 s timeout
    settings.BROWSER_NAVIGATION_TIMEOUT_MS = 30_000
    session = tools.browser_open(ctx, {"url": site.base + "/"})["session"]
    cancelling = CancelledAfter(ctx.principal, after=0.5)
    started = time.monotonic()
    # when the job is cancelled half a second in
    with pytest.raises(ToolError) as err:
        tools.browser_open(cancelling, {"url": site.base + "/never", "session": session})
    # then the call ends as cancelled at once, and the session still serves the next call
    assert err.value.code == "cancelled"
    assert time.monotonic() - started < 1.5
    assert "Welcome" in tools.browser_open(ctx, {"url": site.base + "/", "session": session})["snapshot"]


def test_a_cancelled_new_session_is_closed_not_leaked(browser, ctx, site, settings):
    # given no session yet and a first page that hangs
    settings.BROWSER_NAVIGATION_TIMEOUT_MS = 30_000
    before = set(runtime.sessions)
    # when the job is cancelled while the first navigation waits
    with pytest.raises(ToolError) as err:
        tools.browser_open(CancelledAfter(ctx.principal, after=0.3), {"url": site.base + "/never"})
    # then the half-opened session is gone with its lease
    assert err.value.code == "cancelled"
    assert set(runtime.sessions) == before
    assert leases.role_sessions("tester") == []


def test_per_role_cap(browser, ctx, site):
    for _ in range(3):
        tools.browser_open(ctx, {"url": site.base + "/"})
    with pytest.raises(ToolError) as err:
        tools.browser_open(ctx, {"url": site.base + "/"})
    assert err.value.code == "session_limit"


def test_close_frees_the_slot(browser, ctx, site):
    session = tools.browser_open(ctx, {"url": site.base + "/"})["session"]
    tools.browser_act(ctx, {"session": session, "action": "close"})
    assert session not in runtime.sessions
    assert leases.lease_get(session) is None


def test_a_call_routed_to_the_owner_worker_through_redis(browser, ctx, site):
    # given a session, reached as another worker would: through the owner's inbox
    from apps.browser import services

    session = tools.browser_open(ctx, {"url": site.base + "/"})["session"]
    # when
    result = services._forward(runtime.worker_id, session, "extract", {"what": ["text"]})
    # then
    assert "Welcome" in result["text"]


def test_a_session_whose_owner_died_is_lost(browser, ctx, site, redis_client):
    session = tools.browser_open(ctx, {"url": site.base + "/"})["session"]
    redis_client.hset(f"browser:session:{session}", "owner", "gone-host:1:dead")
    with pytest.raises(ToolError) as err:
        tools.browser_extract(ctx, {"session": session})
    assert err.value.code == "session_lost"
    assert leases.lease_get(session) is None


def test_browser_crash_ends_sessions_and_the_worker_recovers(browser, ctx, site):
    import os
    import signal
    import time

    session = tools.browser_open(ctx, {"url": site.base + "/"})["session"]
    launches = runtime.launches
    pid = runtime.browser_pid()
    assert pid
    # when Chromium dies
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while session in runtime.sessions and time.monotonic() < deadline:
        time.sleep(0.1)
    # then the session ends cleanly with a clear error
    with pytest.raises(ToolError) as err:
        tools.browser_extract(ctx, {"session": session})
    assert err.value.code in {"session_ended", "session_not_found"}
    # and the next open relaunches
    again = tools.browser_open(ctx, {"url": site.base + "/"})
    assert again["title"] == "Home"
    assert runtime.launches == launches + 1


def test_reaper_drops_orphaned_leases(redis_client, db):
    from apps.browser.services import sessions_reap

    assert leases.lease_acquire(session_id="s1", owner="dead:1:x", principal="p", role="r", cap=5)
    redis_client.zadd("browser:role:r", {"s2": 1})  # index entry whose lease already expired
    assert sessions_reap() == {"expired": 1, "orphaned": 1}
    assert leases.role_sessions("r") == []


def _ref(snapshot: str, label: str) -> str:
    for line in snapshot.splitlines():
        if label in line and "[ref=" in line:
            return line.split("[ref=")[1].split("]")[0]
    raise AssertionError(f"{label} not in snapshot:\n{snapshot}")


OWNER_SCRIPT = """
import sys
import django

django.setup()
from apps.browser import leases, services
from apps.browser.policy import DomainPolicy
from apps.browser.runtime import runtime

port, url = sys.argv[1], sys.argv[2]
policy = DomainPolicy.build(name="tester", allow_internal=[f"127.0.0.1:{port}"])
leases.lease_acquire(session_id="remote-1", owner=runtime.worker_id, principal="test:browser", role="tester", cap=5)
runtime.call(lambda: runtime.session_start(session_id="remote-1", principal_id="test:browser", policy=policy), 60)
services._local("remote-1", "navigate", {"url": url})
services.housekeeper.ensure()
print("ready", flush=True)
sys.stdin.read()
services.housekeeper.stop()
runtime.stop()
"""


def test_calls_reach_the_worker_process_that_owns_the_session(browser, ctx, site):
    # given a session opened by another worker process
    import os
    import subprocess
    import sys

    from django.conf import settings as django_settings

    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "mcpplat.settings.test"}
    owner = subprocess.Popen(
        [sys.executable, "-c", OWNER_SCRIPT, str(site.server_address[1]), site.base + "/table"],
        cwd=django_settings.BASE_DIR,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert owner.stdout.readline().strip() == "ready"
        assert leases.lease_get("remote-1").owner != runtime.worker_id
        # when this process handles calls for it
        extracted = tools.browser_extract(ctx, {"session": "remote-1", "what": ["tables"]})
        acted = tools.browser_act(ctx, {"session": "remote-1", "action": "scroll", "direction": "down"})
        # then the owner did the work
        assert extracted["tables"][0]["rows"] == [["Apple", "1.50"], ["Pear", "2.25"]]
        assert acted["title"] == "Prices"
        assert "remote-1" not in runtime.sessions
    finally:
        owner.stdin.close()
        owner.wait(30)
