"""Helpers the gateway benchmarks share: a service-account token for a role, and a 2026-07-28 `tools/call`.

Import after `django.setup()` (the token helper uses the ORM).
"""

from __future__ import annotations

from typing import Any

MODERN = "2026-07-28"


def pct(values: list[float], q: float) -> float:
    """The q-quantile (0 ≤ q ≤ 1) by nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def service_token(role_name: str, pattern: str) -> str:
    """A fresh API token of a service account whose only role grants `pattern`, with the rate limit lifted."""
    from apps.accounts import services
    from apps.accounts.models import Role, RoleGrant

    services.role_catalog_seed()
    role, _ = Role.objects.get_or_create(
        name=role_name, defaults={"description": "benchmarks", "requests_per_minute": 1_000_000}
    )
    RoleGrant.objects.get_or_create(role=role, pattern=pattern)
    account = services.service_account_ensure(name=role_name, roles=[role_name])
    return services.api_token_create(name=f"{role_name} token", service_account=account).value


def tools_call(tool: str, arguments: dict[str, Any], request_id: int) -> tuple[dict[str, Any], dict[str, str]]:
    """Body and headers of a stateless-era `tools/call`."""
    body = {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "tools/call",
        "params": {
            "name": tool,
            "arguments": arguments,
            "_meta": {
                "io.modelcontextprotocol/protocolVersion": MODERN,
                "io.modelcontextprotocol/clientCapabilities": {},
            },
        },
    }
    return body, {"mcp-protocol-version": MODERN, "mcp-method": "tools/call", "mcp-name": tool}
