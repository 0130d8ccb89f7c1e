"""What each capability needs beyond the services, as `/readyz` reports it: `{"ok": bool, ...details, "fix": ...}`.

A capability that is unavailable does not make the gateway unready (tasks and runs still work, and the
capability's tools answer with an error naming the fix); it is reported so an operator sees it at a glance.
Each check is cheap (a Docker ping and image lookup over the local socket, a file check, an in-memory flag, a model
load started in the background and waited for briefly) and
bounded by the readiness timeout.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
from pathlib import Path
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings

CHECK_TIMEOUT_S = 2.0


def sandbox() -> dict[str, Any]:
    from apps.sandbox import runtime

    out: dict[str, Any] = {"image": settings.SANDBOX_DEFAULT_IMAGE, "runtime": settings.SANDBOX_RUNTIME}
    try:
        runtime.ping()
        out["engine"] = "reachable"
        out["image_present"] = runtime.image_present(settings.SANDBOX_DEFAULT_IMAGE)
        runtimes = sorted(runtime.client().info().get("Runtimes", {}))
    except runtime.EngineUnavailable as exc:
        return {
            **out,
            "ok": False,
            "engine": "unreachable",
            "error": str(exc)[:300],
            "fix": "scripts/provision.d/30-sandbox.sh as root (installs and starts the Docker Engine)",
        }
    out["runtimes"] = [name for name in runtimes if name in {"runc", "runsc"}]
    if not out["image_present"]:
        return {**out, "ok": False, "fix": "make sandbox-image (builds it offline; needs root and debootstrap)"}
    if settings.SANDBOX_RUNTIME not in out["runtimes"]:
        return {
            **out,
            "ok": False,
            "fix": f"register {settings.SANDBOX_RUNTIME} with the engine: scripts/provision.d/30-sandbox.sh",
        }
    return {**out, "ok": True}


def browser() -> dict[str, Any]:
    path = Path(settings.BROWSER_EXECUTABLE)
    out: dict[str, Any] = {"executable": str(path)}
    try:
        import playwright  # noqa: F401
    except ImportError:
        return {**out, "ok": False, "fix": "install the runtime requirements: scripts/venv.sh run"}
    if not (path.is_file() and os.access(path, os.X_OK)):
        return {**out, "ok": False, "fix": "apt-get install chromium (or set BROWSER_EXECUTABLE)"}
    return {**out, "ok": True}


_warming: dict[str, concurrent.futures.Future[None]] = {}  # model id → the background load readiness started
_warming_lock = threading.Lock()
EMBEDDING_WAIT_S = 1.5  # how long a check waits for a load it started before answering "loading"


def embeddings() -> dict[str, Any]:
    from apps.memory import embeddings as memory_embeddings

    embedder = memory_embeddings.backend()
    out: dict[str, Any] = {"backend": embedder.name, "model": memory_embeddings.model_id(embedder)}
    if isinstance(embedder, memory_embeddings.DisabledBackend):
        return {**out, "ok": False, "error": embedder.reason, "fix": "set EMBEDDING_BACKEND=local (the default)"}
    if isinstance(embedder, memory_embeddings.LocalBackend):
        out["loaded"] = embedder.loaded()
        if not embedder.loaded():
            # Normally done at process start; the first load of a deployment also builds the graph (≈ 2 s on a
            # loaded machine), so it runs in the background and readiness answers "loading" until it is done.
            with _warming_lock:
                future = _warming.get(out["model"])
                if future is None or (future.done() and future.exception() is not None):
                    future = concurrent.futures.Future()
                    _warming[out["model"]] = future
                    threading.Thread(target=_warm, args=(embedder, future), daemon=True).start()
            try:
                future.result(timeout=EMBEDDING_WAIT_S)
            except concurrent.futures.TimeoutError:
                return {**out, "ok": False, "state": "loading", "fix": "wait: the model is loading (seconds)"}
            except memory_embeddings.EmbeddingError as exc:
                return {**out, "ok": False, "error": str(exc)[:300], "fix": "scripts/venv.sh run"}
            out["loaded"] = True
    return {**out, "ok": True}


def _warm(embedder: Any, future: concurrent.futures.Future[None]) -> None:
    try:
        embedder.warm()
    except BaseException as exc:  # noqa: BLE001 - handed to the check that waits on it
        future.set_exception(exc)
    else:
        future.set_result(None)


CHECKS = {"sandbox": sandbox, "browser": browser, "embeddings": embeddings}


async def _one(check: Any) -> dict[str, Any]:
    try:
        return await asyncio.wait_for(sync_to_async(check, thread_sensitive=False)(), CHECK_TIMEOUT_S)
    except TimeoutError:
        return {"ok": False, "error": f"the check took longer than {CHECK_TIMEOUT_S:.0f} s"}
    except Exception as exc:  # noqa: BLE001 - a failing check reports itself; readiness never raises
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}


async def capabilities() -> dict[str, dict[str, Any]]:
    results = await asyncio.gather(*(_one(check) for check in CHECKS.values()))
    return dict(zip(CHECKS, results, strict=True))
