"""Tailnet identity: `Tailscale-User-Login` as set by `tailscale serve` — believed only from a trusted proxy.

The "proxy" here is a fake tailscaled: the test passes the headers and the client address a real one would.
"""

from __future__ import annotations

import pytest

from apps.accounts.identity import AuthError
from apps.accounts.services import role_bind
from apps.accounts.tests.conftest import authenticate_sync

FAKE_TAILSCALED = "100.100.100.100"


@pytest.fixture
def tailnet(settings, roles):
    settings.TAILNET_TRUSTED_PROXIES = [FAKE_TAILSCALED, "127.0.0.1/32"]
    settings.TAILNET_ALLOWED_LOGINS = ["*@example.com"]
    return settings


def _headers(login: str) -> dict[str, str]:
    return {"tailscale-user-login": login, "tailscale-user-name": "Alice"}


def test_identity_headers_from_a_trusted_proxy_map_to_the_user(tailnet, alice):
    role_bind(role="operator", user=alice)
    principal = authenticate_sync(_headers("Alice@Example.com"), client_host=FAKE_TAILSCALED)
    assert principal.id == f"user:{alice.pk}"
    assert principal.identity_source == "tailnet"
    assert principal.roles == frozenset({"operator"})
    assert principal.credential_id == "tailnet:alice@example.com"


@pytest.mark.parametrize("client_host", ["203.0.113.7", "100.100.100.101", None, "/run/socket"])
def test_identity_headers_from_anyone_else_are_401(tailnet, alice, client_host):
    with pytest.raises(AuthError) as caught:
        authenticate_sync(_headers("alice@example.com"), client_host=client_host)
    assert caught.value.status == 401
    assert "TAILNET_TRUSTED_PROXIES" in caught.value.message


def test_identity_headers_are_ignored_when_no_proxy_is_trusted(settings, alice):
    settings.TAILNET_TRUSTED_PROXIES = []
    with pytest.raises(AuthError, match="TAILNET_TRUSTED_PROXIES"):
        authenticate_sync(_headers("alice@example.com"), client_host="127.0.0.1")


def test_a_login_outside_the_allow_list_is_403(tailnet, db, django_user_model):
    django_user_model.objects.create_user("mallory", "mallory@evil.example", "a-long-password-1")
    with pytest.raises(AuthError) as caught:
        authenticate_sync(_headers("mallory@evil.example"), client_host=FAKE_TAILSCALED)
    assert (caught.value.status, caught.value.code) == (403, "forbidden")
    assert "TAILNET_ALLOWED_LOGINS" in caught.value.message


def test_an_allowed_login_without_a_platform_user_is_403(tailnet, db):
    with pytest.raises(AuthError, match="no active platform user"):
        authenticate_sync(_headers("bob@example.com"), client_host=FAKE_TAILSCALED)


# ------------------------------------------------------------------ direct tailnet peers: LocalAPI whois


@pytest.fixture
def fake_tailscaled(tmp_path, settings):
    """A fake tailscaled answering LocalAPI `whois` on a unix socket: one known user node, one tagged node."""
    import json
    import socketserver
    import threading
    from http.server import BaseHTTPRequestHandler
    from urllib.parse import parse_qs, urlsplit

    peers = {
        "100.101.102.103": {"UserProfile": {"LoginName": "alice@example.com"}, "Node": {"Name": "laptop"}},
        "100.64.0.9": {"UserProfile": {"LoginName": "tagged-devices"}, "Node": {"Name": "ci"}},
    }
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlsplit(self.path)
            addr = parse_qs(url.query).get("addr", [""])[0]
            seen.append(addr)
            found = peers.get(addr) if url.path == "/localapi/v0/whois" else None
            body = json.dumps(found).encode() if found else b"no match for IP:port"
            self.send_response(200 if found else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

        def address_string(self) -> str:
            return "unix"

    path = str(tmp_path / "tailscaled.sock")
    server = socketserver.ThreadingUnixStreamServer(path, Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    settings.TAILSCALE_LOCALAPI_SOCKET = path
    settings.TAILNET_ALLOWED_LOGINS = ["*@example.com"]
    yield seen
    server.shutdown()
    server.server_close()


def test_a_direct_tailnet_peer_is_identified_by_whois(fake_tailscaled, alice, roles):
    role_bind(role="viewer", user=alice)
    # when a peer connects without credentials from its tailnet address
    principal = authenticate_sync({}, client_host="100.101.102.103")
    # then tailscaled named it, and it maps to alice
    assert fake_tailscaled == ["100.101.102.103"]
    assert (principal.id, principal.identity_source, principal.roles) == (
        f"user:{alice.pk}",
        "tailnet",
        frozenset({"viewer"}),
    )


@pytest.mark.parametrize(
    ("client_host", "fragment"), [("100.64.0.9", "tagged or unknown node"), ("100.64.0.10", "tagged or unknown node")]
)
def test_tagged_or_unknown_tailnet_peers_are_401(fake_tailscaled, db, client_host, fragment):
    with pytest.raises(AuthError, match=fragment) as caught:
        authenticate_sync({}, client_host=client_host)
    assert caught.value.status == 401


def test_addresses_outside_the_tailnet_are_not_looked_up(fake_tailscaled, db):
    with pytest.raises(AuthError):
        authenticate_sync({}, client_host="192.0.2.1")
    assert fake_tailscaled == []


def test_an_unreachable_tailscaled_is_a_clear_401(settings, db, tmp_path):
    settings.TAILSCALE_LOCALAPI_SOCKET = str(tmp_path / "absent.sock")
    with pytest.raises(AuthError, match="cannot ask tailscaled"):
        authenticate_sync({}, client_host="100.101.102.103")
