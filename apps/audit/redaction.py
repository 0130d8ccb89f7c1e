"""What of a tool call's arguments the audit trail keeps: secret-looking fields and values redacted, size capped."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

REDACTED = "[REDACTED]"
MAX_STRING = 1000
MAX_ITEMS = 200
MAX_DEPTH = 20

# A key is secret-looking when one of its words is one of these (`apiKey`, `x-api-key`, `db_password` …) …
_SECRET_WORDS = frozenset(
    {
        "password",
        "passwd",
        "pwd",
        "passphrase",
        "secret",
        "token",
        "authorization",
        "auth",
        "apikey",
        "cookie",
        "credential",
        "credentials",
        "privatekey",
        "otp",
        "totp",
        "pin",
    }
)
# … or when the words run together contain one of these (`clientsecret`, `accesstoken`, `private_key`).
_SECRET_JOINED = (
    "apikey",
    "privatekey",
    "accesskey",
    "secretkey",
    "clientsecret",
    "accesstoken",
    "refreshtoken",
    "idtoken",
    "sessiontoken",
    "password",
    "secret",
    "bearer",
)
_WORDS = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")
# Values that are credentials whatever their key: our API tokens, bearer headers, JWTs, PEM private keys.
_SECRET_VALUES = re.compile(
    r"mcpp_[a-z0-9]{12}_[A-Za-z0-9_-]+"
    r"|(?i:bearer)\s+[A-Za-z0-9._~+/=-]{8,}"
    r"|eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"
    r"|-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(-----END [A-Z ]*PRIVATE KEY-----|$)"
)


@lru_cache(maxsize=4096)  # argument names repeat: classify each once
def is_secret_key(key: str) -> bool:
    words = [w.lower() for w in _WORDS.findall(key)]
    if any(w in _SECRET_WORDS for w in words):
        return True
    joined = "".join(words)
    return any(fragment in joined for fragment in _SECRET_JOINED)


def redact(value: Any, *, depth: int = 0) -> Any:
    """A JSON-safe copy of `value` with secrets replaced by "[REDACTED]" and long strings/lists cut."""
    if depth > MAX_DEPTH:
        return "[too deep]"
    if isinstance(value, str):
        text = _SECRET_VALUES.sub(REDACTED, value) if len(value) >= 8 else value
        if len(text) > MAX_STRING:
            text = f"{text[:MAX_STRING]}…[+{len(text) - MAX_STRING} chars]"
        return text
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for index, (key, item) in enumerate(value.items()):
            if index >= MAX_ITEMS:
                out["[truncated]"] = f"{len(value) - MAX_ITEMS} more keys"
                break
            name = str(key)
            out[name] = REDACTED if is_secret_key(name) and item not in (None, "") else redact(item, depth=depth + 1)
        return out
    if isinstance(value, list | tuple | set | frozenset):
        items = [redact(item, depth=depth + 1) for item in list(value)[:MAX_ITEMS]]
        if len(value) > MAX_ITEMS:
            items.append(f"[truncated: {len(value) - MAX_ITEMS} more items]")
        return items
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if -(2**63) <= value < 2**63 else str(value)  # canonical JSON stays 64-bit
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    return redact(str(value), depth=depth)
