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
    # From the roles (most generous role wins): requests/minute for this principal, None = unlimited, and
    # per-tool overrides as (tool name or pattern, requests/minute) pairs.
    rate_limit_per_minute: int | None = None
    tool_rate_limits: tuple[tuple[str, int], ...] = ()

    def can_call(self, permission: str) -> bool:
        return any(fnmatchcase(permission, grant) for grant in self.grants)

    def rate_limit_for(self, tool: str) -> int | None:
        """Requests/minute this principal may make to `tool`: an exact override, else the most specific
        matching pattern, else the principal's general limit (None: unlimited)."""
        exact = [n for pattern, n in self.tool_rate_limits if pattern == tool]
        if exact:
            return max(exact)
        matching = [(len(p), n) for p, n in self.tool_rate_limits if fnmatchcase(tool, p)]
        if matching:
            longest = max(length for length, _ in matching)
            return max(n for length, n in matching if length == longest)
        return self.rate_limit_per_minute

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("roles", "grants", "scopes"):
            data[key] = sorted(data[key])
        data["tool_rate_limits"] = [list(pair) for pair in self.tool_rate_limits]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Principal:
        values = dict(data)
        for key in ("roles", "grants", "scopes"):
            values[key] = frozenset(values.get(key) or ())
        values["tool_rate_limits"] = tuple((str(t), int(n)) for t, n in values.get("tool_rate_limits") or ())
        return cls(**values)
