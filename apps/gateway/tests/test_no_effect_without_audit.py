"""No state change without its audit row: one nesting limit at the edge, and the audit checked before the effect."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apps.audit.models import AuditEvent
from apps.audit.writer import AuditRecord, prepare
from apps.common import jsonvalues
from apps.gateway import integrations
from apps.gateway.tests.inprocess import call_app, encode, handshake_session, meta, modern_headers, modern_tool_call
from apps.runs.models import Run

# params.arguments.metadata sits at depth 4 of the message: {"params": {"arguments": {"metadata": {...}}}}
ENVELOPE_DEPTH = 3


def nest(depth: int, kinds: list[bool], leaf: object) -> object:
    """`leaf` inside `depth` containers (a list where `kinds[i]`, else an object)."""
    value = leaf
    for level in range(depth):
        value = [value] if kinds[level % len(kinds)] else {"k": value}
    return value


async def _rows(**filters: object) -> int:
    return await AuditEvent.objects.filter(**filters).acount()


@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    depth=st.integers(1, jsonvalues.MAX_DEPTH + 300 - ENVELOPE_DEPTH),
    kinds=st.lists(st.booleans(), min_size=1, max_size=4),
)
async def test_nesting_is_refused_at_the_edge_or_run_and_audited(admin_token, depth, kinds):
    # given run.start arguments whose metadata nests `depth` deep
    request_id = str(uuid.uuid4())
    metadata = nest(depth, kinds, "leaf")
    metadata = metadata if isinstance(metadata, dict) else {"m": metadata}
    message_depth = jsonvalues.depth({"params": {"arguments": {"metadata": metadata}}})
    runs_before = await Run.objects.acount()
    # when it is called
    answer = await modern_tool_call(admin_token, "run.start", {"name": "nested", "metadata": metadata}, request_id)
    # then within the one limit the run exists with its audit row; past it nothing ran and the refusal is audited
    assert answer.status < 500
    if message_depth <= jsonvalues.MAX_DEPTH:
        assert answer.final()["result"]["isError"] is False
        assert await Run.objects.acount() == runs_before + 1
        assert await _rows(request_id=request_id, tool="run.start", outcome="ok") == 1
    else:
        assert answer.status == 400
        assert f"deeper than {jsonvalues.MAX_DEPTH} levels" in answer.final()["error"]["message"]
        assert await Run.objects.acount() == runs_before
        assert await _rows(detail__contains=f"deeper than {jsonvalues.MAX_DEPTH}") >= 1


json_leaves = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    value=st.recursive(json_leaves, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c)),
    depth=st.integers(0, jsonvalues.MAX_DEPTH),
    kinds=st.lists(st.booleans(), min_size=1, max_size=4),
)
def test_the_audit_serializer_records_everything_the_edge_accepts(value, depth, kinds):
    # given any JSON value, nested up to the edge's limit
    arguments = {"a": nest(depth, kinds, value)}
    # when it passes the edge's check
    if jsonvalues.value_problem({"params": arguments}) is not None:
        return
    # then the audit writer can prepare its row (serialize, redact, digest)
    row = prepare(AuditRecord(method="tools/call", outcome="ok", arguments=arguments))
    assert row["arguments_digest"]


METHODS = ["", None, 5, [], {}, "\x00"]
IDS = [1, 2**63, 2**64 - 1, -1.5, True, None, "x\x00"]


@pytest.mark.parametrize("era", ["modern", "handshake"])
async def test_every_malformed_envelope_is_refused_and_audited(admin_token, era):
    # given every bad method with every kind of id, on both wires (the handshake one in a session)
    session = await handshake_session(admin_token) if era == "handshake" else {}
    failures = []
    for method in METHODS:
        for request_id in IDS:
            message = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": {"_meta": meta()}}
            if era == "modern":
                headers = modern_headers(admin_token, method if isinstance(method, str) else "x")
                headers["mcp-method"] = headers["mcp-method"].replace("\x00", "")
            else:
                headers = session
            before = await AuditEvent.objects.acount()
            # when it is posted
            answer = await call_app("POST", headers, encode(message))
            # then it is answered (never 5xx, never an internal error) and audited once
            final = answer.final()
            code = final.get("error", {}).get("code")
            if answer.status >= 500 or code == -32603 or await AuditEvent.objects.acount() != before + 1:
                failures.append(f"method={method!r} id={request_id!r}: {answer.status} {final}")
    assert not failures, "\n".join(failures)


@pytest.fixture
def refusing_writer(settings):
    settings.MCP_AUDIT_WRITER = "apps.gateway.tests.refusing_writer"
    integrations.audit_module.cache_clear()
    yield
    integrations.audit_module.cache_clear()


async def test_arguments_the_audit_cannot_record_are_not_run(admin_token, refusing_writer):
    # given an audit writer that cannot record these arguments
    request_id = str(uuid.uuid4())
    arguments = {"name": "never", "metadata": {"unrecordable": True}}
    # when run.start is called with them
    answer = await modern_tool_call(admin_token, "run.start", arguments, request_id)
    # then no run was created, the refusal says why and is audited (without the arguments)
    assert answer.status == 400
    assert "cannot be recorded in the audit trail" in answer.final()["error"]["message"]
    assert await Run.objects.acount() == 0
    assert await _rows(request_id=request_id, outcome="invalid", arguments="{}") == 1


def test_the_edge_limit_is_within_what_the_audit_serializer_can_nest():
    # the audit row's JSON wraps the arguments; orjson's encoder stops at 254 levels
    deepest = nest(jsonvalues.MAX_DEPTH, [True, False], 1)
    assert prepare(AuditRecord(method="m", outcome="ok", arguments={"a": deepest}))["arguments"]


PARAMS_HOSTILE = [
    ("tools/call", {"name": "run.start", "arguments": {"name": "r"}, "_meta": {"io.mcpplat/runId": "a\x00b"}}),
    ("tools/call", {"name": "run.start", "arguments": {"name": "r"}, "_meta": {"io.mcpplat/runId": 2**63}}),
    ("tools/list", {"cursor": "\x00"}),
    ("tasks/get", {"taskId": "a\x00b"}),
    ("tasks/list", {"cursor": "x\x00"}),
    ("tasks/cancel", {"taskId": "\x00"}),
    ("tasks/result", {"taskId": "\x00"}),
]


@pytest.mark.parametrize(
    ("method", "params"), PARAMS_HOSTILE, ids=[f"{m}-{i}" for i, (m, _) in enumerate(PARAMS_HOSTILE)]
)
async def test_params_the_stack_cannot_hold_are_invalid_params(admin_token, method, params):
    # given a handshake session and params with a value PostgreSQL cannot hold
    headers = await handshake_session(admin_token)
    before = await AuditEvent.objects.acount()
    message = {"jsonrpc": "2.0", "id": 7, "method": method, "params": params}
    # when it is sent
    answer = await call_app("POST", headers, encode(message))
    # then it is refused as invalid params naming the field, audited once, and nothing ran
    error = answer.final()["error"]
    assert answer.status < 500
    assert error["code"] == -32602, error
    assert error["message"].startswith("params/"), error
    assert await AuditEvent.objects.acount() == before + 1
    assert await Run.objects.acount() == 0
