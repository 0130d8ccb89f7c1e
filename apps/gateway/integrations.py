"""The gateway's seams to other apps, resolved once: identity, audit, and the job runtime.

Identity (`authenticate`, `AuthError`) and audit (`audit_record`, `AuditRecord`) follow the contracts in
notes/TEAM.md; the module paths come from settings (`MCP_AUTHENTICATOR`, `MCP_AUDIT_WRITER`) so the conformance
profile can admit its loopback client as a fixed test principal.
"""

from __future__ import annotations

import functools
import logging
from importlib import import_module
from types import ModuleType
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

logger = logging.getLogger("mcpplat.gateway")


@functools.cache
def identity() -> ModuleType:
    module = import_module(settings.MCP_AUTHENTICATOR)
    for name in ("authenticate", "AuthError"):
        if not hasattr(module, name):
            raise ImproperlyConfigured(f"MCP_AUTHENTICATOR module {module.__name__} has no {name}")
    return module


@functools.cache
def audit_module() -> ModuleType | None:
    try:
        return import_module(settings.MCP_AUDIT_WRITER)
    except ModuleNotFoundError as exc:
        if exc.name and settings.MCP_AUDIT_WRITER.startswith(exc.name):
            logger.error("audit writer %s is not installed: MCP requests are NOT audited", settings.MCP_AUDIT_WRITER)
            return None
        raise


async def audit(**fields: Any) -> None:
    module = audit_module()
    if module is None:
        return
    await module.audit_record(module.AuditRecord(**fields))


@functools.cache
def runs() -> tuple[ModuleType, ModuleType] | None:
    """apps.runs (services, streams) when the job runtime is installed, else None."""
    try:
        return import_module("apps.runs.services"), import_module("apps.runs.streams")
    except ModuleNotFoundError as exc:
        if exc.name in {"apps.runs", "apps.runs.services", "apps.runs.streams"}:
            return None
        raise
