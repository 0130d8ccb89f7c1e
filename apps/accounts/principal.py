"""Who is calling: the authenticated identity every tool call carries (gateway, workers, audit).

A plain frozen value, cheap to cache and to serialise into a job, so workers see the same caller the gateway saw.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from fnmatch import fnmatchcase
from typing import Any, Literal

Kind = Literal["user", "service", "oauth", "test"]
IdentitySource = Literal["api_token", "oauth", "tailnet", "session", "conformance", "internal"]


@dataclass(frozen=True, kw_only=True)
class Principal:
    id: str  # stable and unique: "user:42", "service:7", "oauth:<iss>#<sub>", "test:conformance"
    kind: Kind
    name: str
    identity_source: IdentitySource
    roles: frozenset[str] = field(default_factory=frozenset)
    # Tool grants from the roles: exact names ("task.create") or patterns ("task.*", "*").
    grants: frozenset[str] = field(default_factory=frozenset)
    user_id: int | None = None
    scopes: frozenset[str] = field(default_factory=frozenset)
    credential_id: str | None = None  # the API token's public prefix or the JWT's jti, for the audit trail

    def can_call(self, permission: str) -> bool:
        return any(fnmatchcase(permission, grant) for grant in self.grants)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("roles", "grants", "scopes"):
            data[key] = sorted(data[key])
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Principal:
        values = dict(data)
        for key in ("roles", "grants", "scopes"):
            values[key] = frozenset(values.get(key) or ())
        return cls(**values)
