"""A `oneOf` / `anyOf` failure says what to do: the alternatives, each one's required fields, why each failed.

Two generators: every `oneOf` / `anyOf` in every registered tool's input schema (driven through the gateway's own
`invalid_arguments_result`), and Hypothesis-made combinators of required-field sets and typed alternatives.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from apps.gateway.protocol import invalid_arguments_result
from apps.gateway.registry import registry
from apps.gateway.schemas import explain, offline_validator

_BARE = "is not valid under any of the given schemas"
_CANDIDATES: list[Any] = [None, 12345, True, 1.5, "", [], {}, [1], {"zz": 1}]


def _combinators(schema: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], str]]:
    """(schema path, keyword) of every oneOf/anyOf reachable through properties/items/additionalProperties."""
    if not isinstance(schema, dict):
        return
    for keyword in ("oneOf", "anyOf"):
        if isinstance(schema.get(keyword), list):
            yield path, keyword
            for index, alternative in enumerate(schema[keyword]):
                yield from _combinators(alternative, (*path, keyword, index))
    for name, sub in (schema.get("properties") or {}).items():
        yield from _combinators(sub, (*path, "properties", name))
    for keyword in ("items", "additionalProperties"):
        yield from _combinators(schema.get(keyword), (*path, keyword))


def _node(schema: dict[str, Any], path: tuple[Any, ...]) -> dict[str, Any]:
    for step in path:
        schema = schema[step]
    return schema


def _instance_at(path: tuple[Any, ...], value: Any) -> Any:
    """An arguments object that puts `value` where `path` (a schema path) validates."""
    steps = list(path)
    out = value
    while steps:
        step = steps.pop()
        if step in ("oneOf", "anyOf") or isinstance(step, int):
            continue
        if steps and steps[-1] == "properties":
            steps.pop()
            out = {step: out}
        elif step == "items":
            out = [out]
        elif step == "additionalProperties":
            out = {"any_name": out}
    return out


def _table() -> list[Any]:
    registry.autodiscover()
    rows = []
    for tool in registry.all():
        for path, keyword in _combinators(tool.input_schema):
            rows.append(pytest.param(tool.name, path, keyword, id=f"{tool.name}:{'/'.join(map(str, path)) or '.'}"))
    return rows


@pytest.mark.parametrize(("tool_name", "path", "keyword"), _table())
def test_every_tool_combinator_failure_names_its_alternatives(tool_name, path, keyword):
    tool = registry.get(tool_name)
    node = _node(tool.input_schema, path)
    alternatives = node[keyword]
    # given a value that none of the alternatives accepts
    value = next(c for c in _CANDIDATES if not Draft202012Validator(node).is_valid(c) and not _any_ok(alternatives, c))
    arguments = _instance_at(path, value)
    # when the gateway validates it
    errors = list(tool.input_validator.iter_errors(arguments))
    result = invalid_arguments_result(tool, errors)
    # then the item the caller reads for that combinator names every alternative's required fields (or type)
    items = [i for i in result["structuredContent"]["error"]["errors"] if i["rule"] == keyword]
    assert items, f"no {keyword} item for {path}"
    assert all(_BARE not in item["message"] for item in items)
    assert any(_names_all(item["message"], alternatives) for item in items), items


def _names_all(message: str, alternatives: list[Any]) -> bool:
    for alternative in alternatives:
        if any(f"`{name}`" not in message for name in alternative.get("required", [])):
            return False
        if isinstance(alternative.get("type"), str) and alternative["type"] not in message:
            return False
    return True


def _any_ok(alternatives: list[Any], value: Any) -> bool:
    return any(Draft202012Validator(alt).is_valid(value) for alt in alternatives)


def test_sandbox_exec_without_command_or_code_says_which_to_give():
    # given sandbox.exec with neither `command` nor `code`
    registry.autodiscover()
    tool = registry.get("sandbox.exec")
    args = {"sandbox_id": "00000000-0000-0000-0000-000000000000"}
    # when
    result = invalid_arguments_result(tool, list(tool.input_validator.iter_errors(args)))
    # then
    assert result["structuredContent"]["error"]["message"] == (
        "Invalid arguments for sandbox.exec: (arguments): give exactly one of `command` or `code`; none is present "
        "(rule: oneOf). Fix the named field(s) and call again."
    )
    both = {**args, "command": "true", "code": "pass"}
    result = invalid_arguments_result(tool, list(tool.input_validator.iter_errors(both)))
    assert "give exactly one of `command` or `code`, not several" in result["structuredContent"]["error"]["message"]


_FIELD = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=8)
_TYPED = st.sampled_from(
    [
        {"type": "string", "minLength": 1},
        {"type": "integer", "minimum": 0},
        {"type": "array", "items": {"type": "string"}},
        {"type": "boolean"},
        {"enum": ["a", "b"]},
        {"const": 7},
    ]
)


@settings(max_examples=200, deadline=None)
@given(
    keyword=st.sampled_from(["oneOf", "anyOf"]),
    sets=st.lists(st.lists(_FIELD, min_size=1, max_size=3, unique=True), min_size=2, max_size=4, unique_by=tuple),
)
def test_generated_required_alternatives_name_every_field(keyword, sets):
    # given a combinator of required-field sets, and an object with none of the fields
    schema = {"type": "object", keyword: [{"required": s} for s in sets]}
    errors = [e for e in offline_validator(schema, field="s").iter_errors({"unrelated": 1}) if e.validator == keyword]
    # when / then the message names every field of every alternative
    assert len(errors) == 1
    message = explain(errors[0])
    assert message.startswith(f"give {'exactly' if keyword == 'oneOf' else 'at least'} one of ")
    for fields in sets:
        assert " + ".join(f"`{f}`" for f in fields) in message


@settings(max_examples=200, deadline=None)
@given(
    keyword=st.sampled_from(["oneOf", "anyOf"]),
    alternatives=st.lists(_TYPED, min_size=2, max_size=4, unique_by=repr),
    value=st.sampled_from([None, 1.5, {"k": 1}, -3, "", ["x", 1]]),
)
def test_generated_typed_alternatives_say_why_each_failed(keyword, alternatives, value):
    schema = {"properties": {"f": {keyword: alternatives}}}
    errors = [e for e in offline_validator(schema, field="s").iter_errors({"f": value}) if e.validator == keyword]
    if not errors:
        return  # some alternative accepts this value (or, for oneOf, several do: covered below)
    message = explain(errors[0])
    assert _BARE not in message
    if errors[0].context:
        assert message.startswith(f"must match {'exactly one' if keyword == 'oneOf' else 'at least one'} of ")
        for index, alternative in enumerate(alternatives, start=1):
            assert f"[{index}] " in message
            if "type" in alternative:
                assert alternative["type"] in message
    else:
        assert message.startswith("matches more than one alternative")
