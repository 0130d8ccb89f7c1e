"""Collects the ASGI routes each app contributes.

An app exposes `asgi_routes: dict[str, ASGIApp]` (exact HTTP paths served ahead of Django) and
`websocket_urlpatterns` in its `routing.py`; this module gathers them so no app edits another's wiring.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from importlib import import_module
from typing import Any

from django.apps import apps

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[..., Awaitable[Any]], Callable[..., Awaitable[Any]]], Awaitable[None]]


def _app_routing_modules() -> list[Any]:
    modules = []
    for config in apps.get_app_configs():
        if not config.name.startswith("apps."):
            continue
        try:
            modules.append(import_module(f"{config.name}.routing"))
        except ModuleNotFoundError as exc:
            if exc.name != f"{config.name}.routing":
                raise
    return modules


def _collect() -> tuple[dict[str, ASGIApp], list[Any]]:
    exact: dict[str, ASGIApp] = {}
    websockets: list[Any] = []
    for module in _app_routing_modules():
        exact.update(getattr(module, "asgi_routes", {}))
        websockets.extend(getattr(module, "websocket_urlpatterns", []))
    return exact, websockets


_exact_routes, websocket_urlpatterns = _collect()


def http_router(fallback: ASGIApp) -> ASGIApp:
    """Dispatch exact paths to their app; the rest to Django. A dict lookup, nothing more, on the hot path."""
    routes = dict(_exact_routes)

    async def route(scope: Scope, receive: Callable[..., Awaitable[Any]], send: Callable[..., Awaitable[Any]]) -> None:
        app = routes.get(scope["path"], fallback)
        await app(scope, receive, send)

    return route
