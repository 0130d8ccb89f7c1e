"""Values the wire accepts but the stack cannot hold: every tool, every argument, hostile values per JSON type.

Each answer is an `invalid_arguments` tool error naming the argument, before the tool runs; never a 5xx and
never -32603. The schemas in tools/list state the bounds the gateway enforces.
"""

from __future__ import annotations

import re

import orjson
import pytest

from apps.common import jsonvalues
from apps.gateway.registry import registry
from apps.gateway.schemas import harden, input_validator
from apps.gateway.tests import schema_cases
from apps.gateway.tests.inprocess import modern_tool_call

registry.autodiscover()
TOOLS = [t for t in registry.all() if not t.name.startswith("test_")]


def _problems(answer) -> list[dict]:
    assert answer.status < 500, f"HTTP {answer.status}: {answer.body[:300]!r}"
    final = answer.final()
    assert "error" not in final, f"protocol error {final['error']}"
    result = final["result"]
    assert result["isError"] is True, f"accepted: {str(result)[:300]}"
    error = result["structuredContent"]["error"]
    assert error["code"] == "invalid_arguments", error
    return error["errors"]


@pytest.mark.parametrize("tool", TOOLS, ids=lambda t: t.name)
async def test_every_hostile_value_of_every_argument_is_refused_naming_it(tool, admin_token):
    # given every argument of the tool and the hostile values of its type
    cases = list(schema_cases.hostile_cases(tool.input_schema))
    failures = []
    for path, value, arguments in cases:
        # when the tool is called with one of them (the rest of the call valid)
        answer = await modern_tool_call(admin_token, tool.name, arguments)
        # then the call is refused before it runs, naming the argument
        try:
            named = [p["path"] for p in _problems(answer)]
            assert any(p == path or p.startswith(path + "/") for p in named), f"names {named}"
        except AssertionError as exc:
            failures.append(f"{path}={value!r}: {exc}")
    assert not failures, f"{len(failures)} of {len(cases)} cases:\n" + "\n".join(failures[:40])


@pytest.mark.parametrize("tool", TOOLS, ids=lambda t: t.name)
def test_published_schemas_state_the_bounds_the_gateway_enforces(tool):
    # given the input schema tools/list publishes
    published = tool.input_schema
    # then every integer and number is bounded, every free string is NUL-free, and hardening is idempotent
    for path, schema in schema_cases.argument_paths(published):
        kinds = schema_cases.types(schema)
        if "integer" in kinds:
            assert schema["minimum"] >= jsonvalues.INT64_MIN, path
            assert schema["maximum"] <= jsonvalues.INT64_MAX, path
        if "number" in kinds:
            assert "maximum" in schema or "exclusiveMaximum" in schema, path
        if "string" in kinds and "format" not in schema:
            assert re.search(schema["pattern"], "a\x00b") is None, path
    assert harden(published) == published
    orjson.dumps(published)  # tools/list can encode it


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        (5, True),
        (5.0, False),
        (True, False),
        (2**63 - 1, True),
        (2**63, False),
        (-(2**63), True),
        (-(2**63) - 1, False),
    ],
)
def test_an_integer_is_an_integer_within_bigint(value, valid):
    validator = input_validator(harden({"type": "object", "properties": {"n": {"type": "integer"}}}))
    assert validator.is_valid({"n": value}) is valid


@pytest.mark.parametrize(
    ("text", "valid"),
    [
        ("2026-07-28T12:00:00Z", True),
        ("2026-07-28T12:00:00+05:30", True),
        ("0001-01-01T00:00:00Z", True),
        ("0001-01-01T00:00:00+23:59", False),
        ("9999-12-31T23:59:59-23:59", False),
        ("2026-07-28T12:00:00", False),
        ("yesterday", False),
    ],
)
def test_a_date_time_must_fit_the_database_once_in_utc(text, valid):
    validator = input_validator({"type": "object", "properties": {"t": {"type": "string", "format": "date-time"}}})
    assert validator.is_valid({"t": text}) is valid
