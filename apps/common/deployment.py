"""The deployment's identity (apps.common.models.Deployment), read once per process."""

from __future__ import annotations

import threading

from django.conf import settings
from django.db import IntegrityError

from apps.common.models import Deployment

_lock = threading.Lock()
_cached: dict[str, str] = {}


def deployment_id() -> str:
    """Generated on first use and stored in the database: the same for every process of this deployment."""
    if "id" not in _cached:
        with _lock:
            if "id" not in _cached:
                try:
                    row, _ = Deployment.objects.get_or_create(pk=1)
                except IntegrityError:  # two processes created it at once: read the winner's
                    row = Deployment.objects.get(pk=1)
                _cached["id"] = row.deployment_id
    return _cached["id"]


def sandbox_scope() -> str:
    """SANDBOX_SCOPE when set, else this deployment's id (never a value two deployments share by default)."""
    return settings.SANDBOX_SCOPE or f"d-{deployment_id()}"


def forget() -> None:
    """Tests: drop the cached id (a new test database holds another)."""
    _cached.clear()
