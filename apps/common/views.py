from __future__ import annotations

import asyncio

from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache

from apps.common.capabilities import capabilities
from apps.common.readiness import readiness


@never_cache
async def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness: the process answers. Touches no dependency, so a database outage never restarts pods."""
    return JsonResponse({"status": "ok"})


@never_cache
async def readyz(request: HttpRequest) -> JsonResponse:
    """Readiness: the services this process needs (a failing one makes it 503), and the state of each capability
    (reported, never failing readiness: a capability's tools name their own fix when used)."""
    results, caps = await asyncio.gather(readiness(), capabilities())
    failing = [r.name for r in results if not r.ok]
    body = {
        "status": "unavailable" if failing else "ok",
        "failing": failing,
        "checks": {r.name: r.as_dict() for r in results},
        "capabilities": caps,
    }
    return JsonResponse(body, status=503 if failing else 200)
