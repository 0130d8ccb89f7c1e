"""The SSRF corpus: every attempt is refused before any connection is made.

Loopback targets are a listener that records connections (it must record none). Metadata and private
addresses are reached only through a named fake DNS (never real traffic off this machine), and the proof is
that the refusal happens at resolution: the policy names the address and no upstream socket is opened.
"""

from __future__ import annotations

import ipaddress
import time

import pytest

from apps.audit.models import AuditEvent
from apps.browser import tools
from apps.browser.models import BlockedRequest
from apps.browser.policy import DomainPolicy, PolicyError, is_internal, parse_target
from apps.gateway.registry import ToolError

pytestmark = [pytest.mark.django_db]

LOOPBACK_FORMS = [
    "http://127.0.0.1:{port}/",
    "http://localhost:{port}/",
    "http://2130706433:{port}/",  # decimal
    "http://0x7f000001:{port}/",  # hex
    "http://0177.0.0.1:{port}/",  # octal
    "http://127.1:{port}/",  # short form
    "http://0x7f.0.0.1:{port}/",
    "http://[::1]:{port}/",
    "http://[::ffff:127.0.0.1]:{port}/",  # IPv4-mapped IPv6
    "http://127.0.0.1.:{port}/",  # trailing dot
    "https://127.0.0.1:{port}/",
]

INTERNAL_BY_NAME = [
    ("http://metadata.test/latest/meta-data/", "169.254.169.254"),
    ("http://intranet.test/", "10.1.2.3"),
    ("http://router.test/", "192.168.1.1"),
    ("http://cgnat.test/", "100.64.0.1"),
    ("http://v6local.test/", "fd00::1"),
    ("http://mapped.test/", "::ffff:127.0.0.1"),
    ("http://mixed.test/", "10.0.0.5"),
]

INTERNAL_LITERALS = [
    "http://169.254.169.254/latest/meta-data/",
    "http://10.0.0.1/",
    "http://172.16.0.1/",
    "http://192.168.0.1/",
    "http://100.64.0.1/",
    "http://0.0.0.0/",
    "http://[fe80::1]/",
    "http://[fd00:ec2::254]/",
    "http://[::ffff:a9fe:a9fe]/",  # mapped 169.254.169.254
    "http://[64:ff9b::a00:1]/",  # NAT64 of 10.0.0.1
    "http://[2002:a00:1::]/",  # 6to4 of 10.0.0.1
]

NON_WEB = [
    "file:///etc/passwd",
    "chrome://settings",
    "javascript:alert(1)",
    "data:text/html,hi",
    "ftp://x/",
    "about:blank",
]


@pytest.mark.parametrize("form", LOOPBACK_FORMS)
def test_loopback_in_every_spelling_is_blocked_before_connecting(browser, ctx, recorder, form):
    url = form.format(port=recorder.port)
    with pytest.raises(ToolError) as err:
        tools.browser_open(ctx, {"url": url})
    assert err.value.code == "url_blocked"
    assert err.value.data["blocks"][0]["reason"] == "address_blocked"
    assert recorder.connections == []
    assert BlockedRequest.objects.filter(url=url, reason="address_blocked").exists()
    assert AuditEvent.objects.filter(
        principal_id=ctx.principal.id, tool="browser.open", outcome="denied", error_code="browser.address_blocked"
    ).exists()


@pytest.mark.parametrize(("url", "address"), INTERNAL_BY_NAME)
def test_names_resolving_to_internal_addresses_are_blocked_at_resolution(browser, ctx, fake_dns, url, address):
    with pytest.raises(ToolError) as err:
        tools.browser_open(ctx, {"url": url})
    assert err.value.code == "url_blocked"
    block = err.value.data["blocks"][0]
    assert block["reason"] == "address_blocked"
    assert ipaddress.ip_address(block["address"]) == ipaddress.ip_address(address)
    assert block["address"] in err.value.message


@pytest.mark.parametrize("url", INTERNAL_LITERALS)
def test_internal_ip_literals_are_blocked(url):
    # the check is pure: it needs neither the browser nor the network
    target = parse_target(url)
    assert target.address is not None
    assert is_internal(target.address)


@pytest.mark.parametrize("url", NON_WEB)
def test_non_web_schemes_are_refused(browser, ctx, url):
    with pytest.raises(ToolError) as err:
        tools.browser_open(ctx, {"url": url})
    assert err.value.code == "url_blocked"
    assert err.value.data["blocks"][0]["reason"] == "scheme_blocked"


def test_deny_list_wins(browser, ctx):
    with pytest.raises(ToolError) as err:
        tools.browser_open(ctx, {"url": "http://denied.test/"})
    assert err.value.data["blocks"][0]["reason"] == "domain_denied"


def test_allow_list_refuses_other_hosts():
    policy = DomainPolicy.build(name="narrow", allow=["*.example.com", "docs.python.org:443"])
    from apps.browser.policy import check_host

    check_host(policy, parse_target("https://a.example.com/"))
    check_host(policy, parse_target("https://docs.python.org/"))
    for url in ("https://example.com.evil.net/", "http://docs.python.org/", "https://evilexample.com/"):
        with pytest.raises(PolicyError) as err:
            check_host(policy, parse_target(url))
        assert err.value.reason == "domain_not_allowed"


def test_redirect_chains_into_internal_addresses_are_blocked(browser, ctx, site, recorder, fake_dns):
    # given an allowed page that redirects (twice) to the loopback recorder, and one to the metadata name
    hop2 = f"{site.base}/redirect?to=http://127.0.0.1:{recorder.port}/admin"
    hop1 = f"{site.base}/redirect?to={hop2.replace('?', '%3F').replace('=', '%3D')}"
    for start, address in ((hop1, "127.0.0.1"), (f"{site.base}/redirect?to=http://metadata.test/x", "169.254.169.254")):
        # when
        with pytest.raises(ToolError) as err:
            tools.browser_open(ctx, {"url": start})
        # then
        assert err.value.code == "url_blocked"
        assert address in {b["address"] for b in err.value.data["blocks"]}
    assert recorder.connections == []


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])  # IP literal: route check; name: egress proxy
def test_iframes_fetch_xhr_and_subresources_from_page_script_are_blocked(browser, ctx, site, recorder, host):
    # given an allowed page whose markup and scripts reach for the loopback recorder
    target = f"http://{host}:{recorder.port}"
    # when
    result = tools.browser_open(ctx, {"url": f"{site.base}/attack?target={target}"})
    expected = {"frame", "img.png", "style.css", "fetch", "xhr"}
    blocks = _blocks_until(ctx, result, lambda seen: expected <= {b["url"].rsplit("/", 1)[-1] for b in seen})
    # then the page loaded, every reach was refused and reported, and nothing connected
    assert result["title"] == "attack"
    assert expected <= {b["url"].rsplit("/", 1)[-1] for b in blocks}
    assert recorder.connections == []
    assert BlockedRequest.objects.filter(session_id=result["session"]).count() >= 5


def test_websocket_and_preconnect_cannot_bypass_the_proxy(browser, ctx, site, recorder):
    # the route handler sees http(s) requests only; websockets and preconnects still go through the egress proxy
    target = f"http://127.0.0.1:{recorder.port}"
    session = tools.browser_open(ctx, {"url": f"{site.base}/"})["session"]
    from apps.browser.runtime import runtime

    async def reach() -> None:
        page = runtime.get(session).page
        await page.evaluate(
            """(t) => { try { new WebSocket(t.replace('http', 'ws') + '/ws'); } catch (e) {}
                        const l = document.createElement('link'); l.rel = 'preconnect'; l.href = t;
                        document.head.appendChild(l); }""",
            target,
        )

    runtime.call(reach, timeout=10)
    blocks = _blocks_until(ctx, {"session": session}, lambda seen: any(b["address"] == "127.0.0.1" for b in seen))
    time.sleep(0.5)  # and give a connection that slipped past the time to land
    assert recorder.connections == []
    assert any(b["address"] == "127.0.0.1" for b in blocks)


def test_the_egress_proxy_refuses_connect_tunnels_to_internal_addresses(recorder):
    # given the proxy a session's context uses, with the default policy
    import asyncio

    from apps.browser.egress import EgressProxy
    from apps.browser.policy import system_resolve

    blocks: list[PolicyError] = []

    async def attempt() -> bytes:
        proxy = await EgressProxy(
            policy=DomainPolicy.build(name="t"), resolver=system_resolve, on_block=blocks.append
        ).start()
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
            writer.write(f"CONNECT localhost:{recorder.port} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
            await writer.drain()
            answer = await reader.read(200)
            writer.close()
            return answer
        finally:
            await proxy.close()

    # when
    answer = asyncio.run(attempt())
    # then
    assert answer.startswith(b"HTTP/1.1 403")
    assert blocks[0].reason == "address_blocked"
    assert recorder.connections == []


def test_dns_rebinding_between_check_and_connect_is_caught(browser, ctx, site, fake_dns):
    # given a name that first answers with the allowed test site, then rebinds to a private address
    answers = iter([["127.0.0.1"], ["10.0.0.9"]])

    async def rebinding(host: str) -> list[str]:
        if host == "rebind.test":
            return next(answers, ["10.0.0.9"])
        return await type(fake_dns).__call__(fake_dns, host)

    from apps.browser.runtime import runtime

    runtime.resolver = rebinding
    hits_before = len(site.hits)
    # when the browser connects (the proxy resolves again and dials only what it checked)
    with pytest.raises(ToolError) as err:
        tools.browser_open(ctx, {"url": f"http://rebind.test:{site.server_address[1]}/"})
    # then
    assert err.value.code == "url_blocked"
    assert {b["address"] for b in err.value.data["blocks"]} == {"10.0.0.9"}
    assert len(site.hits) == hits_before


def _blocks_until(ctx, result, done, timeout: float = 15.0) -> list[dict]:
    """Blocks reported by this and later calls, polling until `done(blocks)` (page scripts run late under load)."""
    seen = list(result.get("blocks", []))
    deadline = time.monotonic() + timeout
    while not done(seen) and time.monotonic() < deadline:
        time.sleep(0.2)
        seen += tools.browser_extract(ctx, {"session": result["session"], "what": ["text"]})["blocks"]
    return seen
