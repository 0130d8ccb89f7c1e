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


def audit_problem(arguments: Any) -> str | None:
    """Why a call with these arguments could not be audited, checked before it runs; None when it can be.

    The writer's own `prepare` (serialization, redaction, digest) runs on a provisional record, so a failure that
    would otherwise surface after the tool's effect surfaces before it.
    """
    module = audit_module()
    prepare = getattr(module, "prepare", None)
    if module is None or prepare is None:
        return None
    try:
        prepare(module.AuditRecord(method="tools/call", outcome="ok", arguments=arguments))
    except (ValueError, TypeError, RecursionError) as exc:  # orjson.JSONEncodeError is a TypeError
        return f"{type(exc).__name__}: {exc}"
    return None


class Runs:
    """The job runtime's modules the gateway calls (contract in notes/TEAM.md)."""

    def __init__(self) -> None:
        self.services = import_module("apps.runs.services")
        self.streams = import_module("apps.runs.streams")
        self.selectors = import_module("apps.runs.selectors")
        self.mcp_tasks = import_module("apps.runs.mcp_tasks")
        self.events = import_module("apps.runs.events")


@functools.cache
def runs() -> Runs | None:
    """apps.runs when the job runtime is installed, else None (queued tools then answer queue_unavailable)."""
    from django.apps import apps

    if not apps.is_installed("apps.runs"):
        return None
    return Runs()
