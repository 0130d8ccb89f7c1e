"""Fuzz `/mcp` in-process: JSON-RPC envelopes, headers, every tool's input schema, and mutated valid requests.

Fixed seed (derandomize) and a bounded number of examples, so `make test` runs the same cases every time in
well under two minutes. For every request: no 5xx, no -32603, an answer within the hang guard, and exactly one
audit row written by the gateway (202 notifications and 405s are not audited by design). Queued tools are
asked for as tasks (params.task / the tasks extension) so they answer without a worker; the job they create is
the effect the audit row covers.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from apps.audit.models import AuditEvent
from apps.gateway.registry import registry
from apps.gateway.tests import schema_cases
from apps.gateway.tests.inprocess import call_app, handshake_session, meta, modern_headers

pytestmark = [pytest.mark.django_db(transaction=True)]

registry.autodiscover()
TOOLS = [t for t in registry.all() if not t.name.startswith("test_")]
METHODS = [
    "initialize",
    "ping",
    "tools/list",
    "tools/call",
    "server/discover",
    "logging/setLevel",
    "tasks/get",
    "tasks/list",
    "tasks/result",
    "tasks/cancel",
    "tasks/update",
    "notifications/cancelled",
    "",
]
EXAMPLES = 1000
HANG_GUARD_S = 20.0
NOT_AUDITED = {202, 405}

json_leaf = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
    | st.sampled_from(["\x00", "2026-07-28T12:00:00Z", "0001-01-01T00:00:00+23:59", str(uuid.UUID(int=1))])
)
json_value = st.recursive(
    json_leaf, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=6), c, max_size=3), max_leaves=8
)
request_id = st.one_of(st.integers(-(2**64), 2**64), st.text(max_size=8), st.none(), st.booleans(), st.floats())


def _replace(value: Any, path: list[int], new: Any) -> Any:
    """`value` with the node chosen by `path` (indices into its containers) replaced by `new`."""
    if not path or not isinstance(value, dict | list) or not value:
        return new
    keys = list(value) if isinstance(value, dict) else list(range(len(value)))
    key = keys[path[0] % len(keys)]
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[key] = _replace(copy[key], path[1:], new)
    return copy


@st.composite
def tool_arguments(draw: st.DrawFn, tool: Any) -> Any:
    schema = tool.input_schema
    base = schema_cases.minimal(schema)
    how = draw(st.sampled_from(["valid", "valid", "hostile", "mutated", "random"]))
    if how == "valid":
        return base
    if how == "hostile":
        cases = list(schema_cases.hostile_cases(schema))
        return draw(st.sampled_from(cases))[2] if cases else base
    if how == "mutated":
        return _replace(base, draw(st.lists(st.integers(0, 9), max_size=4)), draw(json_value))
    return draw(json_value)


@st.composite
def requests(draw: st.DrawFn) -> dict[str, Any]:
    """One request: era, JSON-RPC message (or raw bytes) and header changes."""
    era = draw(st.sampled_from(["modern", "handshake"]))
    kind = draw(st.sampled_from(["tool", "tool", "tool", "tool", "envelope", "mutated", "bytes"]))
    tool = draw(st.sampled_from(TOOLS))
    params: dict[str, Any] = {"name": tool.name, "arguments": draw(tool_arguments(tool))}
    if tool.execution == "queued" and era == "handshake":
        params["task"] = {"ttl": 60_000}
    if era == "modern":
        params["_meta"] = meta({"extensions": {"io.modelcontextprotocol/tasks": {}}})
    message: Any = {"jsonrpc": "2.0", "id": draw(st.integers(1, 2**31)), "method": "tools/call", "params": params}
    name = tool.name
    method = "tools/call"
    if kind == "envelope":
        method = draw(st.sampled_from(METHODS) | st.text(max_size=10))
        message = {
            "jsonrpc": draw(st.sampled_from(["2.0", "2.0", "1.0", None])),
            "id": draw(request_id),
            "method": method,
            "params": draw(st.sampled_from([params, {}, None]) | json_value),
        }
        message = {k: v for k, v in message.items() if v is not None or draw(st.booleans())}
    elif kind == "mutated":
        message = _replace(message, draw(st.lists(st.integers(0, 9), min_size=1, max_size=5)), draw(json_value))
    body = json.dumps(message).encode()
    if kind == "bytes":
        body = draw(st.sampled_from([body[: draw(st.integers(0, len(body)))], draw(st.binary(max_size=40))]))
    headers_change = draw(
        st.just({})
        | st.just({})
        | st.just({})
        | st.dictionaries(
            st.sampled_from(["mcp-method", "mcp-name", "mcp-protocol-version", "content-type", "accept"]),
            st.sampled_from(["", "tools/call", "2026-07-28", "2025-11-25", "9999-01-01", "text/plain", "a\x7fb"])
            | st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=10),
            min_size=1,
            max_size=2,
        )
    )
    return {
        "era": era,
        "method": method if isinstance(method, str) else "x",
        "name": name,
        "body": body,
        "headers": headers_change,
    }


def _codes(messages: list[Any]) -> list[Any]:
    return [m["error"].get("code") for m in messages if isinstance(m, dict) and isinstance(m.get("error"), dict)]


@settings(
    max_examples=EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(case=requests())
async def test_mcp_answers_everything_and_audits_every_answer(admin_token, fuzz_session, case):
    # given a request on one of the wires
    if case["era"] == "modern":
        headers = modern_headers(admin_token, case["method"].replace("\x00", ""), case["name"])
    else:
        headers = dict(fuzz_session)
    headers.update(case["headers"])
    before = await AuditEvent.objects.filter(latency_ms__isnull=False).acount()
    # when it is posted
    try:
        answer = await call_app("POST", headers, case["body"], timeout=HANG_GUARD_S)
    except TimeoutError:
        pytest.fail(f"no answer within {HANG_GUARD_S} s (hang): {case}")
    # then it is answered without a server error, and the gateway audited it once
    assert answer.status < 500, (answer.status, answer.body[:300], case)
    messages = answer.messages()
    final = messages[-1] if messages and isinstance(messages[-1], dict) else {}
    result = final.get("result") if isinstance(final.get("result"), dict) else {}
    event(f"HTTP {answer.status} " + ("tool error" if result.get("isError") else "result" if result else "error"))
    assert -32603 not in _codes(messages), (messages, case)
    if answer.status not in NOT_AUDITED:
        after = await AuditEvent.objects.filter(latency_ms__isnull=False).acount()
        assert after == before + 1, (answer.status, answer.body[:300], case)


@pytest.fixture
async def fuzz_session(admin_token) -> dict[str, str]:
    return await handshake_session(admin_token)
