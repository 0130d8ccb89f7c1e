"""OAuth 2.0 Protected Resource Metadata (RFC 9728) for the MCP endpoint."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET


def protected_resource_metadata() -> dict[str, Any]:
    document: dict[str, Any] = {
        "resource": settings.MCP_RESOURCE_URL,
        "resource_name": "mcpplat",
        "bearer_methods_supported": ["header"],
        # Clients without OAuth use an API token (`mcpp_…`) from the admin or `manage.py create_api_token`.
        "authorization_servers": [settings.OAUTH_ISSUER] if settings.OAUTH_ISSUER else [],
    }
    if settings.OAUTH_REQUIRED_SCOPES:
        document["scopes_supported"] = list(settings.OAUTH_REQUIRED_SCOPES)
    return document


@require_GET
async def oauth_protected_resource(request: HttpRequest) -> JsonResponse:
    response = JsonResponse(protected_resource_metadata())
    response["Access-Control-Allow-Origin"] = "*"  # public metadata; browser-based MCP clients fetch it
    response["Cache-Control"] = "public, max-age=300"
    return response
