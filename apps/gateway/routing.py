"""ASGI routes this app serves ahead of Django (collected by mcpplat/routing.py)."""

from apps.gateway.transport import app

asgi_routes = {"/mcp": app}
