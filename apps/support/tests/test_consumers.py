from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import sync_to_async
from channels.auth import AuthMiddlewareStack
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator

from apps.accounts.principal import Principal
from apps.runs import services as runs_services
from apps.support.routing import websocket_urlpatterns
from apps.support.tests.conftest import record, verified_client

pytestmark = pytest.mark.django_db(transaction=True)

APP = AuthMiddlewareStack(URLRouter(websocket_urlpatterns))
WAIT = 5  # seconds: the consumers poll once a second


def _cookie(user) -> list[tuple[bytes, bytes]]:
    client = verified_client(user)
    return [(b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode())]


async def _connect(path: str, headers: list[tuple[bytes, bytes]] | None = None) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(APP, path, headers=headers or [])
    connected, _ = await communicator.connect(timeout=WAIT)
    assert connected
    return communicator


async def test_audit_tail_sends_matching_events_and_catches_up_after_a_drop(users):
    # given
    headers = await sync_to_async(_cookie)(users["support"])
    tail = await _connect("/ws/support/audit/?tool=task.list", headers)
    hello = await tail.receive_json_from(timeout=WAIT)
    assert hello["type"] == "hello"
    # when
    await sync_to_async(record)(tool="memory.search")
    first = await sync_to_async(record)(tool="task.list", principal_id="service:4")
    # then
    message = await tail.receive_json_from(timeout=WAIT)
    assert message["type"] == "events"
    assert [e["sequence"] for e in message["events"]] == [first.sequence]
    assert message["events"][0]["url"] == f"/support/audit/{first.sequence}/"
    # when: the socket drops, an event is written meanwhile, the page reconnects from the last sequence it saw
    await tail.disconnect()
    missed = await sync_to_async(record)(tool="task.list")
    tail = await _connect(f"/ws/support/audit/?tool=task.list&after={message['last']}", headers)
    # then
    assert (await tail.receive_json_from(timeout=WAIT))["type"] == "hello"
    caught_up = await tail.receive_json_from(timeout=WAIT)
    assert [e["sequence"] for e in caught_up["events"]] == [missed.sequence]
    await tail.disconnect()


@pytest.mark.parametrize(
    ("kind", "path", "code", "text"),
    [
        ("anonymous", "/ws/support/audit/", 4401, "Sign in"),
        ("plain", "/ws/support/audit/", 4403, "no 'support' role"),
        ("support", "/ws/support/audit/?outcome=nope", 4400, "outcome: Select a valid choice"),
        ("support", "/ws/support/audit/?after=-3", 4400, "after: give the last sequence"),
        ("support", "/ws/support/runs/not-a-uuid/", 4400, "badly formed"),
    ],
)
async def test_refusals_say_why_and_close(users, kind, path, code, text):
    # given
    headers = [] if kind == "anonymous" else await sync_to_async(_cookie)(users[kind])
    # when
    socket = await _connect(path, headers)
    message = await socket.receive_json_from(timeout=WAIT)
    closed = await socket.receive_output(timeout=WAIT)
    # then
    assert message["type"] == "error"
    assert message["code"] == code
    assert text in message["message"]
    assert closed == {"type": "websocket.close", "code": code}


async def test_run_timeline_follows_the_run_live(users):
    # given
    owner = Principal(id="service:8", kind="service", name="agent", identity_source="api_token", grants=frozenset())
    run = await sync_to_async(runs_services.run_start)(principal=owner, name="live", metadata=None, lease_seconds=300)
    headers = await sync_to_async(_cookie)(users["support"])
    socket = await _connect(f"/ws/support/runs/{run.pk}/", headers)
    initial = await socket.receive_json_from(timeout=WAIT)
    assert initial["state"] == "active"
    assert [e["kind"] for e in initial["events"]] == ["run.started"]
    # when
    await sync_to_async(runs_services.run_cancel)(run_id=str(run.pk), principal=owner, reason="done")
    # then
    update = await socket.receive_json_from(timeout=WAIT)
    assert update["state"] == "cancelled"
    assert [e["kind"] for e in update["events"]] == ["run.cancelled"]
    assert update["last"] == 2
    await socket.disconnect()


async def test_a_session_that_ends_closes_the_live_tail_with_a_message(users, monkeypatch):
    # given
    from django.contrib.sessions.models import Session

    from apps.support import consumers

    monkeypatch.setattr(consumers, "SESSION_CHECK_S", 0.0)
    headers = await sync_to_async(_cookie)(users["support"])
    tail = await _connect("/ws/support/audit/", headers)
    assert (await tail.receive_json_from(timeout=WAIT))["type"] == "hello"
    # when: the session is gone (logged out elsewhere, or expired and cleared)
    await sync_to_async(Session.objects.all().delete)()
    # then
    message = await tail.receive_json_from(timeout=WAIT)
    assert message == {
        "type": "error",
        "code": 4401,
        "message": "Your session has ended: reload the page and sign in again.",
    }
    assert await tail.receive_output(timeout=WAIT) == {"type": "websocket.close", "code": 4401}


async def test_the_writer_hook_wakes_the_tail_at_once(users, monkeypatch):
    # given: polling so slow that only the nudge can deliver within the wait
    from apps.support import consumers
    from apps.support.live import audit_appended_anotify

    monkeypatch.setattr(consumers, "POLL_S", 60.0)
    headers = await sync_to_async(_cookie)(users["support"])
    tail = await _connect("/ws/support/audit/", headers)
    assert (await tail.receive_json_from(timeout=WAIT))["type"] == "hello"
    await asyncio.sleep(0.2)  # the consumer is now waiting
    # when
    event = await sync_to_async(record)(tool="task.list")
    await audit_appended_anotify()
    # then
    message = await tail.receive_json_from(timeout=WAIT)
    assert [e["sequence"] for e in message["events"]] == [event.sequence]
    await tail.disconnect()
