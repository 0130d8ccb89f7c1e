"""Reads: which images are allowed, what a caller's quota is, fetch-and-authorize a sandbox."""

from __future__ import annotations

import json
import uuid
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from apps.sandbox.models import LIVE_STATES, ImageAllowlist, Sandbox, SandboxState, Snapshot

QUOTA_KEYS = ("memory_mb", "cpus", "pids", "disk_mb", "ttl_s", "idle_ttl_s", "exec_timeout_s", "max_sandboxes")
# Ceilings per role when SANDBOX_QUOTAS is unset. A principal gets, per key, the largest of its roles' ceilings.
DEFAULT_QUOTAS: dict[str, dict[str, float]] = {
    "admin": {
        "memory_mb": 4096,
        "cpus": 4,
        "pids": 1024,
        "disk_mb": 4096,
        "ttl_s": 86400,
        "idle_ttl_s": 86400,
        "exec_timeout_s": 3600,
        "max_sandboxes": 50,
    },
    "operator": {
        "memory_mb": 2048,
        "cpus": 2,
        "pids": 512,
        "disk_mb": 2048,
        "ttl_s": 14400,
        "idle_ttl_s": 3600,
        "exec_timeout_s": 900,
        "max_sandboxes": 20,
    },
    "agent": {
        "memory_mb": 1024,
        "cpus": 2,
        "pids": 256,
        "disk_mb": 1024,
        "ttl_s": 3600,
        "idle_ttl_s": 1800,
        "exec_timeout_s": 600,
        "max_sandboxes": 10,
    },
    "default": {
        "memory_mb": 512,
        "cpus": 1,
        "pids": 128,
        "disk_mb": 256,
        "ttl_s": 1800,
        "idle_ttl_s": 900,
        "exec_timeout_s": 300,
        "max_sandboxes": 3,
    },
}


def quotas() -> dict[str, dict[str, float]]:
    raw = settings.SANDBOX_QUOTAS_JSON
    if not raw:
        return DEFAULT_QUOTAS
    try:
        parsed = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ImproperlyConfigured(f"SANDBOX_QUOTAS is not valid JSON: {exc}") from None
    if not isinstance(parsed, dict) or "default" not in parsed:
        raise ImproperlyConfigured('SANDBOX_QUOTAS must be a JSON object with at least a "default" role')
    for role, ceilings in parsed.items():
        if not isinstance(ceilings, dict) or set(ceilings) - set(QUOTA_KEYS):
            raise ImproperlyConfigured(f"SANDBOX_QUOTAS[{role!r}]: an object of {', '.join(QUOTA_KEYS)}")
    return {role: {**DEFAULT_QUOTAS["default"], **ceilings} for role, ceilings in parsed.items()}


def quota_for(roles: frozenset[str] | set[str]) -> dict[str, float]:
    table = quotas()
    matching = [table[role] for role in roles if role in table] or [table["default"]]
    return {key: max(entry[key] for entry in matching) for key in QUOTA_KEYS}


def allowed_images() -> list[str]:
    configured = {settings.SANDBOX_DEFAULT_IMAGE, *settings.SANDBOX_IMAGE_ALLOWLIST}
    configured.update(ImageAllowlist.objects.filter(enabled=True).values_list("image", flat=True))
    return sorted(configured)


def image_allowed(image: str) -> bool:
    if image == settings.SANDBOX_DEFAULT_IMAGE or image in settings.SANDBOX_IMAGE_ALLOWLIST:
        return True
    return ImageAllowlist.objects.filter(image=image, enabled=True).exists()


def _uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


def sandbox_find(*, sandbox_id: str, owner_id: str) -> Sandbox | None:
    """The caller's sandbox in any state (pooled rows belong to no one), or None."""
    pk = _uuid(sandbox_id)
    if pk is None:
        return None
    return Sandbox.objects.filter(pk=pk, owner_id=owner_id).exclude(state=SandboxState.POOLED).first()


def snapshot_find(*, snapshot_id: str, owner_id: str) -> Snapshot | None:
    pk = _uuid(snapshot_id)
    if pk is None:
        return None
    return Snapshot.objects.filter(pk=pk, owner_id=owner_id).first()


def live_count(owner_id: str) -> int:
    return Sandbox.objects.filter(owner_id=owner_id, state__in=LIVE_STATES).count()


def sandbox_summary(sandbox: Sandbox) -> dict[str, Any]:
    return {
        "sandbox_id": str(sandbox.id),
        "state": sandbox.state,
        "image": sandbox.image,
        "snapshot_id": str(sandbox.snapshot_id) if sandbox.snapshot_id else None,
        "runtime": sandbox.runtime,
        "limits": sandbox.limits,
        "network": "none",
        "workdir": "/workspace",
        "expires_at": sandbox.expires_at.isoformat(),
        "idle_expires_at": sandbox.idle_expires_at.isoformat(),
    }
