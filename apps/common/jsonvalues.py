"""What a caller's JSON may hold: the one set of limits the gateway's edge, the tool validator and the audit share.

The wire (orjson) accepts more than the stack behind it can hold: PostgreSQL's text and jsonb refuse NUL, its
bigint and orjson's encoder stop at 64 bits, Python's datetime ends at year 9999 (and `astimezone(UTC)` overflows
near the ends), orjson's encoder nests at most 254 deep. A value that passes `value_problem` can be parsed,
validated, stored, audited and echoed back; the gateway refuses any other before a tool runs.
"""

from __future__ import annotations

import math
import uuid
from datetime import UTC, date, datetime
from typing import Any

# Nesting of one JSON-RPC message (the envelope counts: `params.arguments` starts at depth 3). The audit
# serializer (orjson, limit 254) and redaction handle anything this deep; tests/fuzz proves it.
MAX_DEPTH = 64
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
# Floats a `number` may take without explicit bounds: integers up to here are exact in a double.
NUMBER_MAX = 2**53
# JSON Schema `pattern` (ECMA-262 and Python `re` read it alike): no NUL, which PostgreSQL text/jsonb cannot hold.
NUL_FREE_PATTERN = "^[^\\u0000]*$"


def depth(value: Any) -> int:
    """How deep `value` nests (a scalar is 0, `[]` and `{}` are 1). Iterative: safe on anything orjson parses."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            level += 1
            stack.extend((child, level) for child in item.values())
        elif isinstance(item, list):
            level += 1
            stack.extend((child, level) for child in item)
        deepest = max(deepest, level)
    return deepest


def _path(parts: tuple[str, ...]) -> str:
    return "/".join(parts) or "(arguments)"


def value_problem(value: Any, *, max_depth: int = MAX_DEPTH) -> tuple[str, str, str] | None:
    """The first part of `value` the stack cannot hold, as (path, rule, message); None when it all fits.

    Rules: `depth` (nested deeper than `max_depth`), `nul` (a string or key with U+0000), `int64` (an integer
    outside PostgreSQL's bigint), `finite` (a float that is not finite; orjson never parses one, Python may).
    """
    stack: list[tuple[Any, tuple[str, ...], int]] = [(value, (), 0)]
    while stack:
        item, parts, level = stack.pop()
        if isinstance(item, dict | list):
            if level + 1 > max_depth:
                return _path(parts), "depth", f"nested deeper than {max_depth} levels"
            if isinstance(item, dict):
                for key, child in item.items():
                    name = str(key)
                    if "\x00" in name:
                        return _path((*parts, name.replace("\x00", "\\u0000"))), "nul", _NUL_MESSAGE
                    stack.append((child, (*parts, name), level + 1))
            else:
                stack.extend((child, (*parts, str(index)), level + 1) for index, child in enumerate(item))
        elif isinstance(item, str):
            if "\x00" in item:
                return _path(parts), "nul", _NUL_MESSAGE
        elif isinstance(item, bool) or item is None:
            continue
        elif isinstance(item, int):
            if not INT64_MIN <= item <= INT64_MAX:
                return _path(parts), "int64", f"{item} is outside the 64-bit integer range [{INT64_MIN}, {INT64_MAX}]"
        elif isinstance(item, float) and not math.isfinite(item):
            return _path(parts), "finite", f"{item} is not a finite number"
    return None


_NUL_MESSAGE = "contains the NUL character (\\u0000), which text fields cannot hold: remove it"


# ------------------------------------------------------------------------------------- string formats


def datetime_problem(text: str) -> str | None:
    """Why `text` is not a date-time the platform can store (RFC 3339 with an offset, within years 1-9999 UTC)."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return "is not an RFC 3339 date-time (e.g. 2026-07-28T12:00:00Z)"
    if moment.tzinfo is None or moment.utcoffset() is None:
        return "has no time zone offset: add Z or ±HH:MM (e.g. 2026-07-28T12:00:00Z)"
    try:
        moment.astimezone(UTC)
    except OverflowError:
        return "is outside the years 0001-9999 once converted to UTC"
    return None


def date_problem(text: str) -> str | None:
    try:
        date.fromisoformat(text)
    except ValueError:
        return "is not a calendar date YYYY-MM-DD (e.g. 2026-07-28)"
    return None


def uuid_problem(text: str) -> str | None:
    try:
        uuid.UUID(text)
    except ValueError:
        return "is not a UUID (e.g. 0f8fad5b-d9cb-469f-a165-70867728950e)"
    return None


FORMAT_PROBLEMS = {"date-time": datetime_problem, "date": date_problem, "uuid": uuid_problem}
