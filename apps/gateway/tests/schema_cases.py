"""Cases generated from tool input schemas: every argument's path, a minimal valid call, hostile values per type."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

Path = tuple[str, ...]

# Values the wire (orjson) parses but the stack behind it cannot hold, for any argument: a NUL in a string, in
# a key, in a list; the largest integer orjson parses (beyond PostgreSQL's bigint); a float beyond any bound.
ANY_TYPE: tuple[Any, ...] = ("a\x00b", 2**64 - 1, -1e308, {"k\x00": 0}, ["\x00"])
BY_TYPE: dict[str, tuple[Any, ...]] = {
    # 5.0 where an integer is meant; just past bigint; past 64 bits (parsed as a float); the float extremes
    "integer": (5.0, 2**63, -(2**63) - 1, 10**30, 1e308),
    "number": (1e308, 2**63, 10**30),
    "string": ("\x00", "x\x00" * 3),
    "object": ({"k": "a\x00"}, {"k": 2**63}, {"k": {"k\x00": [1]}}),
    "array": ([2**63], [{"\x00": "x"}]),
}
BY_FORMAT: dict[str, tuple[Any, ...]] = {
    # offsets PostgreSQL (and Python's datetime) cannot hold once in UTC; no offset; not a date-time at all
    "date-time": (
        "0001-01-01T00:00:00+23:59",
        "9999-12-31T23:59:59-23:59",
        "2026-07-28T12:00:00",
        "2026-13-40T99:00:00Z",
    ),
    "date": ("2026-02-30", "0000-01-01"),
    "uuid": ("not-a-uuid", "0f8fad5b-d9cb-469f-a165-70867728950e\x00"),
}


def types(schema: dict[str, Any]) -> list[str]:
    declared = schema.get("type")
    if isinstance(declared, str):
        return [declared]
    if isinstance(declared, list):
        return [t for t in declared if isinstance(t, str)]
    return []


def minimal(schema: dict[str, Any]) -> Any:
    """A small value valid under `schema` (the shapes our tool schemas use)."""
    if "enum" in schema:
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    declared = types(schema)
    if not declared and isinstance(schema.get("oneOf"), list) and "type" in schema["oneOf"][0]:
        return minimal(schema["oneOf"][0])
    kind = declared[0] if declared else "object"
    if kind == "object":
        required = list(schema.get("required", []))
        branches = schema.get("oneOf") or schema.get("anyOf") or []
        if branches and isinstance(branches[0], dict):
            required += [r for r in branches[0].get("required", []) if r not in required]
        properties = schema.get("properties", {})
        return {name: minimal(properties.get(name, {"type": "string"})) for name in required}
    if kind == "array":
        return [minimal(schema.get("items", {"type": "string"}))] * int(schema.get("minItems", 0))
    if kind == "string":
        fmt = schema.get("format")
        if fmt == "uuid":
            return str(uuid.uuid4())
        if fmt == "date-time":
            return "2026-07-28T12:00:00Z"
        if fmt == "date":
            return "2026-07-28"
        return "x" * max(1, int(schema.get("minLength", 1)))
    if kind in {"integer", "number"}:
        low = schema.get("minimum", schema.get("exclusiveMinimum", 0) + 1)
        return max(int(low), 1) if kind == "integer" else float(max(low, 1))
    if kind == "boolean":
        return False
    return None


def argument_paths(schema: dict[str, Any], prefix: Path = ()) -> Iterator[tuple[Path, dict[str, Any]]]:
    """Every argument a call can carry, nested ones included (`items/0/content`), with its schema."""
    for name, sub in (schema.get("properties") or {}).items():
        if not isinstance(sub, dict):
            continue
        path = (*prefix, name)
        yield path, sub
        yield from _nested(sub, path)


def _nested(schema: dict[str, Any], path: Path) -> Iterator[tuple[Path, dict[str, Any]]]:
    if isinstance(schema.get("properties"), dict):
        yield from argument_paths(schema, path)
    items = schema.get("items")
    if isinstance(items, dict):
        yield (*path, "0"), items
        yield from _nested(items, (*path, "0"))


def place(schema: dict[str, Any], current: Any, path: Path, value: Any) -> Any:
    """`current` (valid under `schema`) with `value` at `path`, creating the containers on the way."""
    if not path:
        return value
    head, rest = path[0], path[1:]
    if head == "0" and isinstance(schema.get("items"), dict):
        items = schema["items"]
        child = current[0] if isinstance(current, list) and current else minimal(items)
        return [place(items, child, rest, value)]
    properties = schema.get("properties", {})
    obj = dict(current) if isinstance(current, dict) else minimal(schema)
    child_schema = properties[head]
    obj[head] = place(child_schema, obj.get(head, minimal(child_schema)), rest, value)
    return obj


def hostile_values(schema: dict[str, Any]) -> list[Any]:
    values: list[Any] = list(ANY_TYPE)
    for kind in types(schema):
        values.extend(BY_TYPE.get(kind, ()))
    values.extend(BY_FORMAT.get(schema.get("format", ""), ()))
    return values


def hostile_cases(input_schema: dict[str, Any]) -> Iterator[tuple[str, Any, dict[str, Any]]]:
    """(argument path, hostile value, the whole arguments object) for every argument and value."""
    base = minimal(input_schema)
    for path, schema in argument_paths(input_schema):
        for value in hostile_values(schema):
            yield "/".join(path), value, place(input_schema, base, path, value)
