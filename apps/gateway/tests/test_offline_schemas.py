"""No JSON Schema the platform compiles (a caller's or a tool's) reaches the network or the filesystem.

The detector is CPython's audit hooks: every `socket.connect` and every `open` the process makes while a generated
schema is compiled and used is recorded, so "zero connections reached the server" and "the file was never read" are
observed, not inferred from the error text.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from referencing.exceptions import Unresolvable

from apps.gateway.registry import Registry, Tool
from apps.gateway.schemas import SchemaRefused, offline_validator

SECRET = "fetched-document-sentinel"
PROPERTY = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)


class _Recorder:
    """Audit-hook sink: `socket.connect` addresses and `open` paths seen while `armed`."""

    def __init__(self) -> None:
        self.armed = False
        self.connects: list[Any] = []
        self.opens: list[str] = []

    def __call__(self, event: str, args: tuple[Any, ...]) -> None:
        if not self.armed:
            return
        if event == "socket.connect":
            self.connects.append(args[1])
        elif event == "open" and isinstance(args[0], str | bytes | Path):
            self.opens.append(str(args[0]))


_RECORDER = _Recorder()
sys.addaudithook(_RECORDER)  # hooks cannot be removed; it records nothing unless armed


class _Doc(BaseHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.server.hits.append(self.path)  # type: ignore[attr-defined]
        body = json.dumps({"type": "string", "description": SECRET, "$defs": {"x": {"const": SECRET}}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/schema+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def doc_server() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Doc)
    server.hits = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()


@pytest.fixture(scope="module")
def doc_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("schemas") / "x.json"
    path.write_text(json.dumps({"type": "string", "description": SECRET}))
    return path


def _targets(port: int, file: Path) -> list[str]:
    http = f"http://127.0.0.1:{port}"
    return [
        f"{http}/x.json",
        f"{http}/x.json#/$defs/x",
        f"https://127.0.0.1:{port}/x.json",
        f"{http}/",
        f"//127.0.0.1:{port}/x.json",
        file.as_uri(),
        f"{file.as_uri()}#/description",
        str(file),
        "x.json",  # relative: against an `$id` base below it becomes the server or the file
        "../x.json#",
    ]


_WRAPS = [
    lambda s: {"properties": {"a": s}},
    lambda s: {"items": s},
    lambda s: {"prefixItems": [True, s]},
    lambda s: {"allOf": [s]},
    lambda s: {"anyOf": [{"type": "null"}, s]},
    lambda s: {"oneOf": [s, {"type": "boolean"}]},
    lambda s: {"not": s},
    lambda s: {"if": s, "then": True, "else": s},
    lambda s: {"$defs": {"d": s}, "$ref": "#/$defs/d"},
    lambda s: {"$defs": {"d": s}},
    lambda s: {"additionalProperties": s},
    lambda s: {"patternProperties": {"^a": s}},
    lambda s: {"dependentSchemas": {"a": s}},
    lambda s: {"contains": s},
    lambda s: {"propertyNames": s},
    lambda s: {"unevaluatedProperties": s},
]


@st.composite
def hostile_schemas(draw: st.DrawFn, port: int, file: Path) -> dict[str, Any]:
    target = draw(st.sampled_from(_targets(port, file)))
    keyword = draw(st.sampled_from(["$ref", "$dynamicRef", "$schema", "$id"]))
    leaf: dict[str, Any] = {keyword: target}
    if keyword == "$id" or draw(st.booleans()):
        # an `$id` base makes relative references point at the server/file; a local ref exercises the base
        leaf = {
            "$id": draw(st.sampled_from([f"http://127.0.0.1:{port}/", file.parent.as_uri() + "/"])),
            **leaf,
        }
        if keyword == "$id":
            leaf["$ref"] = draw(st.sampled_from(["x.json", "#", "#/$defs/none", target]))
    schema: dict[str, Any] = leaf
    for wrap in draw(st.lists(st.sampled_from(_WRAPS), min_size=0, max_size=4)):
        schema = wrap(schema)
    return schema


_INSTANCES: list[Any] = [None, 1, "s", [1, "a"], {"a": 1}, {"a": "s", "b": [1]}, {"aa": {"a": 1}}]


@pytest.fixture
def armed(doc_server: ThreadingHTTPServer, doc_file: Path) -> Iterator[_Recorder]:
    doc_server.hits.clear()  # type: ignore[attr-defined]
    yield _RECORDER
    _RECORDER.armed = False


def _compile_and_use(schema: dict[str, Any]) -> list[str]:
    """Everything a caller could read back: the refusal, or every validation error over several instances."""
    try:
        validator = offline_validator(schema, field="structured.schema")
    except SchemaRefused as exc:
        return [str(exc)]
    said = []
    for instance in _INSTANCES:
        try:
            said += [error.message for error in validator.iter_errors(instance)]
        except (Unresolvable, RecursionError) as exc:
            said.append(repr(exc))
    return said


def test_generated_hostile_references_never_leave_the_document(armed, doc_server, doc_file):
    port = doc_server.server_port

    @PROPERTY
    @given(schema=hostile_schemas(port, doc_file))
    def check(schema: dict[str, Any]) -> None:
        # when
        armed.connects.clear()
        armed.opens.clear()
        armed.armed = True
        try:
            said = _compile_and_use(schema)
        finally:
            armed.armed = False
        # then nothing was fetched, nothing fetched reached the answer
        assert [a for a in armed.connects if isinstance(a, tuple) and a[1] == port] == []
        assert [p for p in armed.opens if Path(p).name == doc_file.name] == []
        assert doc_server.hits == []
        assert all(SECRET not in line for line in said)

    check()


@pytest.mark.parametrize("keyword", ["$ref", "$dynamicRef"])
@pytest.mark.parametrize(
    ("wrap", "where"),
    [
        (lambda s: s, "structured.schema"),
        (lambda s: {"properties": {"a": s}}, "structured.schema.properties.a"),
        (lambda s: {"items": {"anyOf": [True, s]}}, "structured.schema.items.anyOf.1"),
        (lambda s: {"$defs": {"d": s}}, "structured.schema.$defs.d"),
    ],
)
def test_a_reference_outside_the_document_is_a_clear_error_naming_where_it_is(
    doc_server, doc_file, keyword, wrap, where
):
    # given a reference to the loopback server
    url = f"http://127.0.0.1:{doc_server.server_port}/x.json"
    # when / then
    with pytest.raises(SchemaRefused) as refused:
        offline_validator(wrap({keyword: url}), field="structured.schema")
    assert refused.value.field == f"{where}.{keyword}"
    assert str(refused.value) == (
        f"{where}.{keyword}: {url!r} does not resolve inside the schema (nothing outside it is ever fetched); "
        "only references inside the schema itself are allowed: a JSON pointer such as #/$defs/name, an anchor "
        "(#name), or the $id of a subschema embedded in the same document"
    )


_LOCAL = [
    {"$defs": {"n": {"type": "integer"}}, "properties": {"a": {"$ref": "#/$defs/n"}}},
    {"$defs": {"n": {"$anchor": "num", "type": "integer"}}, "properties": {"a": {"$ref": "#num"}}},
    {
        "$id": "https://example.invalid/r",
        "$defs": {"n": {"$id": "n", "type": "integer"}},
        "properties": {"a": {"$ref": "n"}},
    },
    {"$dynamicAnchor": "t", "properties": {"a": {"$dynamicRef": "#t"}}, "type": "object"},
]


@pytest.mark.parametrize("schema", _LOCAL)
def test_references_inside_the_document_still_resolve(armed, schema):
    # when
    armed.armed = True
    validator = offline_validator(schema, field="structured.schema")
    bad = [e.message for e in validator.iter_errors({"a": "x"})]
    good = [e.message for e in validator.iter_errors({"a": 1} if "$dynamicRef" not in str(schema) else {"a": {}})]
    armed.armed = False
    # then the referenced subschema applied, offline
    assert armed.connects == []
    assert bad == (
        ["'x' is not of type 'object'"] if "$dynamicRef" in str(schema) else ["'x' is not of type 'integer'"]
    )
    assert good == []


def test_a_bundled_metaschema_resolves_locally(armed):
    # when
    armed.armed = True
    validator = offline_validator({"$ref": "https://json-schema.org/draft/2020-12/schema"}, field="s")
    errors = [e.message for e in validator.iter_errors({"type": 5})]
    armed.armed = False
    # then
    assert armed.connects == []
    assert errors == ["5 is not valid under any of the given schemas"]


def test_a_tool_declaring_a_remote_reference_is_refused_at_registration(doc_server):
    # given a tool whose input schema points at the loopback server
    url = f"http://127.0.0.1:{doc_server.server_port}/x.json"
    spec = Tool(
        name="t.remote",
        title="t",
        description="t",
        input_schema={"type": "object", "properties": {"a": {"$ref": url}}},
        output_schema=None,
        handler=lambda ctx, args: None,
        permission="t.remote",
    )
    # when / then
    with pytest.raises(ImproperlyConfigured, match=r"input_schema\.properties\.a\.\$ref: .* does not resolve"):
        Registry().register(spec)
    assert doc_server.hits == []


@settings(max_examples=60, deadline=None)
@given(
    levels=st.integers(1, 400),
    wrap=st.sampled_from(
        [lambda s: {"properties": {"a": s}}, lambda s: {"allOf": [s]}, lambda s: {"items": s}, lambda s: {"not": s}]
    ),
)
def test_a_deep_schema_is_a_clear_error_never_a_crash(levels, wrap):
    # given a schema nested `levels` deep
    schema: Any = {}
    for _ in range(levels):
        schema = wrap(schema)
    # when / then it compiles (and validates) or is refused naming the limit; never a RecursionError
    outcome: str
    try:
        validator = offline_validator(schema, field="structured.schema")
    except SchemaRefused as exc:
        outcome = str(exc)
    else:
        list(validator.iter_errors({"a": [1]}))
        outcome = "compiled"
    assert outcome in (
        "compiled",
        "structured.schema: nests deeper than 64 levels of objects and arrays; flatten it with $defs",
    )
