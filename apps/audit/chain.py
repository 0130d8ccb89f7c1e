"""The chain arithmetic shared by the writers, the verifier and the digests: canonical rows, hashes, HMAC keys."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import orjson
from django.conf import settings

GENESIS_HASH = "0" * 64
# pg_advisory_xact_lock key held while appending: one chain across every gateway and worker process.
CHAIN_LOCK_KEY = 0x6D6370_61756474  # "mcp" "audt"

# Every column but `hash`, in table order: the INSERT column list and the hashed payload.
COLUMNS = (
    "sequence",
    "created_at",
    "principal_id",
    "identity_source",
    "credential_id",
    "method",
    "tool",
    "arguments",
    "arguments_digest",
    "outcome",
    "error_code",
    "latency_ms",
    "request_id",
    "trace_id",
    "session_id",
    "client_host",
    "protocol_version",
    "run_id",
    "job_id",
    "detail",
    "prev_hash",
)


def canonical_json(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS, default=str).decode()


def _timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def row_hash(row: dict[str, Any]) -> str:
    """sha256 over the canonical JSON of the row's columns (prev_hash included, which links the chain)."""
    payload = {name: row[name] for name in COLUMNS}
    payload["created_at"] = _timestamp(row["created_at"])
    return hashlib.sha256(canonical_json(payload).encode()).hexdigest()


def signing_key() -> bytes:
    """AUDIT_SIGNING_KEY, or a key derived from SECRET_KEY (so development needs no extra secret)."""
    return _signing_key(settings.AUDIT_SIGNING_KEY, settings.SECRET_KEY)


@lru_cache(maxsize=4)
def _signing_key(configured: str, secret_key: str) -> bytes:
    if configured:
        return configured.encode()
    return hmac.new(secret_key.encode(), b"mcpplat.audit.v1", hashlib.sha256).digest()


def key_id(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()[:12]


def keyed_digest(data: str, key: bytes | None = None) -> str:
    return hmac.digest(key or signing_key(), data.encode(), "sha256").hex()


def digest_message(*, sequence: int, head_hash: str, event_count: int, created_at: datetime) -> str:
    return f"mcpplat-audit-digest:v1:{sequence}:{head_hash}:{event_count}:{_timestamp(created_at)}"
