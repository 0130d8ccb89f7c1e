"""Sandbox writes: create (from the warm pool when it fits), exec, snapshot, destroy, the pool and the TTL reaper.

Ordering rule that keeps the engine and the database in step: a row is committed (state `starting`) BEFORE its
container is created, so a labelled container without a row is always an orphan; a row is marked `destroyed`
only AFTER its container is gone. The reaper relies on both.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import logging
import posixpath
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.files import File
from django.core.files.storage import storages
from django.db import close_old_connections, connection, transaction
from django.db.models import F
from django.utils import timezone

from apps.audit.writer import AuditRecord, audit_record_sync
from apps.gateway.registry import ToolError
from apps.sandbox import runtime, selectors
from apps.sandbox.models import LIVE_STATES, Sandbox, SandboxState, Snapshot

log = logging.getLogger(__name__)

LIMIT_KEYS = ("memory_mb", "cpus", "pids", "disk_mb")
_LIMIT_FLOORS = {"memory_mb": 32, "cpus": 0.1, "pids": 16, "disk_mb": 1}
POOL_MAX_AGE_S = 3600  # a warm container is recycled after an hour unclaimed
RUNSC_SENTRY_HEADROOM_MB = 32  # gVisor's sentry + gofer share the sandbox's memory cgroup (measured: docs/sandbox.md)
STALE_START_S = 120  # a row still `starting` after this lost its worker
POOL_REFILL_DELAY_S = 0.3
MAX_FILES_BYTES = 20 * 1024 * 1024


class SandboxError(ToolError):
    """An expected sandbox failure with a platform error code (docs/sandbox.md lists them)."""


@dataclass(frozen=True, kw_only=True)
class Caller:
    """Who acts: the principal's id and roles (a Principal fits; the reaper and admin act as `system`)."""

    id: str
    roles: frozenset[str] = frozenset()


def _caller(principal: Any) -> Caller:
    return Caller(id=str(principal.id), roles=frozenset(getattr(principal, "roles", ()) or ()))


@contextlib.contextmanager
def _engine() -> Any:
    """Engine failures as tool errors that name the problem and what to do."""
    try:
        yield
    except runtime.EngineUnavailable as exc:
        raise SandboxError("sandbox_engine_unavailable", str(exc), retryable=True) from exc
    except runtime.RuntimeFailure as exc:
        raise SandboxError("sandbox_runtime_error", f"the Docker Engine refused: {exc}") from exc


# -------------------------------------------------------------------------------------------- limits


def limits_resolve(*, requested: Mapping[str, Any] | None, quota: Mapping[str, float]) -> dict[str, Any]:
    """Defaults overlaid with the request, each within [floor, role ceiling]; errors name the field."""
    requested = dict(requested or {})
    unknown = sorted(set(requested) - set(LIMIT_KEYS))
    if unknown:
        raise SandboxError(
            "invalid_arguments",
            f"limits.{unknown[0]} is not a limit: use {', '.join(LIMIT_KEYS)}",
            data={"field": f"limits.{unknown[0]}"},
        )
    resolved: dict[str, Any] = dict(settings.SANDBOX_DEFAULT_LIMITS)
    for key in LIMIT_KEYS:
        value = requested.get(key, resolved[key])
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise SandboxError("invalid_arguments", f"limits.{key} must be a number", data={"field": f"limits.{key}"})
        if value < _LIMIT_FLOORS[key]:
            raise SandboxError(
                "invalid_arguments",
                f"limits.{key}={value} is below the minimum {_LIMIT_FLOORS[key]}",
                data={"field": f"limits.{key}", "minimum": _LIMIT_FLOORS[key]},
            )
        if value > quota[key]:
            raise SandboxError(
                "quota_exceeded",
                f"limits.{key}={value} is over your role's quota of {quota[key]:g}: ask for at most that, or ask an "
                "admin for a role with a larger sandbox quota",
                data={"field": f"limits.{key}", "requested": value, "quota": quota[key]},
            )
        resolved[key] = float(value) if key == "cpus" else int(value)
    return resolved


def _seconds(name: str, value: Any, *, default: int, ceiling: float, floor: int = 1) -> int:
    if value is None:
        value = default
    if isinstance(value, bool) or not isinstance(value, int | float) or value < floor:
        raise SandboxError("invalid_arguments", f"{name} must be a number ≥ {floor}", data={"field": name})
    if value > ceiling:
        raise SandboxError(
            "quota_exceeded",
            f"{name}={value} is over your role's quota of {ceiling:g} s",
            data={"field": name, "requested": value, "quota": ceiling},
        )
    return int(value)


def _files_decode(files: list[Mapping[str, Any]] | None) -> dict[str, bytes]:
    decoded: dict[str, bytes] = {}
    total = 0
    for index, entry in enumerate(files or ()):
        field = f"files[{index}]"
        path = str(entry.get("path", ""))
        normal = posixpath.normpath(path.removeprefix(runtime.WORKDIR + "/"))
        if not path or normal.startswith(("/", "..")) or normal == ".":
            raise SandboxError(
                "invalid_arguments",
                f"{field}.path={path!r} must be a relative path inside the workdir {runtime.WORKDIR}",
                data={"field": f"{field}.path"},
            )
        content = entry.get("content", "")
        if entry.get("encoding", "utf-8") == "base64":
            try:
                data = base64.b64decode(content, validate=True)
            except (binascii.Error, ValueError):
                raise SandboxError(
                    "invalid_arguments", f"{field}.content is not valid base64", data={"field": f"{field}.content"}
                ) from None
        else:
            data = str(content).encode()
        total += len(data)
        if total > MAX_FILES_BYTES:
            raise SandboxError(
                "invalid_arguments",
                f"files total more than {MAX_FILES_BYTES} bytes: upload fewer or smaller files",
                data={"field": "files"},
            )
        decoded[normal] = data
    return decoded


def _env_check(env: Mapping[str, Any] | None, field: str = "env") -> dict[str, str]:
    checked: dict[str, str] = {}
    for key, value in (env or {}).items():
        if not key or not (key[0].isalpha() or key[0] == "_") or not all(c.isalnum() or c == "_" for c in key):
            raise SandboxError(
                "invalid_arguments", f"{field}.{key} is not a valid variable name", data={"field": field}
            )
        if key.startswith("MCPPLAT_"):
            raise SandboxError(
                "invalid_arguments", f"{field}.{key}: MCPPLAT_* names are reserved", data={"field": field}
            )
        checked[key] = str(value)
    return checked


# -------------------------------------------------------------------------------------------- create


def sandbox_create(
    *,
    principal: Any,
    image: str | None = None,
    snapshot_id: str | None = None,
    ttl_s: int | None = None,
    idle_ttl_s: int | None = None,
    env: Mapping[str, Any] | None = None,
    files: list[Mapping[str, Any]] | None = None,
    limits: Mapping[str, Any] | None = None,
) -> Sandbox:
    caller = _caller(principal)
    quota = selectors.quota_for(caller.roles)
    resolved = limits_resolve(requested=limits, quota=quota)
    ttl = _seconds("ttl_s", ttl_s, default=settings.SANDBOX_DEFAULT_TTL_S, ceiling=quota["ttl_s"])
    idle = _seconds("idle_ttl_s", idle_ttl_s, default=settings.SANDBOX_DEFAULT_IDLE_TTL_S, ceiling=quota["idle_ttl_s"])
    checked_env = _env_check(env)
    decoded = _files_decode(files)
    if selectors.live_count(caller.id) >= quota["max_sandboxes"]:
        raise SandboxError(
            "quota_exceeded",
            f"you already have {int(quota['max_sandboxes'])} live sandboxes, your role's maximum: destroy one first",
            data={"field": "max_sandboxes", "quota": quota["max_sandboxes"]},
        )

    snapshot: Snapshot | None = None
    if snapshot_id:
        if image:
            raise SandboxError(
                "invalid_arguments", "give image or snapshot_id, not both", data={"field": "snapshot_id"}
            )
        snapshot = selectors.snapshot_find(snapshot_id=snapshot_id, owner_id=caller.id)
        if snapshot is None:
            raise SandboxError(
                "not_found", f"snapshot {snapshot_id} does not exist or is not yours", data={"field": "snapshot_id"}
            )
        with _engine():
            _snapshot_image_ensure(snapshot)
        image = snapshot.image_ref
    else:
        image = image or settings.SANDBOX_DEFAULT_IMAGE
        if not selectors.image_allowed(image):
            raise SandboxError(
                "image_not_allowed",
                f"image {image!r} is not on the sandbox image allowlist ({', '.join(selectors.allowed_images())}): "
                "use one of those, or ask an admin to add it (admin → Sandboxes → Allowed images)",
                data={"field": "image", "allowed": selectors.allowed_images()},
            )

    now = timezone.now()
    sandbox = None
    if (
        snapshot is None
        and image == settings.SANDBOX_DEFAULT_IMAGE
        and resolved == dict(settings.SANDBOX_DEFAULT_LIMITS)
    ):
        sandbox = _pool_claim(owner_id=caller.id, ttl=ttl, idle=idle, env=checked_env, now=now)
    if sandbox is None:
        sandbox = _sandbox_start(
            owner_id=caller.id, image=image, snapshot=snapshot, limits=resolved, ttl=ttl, idle=idle, env=checked_env
        )
    else:
        pool_refill_soon()
    try:
        if snapshot is not None:
            _workdir_restore(sandbox, snapshot)
        if decoded:
            with _engine():
                result = runtime.files_put(sandbox.container_id, runtime.tar_of_files(decoded))
            if result.exit_code != 0:
                raise SandboxError(
                    "sandbox_files_failed",
                    "writing files into the workdir failed: "
                    f"{result.stderr.decode(errors='replace').strip()[:500]} (is limits.disk_mb large enough?)",
                    data={"field": "files"},
                )
    except BaseException:
        sandbox_destroy_row(sandbox, reason="create_failed")
        raise
    return sandbox


def _sandbox_start(
    *,
    owner_id: str,
    image: str,
    snapshot: Snapshot | None,
    limits: dict[str, Any],
    ttl: int,
    idle: int,
    env: dict[str, str],
    state_after: SandboxState = SandboxState.RUNNING,
) -> Sandbox:
    now = timezone.now()
    sandbox = Sandbox(
        owner_id=owner_id,
        image=image,
        snapshot=snapshot,
        state=SandboxState.STARTING,
        runtime=settings.SANDBOX_RUNTIME,
        limits=limits,
        env=env,
        ttl_s=ttl,
        idle_ttl_s=idle,
        last_used_at=now,
        assigned_at=now if owner_id else None,
        expires_at=now + timedelta(seconds=ttl),
        idle_expires_at=now + timedelta(seconds=idle),
    )
    sandbox.full_clean()
    sandbox.save()  # committed before the container exists: a labelled container without a row is an orphan
    spec = runtime.ContainerSpec(
        sandbox_id=str(sandbox.id),
        image=image,
        owner=owner_id or "pool",
        expires_epoch=int(sandbox.expires_at.timestamp()),
        memory_mb=limits["memory_mb"],
        cpus=limits["cpus"],
        pids=limits["pids"],
        disk_mb=limits["disk_mb"],
        runtime=sandbox.runtime,
    )
    try:
        with _engine():
            sandbox.container_id = runtime.container_start(spec)
    except BaseException as exc:
        sandbox.state = SandboxState.FAILED
        sandbox.destroyed_at = timezone.now()
        sandbox.destroy_reason = f"start failed: {exc}"[:200]
        sandbox.save(update_fields=["state", "destroyed_at", "destroy_reason"])
        raise
    sandbox.state = state_after
    sandbox.save(update_fields=["container_id", "state"])
    return sandbox


# ---------------------------------------------------------------------------------------------- pool


def _pool_claim(*, owner_id: str, ttl: int, idle: int, env: dict[str, str], now: datetime) -> Sandbox | None:
    if settings.SANDBOX_POOL_SIZE <= 0:
        return None
    with transaction.atomic():
        sandbox = (
            Sandbox.objects.select_for_update(skip_locked=True)
            .filter(
                state=SandboxState.POOLED,
                image=settings.SANDBOX_DEFAULT_IMAGE,
                runtime=settings.SANDBOX_RUNTIME,
                limits=dict(settings.SANDBOX_DEFAULT_LIMITS),
                expires_at__gt=now + timedelta(seconds=30),
            )
            .exclude(container_id="")
            .order_by("created_at")
            .first()
        )
        if sandbox is None:
            return None
        sandbox.owner_id, sandbox.state, sandbox.env = owner_id, SandboxState.RUNNING, env
        sandbox.ttl_s, sandbox.idle_ttl_s = ttl, idle
        sandbox.assigned_at = sandbox.last_used_at = now
        sandbox.expires_at = now + timedelta(seconds=ttl)
        sandbox.idle_expires_at = now + timedelta(seconds=idle)
        sandbox.save(
            update_fields=[
                "owner_id",
                "state",
                "env",
                "ttl_s",
                "idle_ttl_s",
                "assigned_at",
                "last_used_at",
                "expires_at",
                "idle_expires_at",
            ]
        )
    return sandbox


def pool_refill(*, target: int | None = None) -> int:
    """Start warm containers of the default image until `target` (SANDBOX_POOL_SIZE) are pooled; returns how many."""
    target = settings.SANDBOX_POOL_SIZE if target is None else target
    pooled = Sandbox.objects.filter(
        state__in=[SandboxState.POOLED, SandboxState.STARTING],
        owner_id="",
        image=settings.SANDBOX_DEFAULT_IMAGE,
        runtime=settings.SANDBOX_RUNTIME,
    ).count()
    started = 0
    for _ in range(max(0, target - pooled)):
        _sandbox_start(
            owner_id="",
            image=settings.SANDBOX_DEFAULT_IMAGE,
            snapshot=None,
            limits=dict(settings.SANDBOX_DEFAULT_LIMITS),
            ttl=POOL_MAX_AGE_S,
            idle=POOL_MAX_AGE_S,
            env={},
            state_after=SandboxState.POOLED,
        )
        started += 1
    return started


_refill_lock = threading.Lock()


def pool_refill_soon() -> None:
    """Refill in a background thread of this process (one at a time), after the caller's transaction commits."""
    if settings.SANDBOX_POOL_SIZE <= 0:
        return

    def run() -> None:
        if not _refill_lock.acquire(blocking=False):
            return
        try:
            # The caller's first exec usually follows at once: let it have the engine before starting containers.
            time.sleep(POOL_REFILL_DELAY_S)
            close_old_connections()
            pool_refill()
        except Exception:
            log.exception("sandbox pool refill failed")
        finally:
            connection.close()
            _refill_lock.release()

    transaction.on_commit(lambda: threading.Thread(target=run, name="sandbox-pool-refill", daemon=True).start())


# ---------------------------------------------------------------------------------------------- exec


def sandbox_access(*, principal: Any, sandbox_id: str) -> Sandbox:
    """The caller's live sandbox, or an error that says whether it never existed, is gone or expired."""
    caller = _caller(principal)
    sandbox = selectors.sandbox_find(sandbox_id=sandbox_id, owner_id=caller.id)
    if sandbox is None:
        raise SandboxError(
            "not_found",
            f"sandbox {sandbox_id} does not exist or is not yours: create one with sandbox.create",
            data={"field": "sandbox_id"},
        )
    if not sandbox.is_live:
        raise SandboxError(
            "sandbox_destroyed",
            f"sandbox {sandbox_id} was destroyed ({sandbox.destroy_reason or sandbox.state}): create a new one",
            data={"field": "sandbox_id", "reason": sandbox.destroy_reason},
        )
    now = timezone.now()
    if sandbox.expires_at <= now or sandbox.idle_expires_at <= now:
        reason = "ttl" if sandbox.expires_at <= now else "idle_ttl"
        with _engine():
            sandbox_destroy_row(sandbox, reason=reason)
        raise SandboxError(
            "sandbox_destroyed",
            f"sandbox {sandbox_id} expired ({reason}) and was destroyed: create a new one",
            data={"field": "sandbox_id", "reason": reason},
        )
    return sandbox


def _exec_argv(command: str | list[str] | None, code: str | None) -> list[str]:
    if (command is None) == (code is None):
        raise SandboxError("invalid_arguments", "give exactly one of command or code", data={"field": "command"})
    if code is not None:
        return ["python3", "-c", code]
    if isinstance(command, str):
        if not command.strip():
            raise SandboxError("invalid_arguments", "command is empty", data={"field": "command"})
        return ["sh", "-c", command]
    if not command or not all(isinstance(part, str) for part in command):
        raise SandboxError(
            "invalid_arguments", "command must be a string or a non-empty list of strings", data={"field": "command"}
        )
    return list(command)


def _workdir(path: str | None) -> str:
    if not path:
        return runtime.WORKDIR
    joined = posixpath.normpath(posixpath.join(runtime.WORKDIR, path))
    if joined != runtime.WORKDIR and not joined.startswith(runtime.WORKDIR + "/"):
        raise SandboxError(
            "invalid_arguments", f"workdir={path!r} must be inside {runtime.WORKDIR}", data={"field": "workdir"}
        )
    return joined


def sandbox_exec(
    *,
    principal: Any,
    sandbox_id: str,
    command: str | list[str] | None = None,
    code: str | None = None,
    stdin: str | None = None,
    timeout_s: float | None = None,
    workdir: str | None = None,
    env: Mapping[str, Any] | None = None,
    on_output: Callable[[str, bytes], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
    job_id: str | None = None,
    attempt: int = 1,
    lost_attempt: int | None = None,
) -> runtime.ExecResult:
    """Run a command in the caller's sandbox. With `job_id` (a queued call) it goes through the sandbox's exec ledger:
    the job's command is started at most once, and a retry whose previous attempt lost its worker (`lost_attempt`)
    reports that attempt's command (followed to its end) instead of starting it again, or fails with `worker_lost`
    when that command was killed before it finished."""
    caller = _caller(principal)
    quota = selectors.quota_for(caller.roles)
    argv = _exec_argv(command, code)
    timeout = _seconds("timeout_s", timeout_s, default=settings.SANDBOX_EXEC_TIMEOUT_S, ceiling=quota["exec_timeout_s"])
    directory = _workdir(workdir)
    extra_env = _env_check(env)
    sandbox = sandbox_access(principal=principal, sandbox_id=sandbox_id)
    memory_mb = int(sandbox.limits.get("memory_mb") or settings.SANDBOX_DEFAULT_LIMITS["memory_mb"])
    now = timezone.now()
    # Busy is not idle: keep the reaper off for the whole exec.
    Sandbox.objects.filter(pk=sandbox.pk).update(
        last_used_at=now,
        idle_expires_at=now + timedelta(seconds=sandbox.idle_ttl_s + timeout + 5),
        exec_count=F("exec_count") + 1,
    )
    try:
        adopted = _ledger_adoptable(sandbox, job_id, lost_attempt) if job_id is not None else None
        with _engine():
            result = runtime.exec_run(
                sandbox.container_id,
                argv,
                env={**sandbox.env, **extra_env},
                stdin=stdin.encode() if stdin is not None else None,
                timeout_s=timeout,
                output_limit=settings.SANDBOX_OUTPUT_LIMIT_BYTES,
                workdir=directory,
                on_output=on_output,
                cancelled=cancelled,
                address_space_mb=exec_address_space_mb(sandbox.runtime, memory_mb),
                ledger=(job_id, attempt) if job_id is not None else None,
            )
        result.adopted_attempt = adopted
    except runtime.ContainerGone:
        why = runtime.container_stop_reason(sandbox.container_id)
        sandbox_destroy_row(sandbox, reason="container_vanished")
        raise SandboxError(
            "sandbox_destroyed",
            f"sandbox {sandbox_id} is gone: {why}; create a new one",
            data={"field": "sandbox_id", "reason": "container_vanished"},
        ) from None
    done = timezone.now()
    updates: dict[str, Any] = {"last_used_at": done, "idle_expires_at": done + timedelta(seconds=sandbox.idle_ttl_s)}
    if result.exit_code == 137 and not (result.timed_out or result.truncated or result.cancelled):
        # Killed without a reason of ours: ask the memory cgroup whether the kernel did it.
        with contextlib.suppress(runtime.EngineUnavailable, runtime.ContainerGone, runtime.RuntimeFailure):
            kills = runtime.oom_kills(sandbox.container_id)
            if kills is not None and kills > sandbox.oom_kills:
                result.oom_killed = True
                updates["oom_kills"] = kills
    Sandbox.objects.filter(pk=sandbox.pk).update(**updates)
    return result


def _ledger_adoptable(sandbox: Sandbox, job_id: str, lost_attempt: int | None) -> int | None:
    """Before a retry of a lost attempt runs: the attempt whose command it will report (running or finished in the
    ledger), None when no attempt started it (it starts now). A command that died without an exit status (killed with
    its exec) is not run again: SandboxError("worker_lost")."""
    if lost_attempt is None:
        return None
    with _engine():
        entry = runtime.ledger_inspect(sandbox.container_id, job_id)
    if entry.state == "none":
        return None
    if entry.state == "killed":
        raise SandboxError(
            "worker_lost",
            f"the command of attempt {entry.attempt} was killed before it finished, when the worker running it was "
            "lost; it was not run again (it may have had effects in the sandbox): check the sandbox, then call "
            "sandbox.exec again if it should run",
            data={"attempt": entry.attempt, "sandbox_id": str(sandbox.pk)},
        )
    return entry.attempt


def exec_address_space_mb(runtime_name: str, memory_mb: int) -> int | None:
    """Under gVisor, one process may not map more than the sandbox's memory limit less the sentry's headroom.

    The host OOM killer sees a gVisor sandbox as one cgroup and kills the sentry, i.e. the whole sandbox, so a single
    hog must fail its own allocation first (MemoryError/ENOMEM). Under runc the kernel's OOM killer picks the process
    itself, and runtimes that reserve large address ranges (V8, the JVM) keep working, so no cap is set there.
    """
    if runtime_name != "runsc":
        return None
    return max(32, memory_mb - RUNSC_SENTRY_HEADROOM_MB)


# ------------------------------------------------------------------------------------------ snapshot


def _artifacts() -> Any:
    return storages["artifacts"]


def sandbox_snapshot(*, principal: Any, sandbox_id: str, export_image: bool = False) -> Snapshot:
    """Commit the container and store its workdir (a tar; tmpfs is not part of a commit) in artifact storage.

    With `export_image`, the committed image is also `docker save`d to artifact storage, so the snapshot survives
    the image being pruned or can seed a sandbox on another engine.
    """
    sandbox = sandbox_access(principal=principal, sandbox_id=sandbox_id)
    snapshot_id = uuid.uuid4()
    storage = _artifacts()
    base = f"sandbox/snapshots/{snapshot_id}"
    saved: list[str] = []
    image_ref = f"{runtime.SNAPSHOT_REPOSITORY}:{snapshot_id}"
    committed = False
    try:
        with tempfile.TemporaryFile() as workdir_tar, _engine():
            limit = int(sandbox.limits.get("disk_mb", 64)) * 1024 * 1024 * 2
            result = runtime.workdir_capture(sandbox.container_id, workdir_tar, limit=limit)
            if result.exit_code != 0 or result.truncated:
                raise SandboxError(
                    "sandbox_snapshot_failed",
                    f"capturing the workdir failed: {result.stderr.decode(errors='replace').strip()[:300]}",
                )
            workdir_bytes = workdir_tar.tell()
            workdir_tar.seek(0)
            workdir_name = storage.save(f"{base}/workdir.tar", File(workdir_tar))
            saved.append(workdir_name)
            image_id = runtime.image_commit(
                sandbox.container_id,
                repository=runtime.SNAPSHOT_REPOSITORY,
                tag=str(snapshot_id),
                labels={"io.mcpplat.sandbox.snapshot": str(snapshot_id), "io.mcpplat.sandbox.base": sandbox.image},
            )
            committed = True
            image_name, image_bytes = "", 0
            if export_image:
                with tempfile.TemporaryFile() as image_tar:
                    image_bytes = runtime.image_save(image_ref, image_tar)
                    image_tar.seek(0)
                    image_name = storage.save(f"{base}/image.tar", File(image_tar))
                    saved.append(image_name)
        snapshot = Snapshot(
            id=snapshot_id,
            owner_id=sandbox.owner_id,
            source_sandbox=sandbox,
            base_image=sandbox.snapshot.base_image if sandbox.snapshot else sandbox.image,
            image_ref=image_ref,
            image_id=image_id,
            workdir_artifact=workdir_name,
            workdir_bytes=workdir_bytes,
            image_artifact=image_name,
            image_bytes=image_bytes,
            limits=sandbox.limits,
        )
        snapshot.full_clean()
        snapshot.save()
    except BaseException:
        for name in saved:
            with contextlib.suppress(Exception):
                storage.delete(name)
        if committed:
            with contextlib.suppress(Exception):
                runtime.image_remove(image_ref)
        raise
    Sandbox.objects.filter(pk=sandbox.pk).update(last_used_at=timezone.now())
    return snapshot


def _snapshot_image_ensure(snapshot: Snapshot) -> None:
    if runtime.image_present(snapshot.image_ref):
        return
    if not snapshot.image_artifact:
        raise SandboxError(
            "sandbox_snapshot_unavailable",
            f"snapshot {snapshot.id}'s image {snapshot.image_ref} is no longer in the engine and was not exported: "
            "take snapshots with export_image=true to keep them across engines",
            data={"field": "snapshot_id"},
        )
    with _artifacts().open(snapshot.image_artifact, "rb") as source:
        runtime.image_load(source)


def _workdir_restore(sandbox: Sandbox, snapshot: Snapshot) -> None:
    with _artifacts().open(snapshot.workdir_artifact, "rb") as source, _engine():
        result = runtime.files_put(sandbox.container_id, source, timeout_s=120)
    if result.exit_code != 0:
        raise SandboxError(
            "sandbox_snapshot_failed",
            f"restoring snapshot {snapshot.id}'s workdir failed: {result.stderr.decode(errors='replace')[:300]}",
        )


# ------------------------------------------------------------------------------------------- destroy


def sandbox_destroy(*, principal: Any, sandbox_id: str) -> tuple[Sandbox, bool]:
    """Destroy the caller's sandbox. Idempotent: returns (sandbox, already_destroyed)."""
    caller = _caller(principal)
    sandbox = selectors.sandbox_find(sandbox_id=sandbox_id, owner_id=caller.id)
    if sandbox is None:
        raise SandboxError(
            "not_found", f"sandbox {sandbox_id} does not exist or is not yours", data={"field": "sandbox_id"}
        )
    with _engine():
        destroyed = sandbox_destroy_row(sandbox, reason="destroyed by owner")
    return sandbox, not destroyed


def sandbox_destroy_row(sandbox: Sandbox, *, reason: str) -> bool:
    """Remove the container, then mark the row. True when this call destroyed it; False when it already was.

    Raises runtime.EngineUnavailable when the engine cannot be reached: the row stays live so the reaper retries
    (marking it destroyed with the container still running would leak it).
    """
    with transaction.atomic():
        locked = Sandbox.objects.select_for_update().filter(pk=sandbox.pk).first()
        if locked is None or locked.state not in LIVE_STATES:
            if locked is not None:
                sandbox.state, sandbox.destroy_reason = locked.state, locked.destroy_reason
            return False
        if locked.container_id:
            runtime.container_remove(locked.container_id)
        locked.state = SandboxState.DESTROYED
        locked.destroyed_at = timezone.now()
        locked.destroy_reason = reason[:200]
        locked.save(update_fields=["state", "destroyed_at", "destroy_reason"])
    sandbox.state, sandbox.destroyed_at, sandbox.destroy_reason = locked.state, locked.destroyed_at, reason
    return True


# -------------------------------------------------------------------------------------------- reaper


@dataclass
class ReapReport:
    expired: int = 0
    idle: int = 0
    stale_starting: int = 0
    orphans_removed: int = 0
    vanished: int = 0
    exited: int = 0
    pool_started: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


def sandboxes_destroy_by_staff(*, sandboxes: list[Sandbox], staff: str) -> int:
    """The admin's destroy action: destroy each, audited as one staff action."""
    destroyed = [
        str(sandbox.id) for sandbox in sandboxes if sandbox_destroy_row(sandbox, reason=f"destroyed by {staff}")
    ]
    audit_record_sync(
        AuditRecord(
            principal_id=f"user:{staff}",
            identity_source="session",
            method="admin.sandbox.destroy",
            outcome="ok",
            detail={"sandboxes": destroyed},
        )
    )
    return len(destroyed)


def sandbox_reap(*, now: datetime | None = None, refill_pool: bool = True) -> ReapReport:
    """Zero expired runtime: destroy sandboxes past TTL / idle TTL, stale starts, orphaned labelled containers,
    exited containers; mark rows whose container vanished. Raises runtime.EngineUnavailable when the engine is down.
    """
    now = now or timezone.now()
    report = ReapReport()
    for sandbox in Sandbox.objects.filter(state__in=LIVE_STATES, expires_at__lte=now):
        report.expired += sandbox_destroy_row(sandbox, reason="ttl")
    for sandbox in Sandbox.objects.filter(state__in=LIVE_STATES, idle_expires_at__lte=now):
        report.idle += sandbox_destroy_row(sandbox, reason="idle_ttl")
    stale = now - timedelta(seconds=STALE_START_S)
    for sandbox in Sandbox.objects.filter(state=SandboxState.STARTING, created_at__lte=stale):
        report.stale_starting += sandbox_destroy_row(sandbox, reason="stale start (worker lost)")

    # Rows read BEFORE listing: any container they name existed before the list was taken.
    rows_before = {
        sandbox.container_id: sandbox
        for sandbox in Sandbox.objects.filter(
            state__in=[SandboxState.RUNNING, SandboxState.POOLED], created_at__lte=now
        ).exclude(container_id="")
    }
    containers = runtime.containers_labelled()
    listed = {container.id for container in containers}
    # Rows read AFTER listing: a listed container's row (committed before the container) is visible now.
    live_ids = {
        str(pk): container_id
        for pk, container_id in Sandbox.objects.filter(state__in=LIVE_STATES).values_list("pk", "container_id")
    }
    for container in containers:
        owner_container = live_ids.get(container.sandbox_id)
        if owner_container is None or (owner_container and owner_container != container.id):
            report.orphans_removed += runtime.container_remove(container.id)
        elif not container.running:
            sandbox = Sandbox.objects.get(pk=container.sandbox_id)
            report.exited += sandbox_destroy_row(sandbox, reason="container exited")
    for container_id, sandbox in rows_before.items():
        if container_id not in listed:
            report.vanished += sandbox_destroy_row(sandbox, reason="container_vanished")
    if any(report.as_dict().values()):
        audit_record_sync(
            AuditRecord(
                principal_id="system:sandbox-reaper",
                identity_source="internal",
                method="maintenance.sandbox_reap",
                outcome="ok",
                detail=report.as_dict(),
            )
        )
    if refill_pool:
        report.pool_started = pool_refill()
    return report
