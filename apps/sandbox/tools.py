"""MCP tools of the sandbox capability. Queued on the `sandbox` queue: a sandbox worker owns the Docker Engine.

Handlers are thin: validate what the schema cannot, call one service, shape the result.
"""

from __future__ import annotations

import base64
import logging
import time
from typing import Any

from asgiref.sync import async_to_sync

from apps.gateway.registry import Annotations, ToolContext, ToolError, tool
from apps.sandbox import selectors, services

log = logging.getLogger(__name__)

# Hard ceilings stated in the schema (each role's quota applies below them): a sandbox lives at most 30 days, and
# an exec cannot outlast sandbox.exec's own job time limit.
MAX_TTL_S = 30 * 86_400
MAX_EXEC_TIMEOUT_S = 3_600

_ID = {"type": "string", "format": "uuid", "description": "A sandbox id from sandbox.create."}
_LIMITS = {
    "type": "object",
    "additionalProperties": False,
    "description": "Resource limits; each must be within your role's quota. Unset keys take the defaults.",
    "properties": {
        "memory_mb": {
            "type": "integer",
            "minimum": 32,
            "maximum": 1_048_576,
            "description": "Memory in MiB (the workdir counts).",
        },
        "cpus": {
            "type": "number",
            "exclusiveMinimum": 0,
            "maximum": 1024,
            "description": "CPU cores (fractions allowed).",
        },
        "pids": {"type": "integer", "minimum": 16, "maximum": 4_194_304, "description": "Maximum processes."},
        "disk_mb": {
            "type": "integer",
            "minimum": 1,
            "maximum": 1_048_576,
            "description": "Size of the writable workdir in MiB.",
        },
    },
}
_ENV = {
    "type": "object",
    "maxProperties": 64,
    "propertyNames": {"pattern": "^[A-Za-z_][A-Za-z0-9_]*$"},
    "additionalProperties": {"type": "string", "maxLength": 4096},
    "description": "Environment variables for every exec (never pass secrets: sandboxes run untrusted code).",
}
_SANDBOX_OUT = {
    "type": "object",
    "required": ["sandbox_id", "state", "image", "limits", "expires_at"],
    "properties": {
        "sandbox_id": {"type": "string"},
        "state": {"type": "string"},
        "image": {"type": "string"},
        "snapshot_id": {"type": ["string", "null"]},
        "runtime": {"type": "string"},
        "limits": {"type": "object"},
        "network": {"type": "string"},
        "workdir": {"type": "string"},
        "expires_at": {"type": "string"},
        "idle_expires_at": {"type": "string"},
    },
}


@tool(
    name="sandbox.create",
    title="Create a sandbox",
    description=(
        "Start an isolated container (no network, non-root, read-only root with a writable /workspace) from an "
        "allowlisted image or a snapshot. Returns its id; it is destroyed after ttl_s, or idle_ttl_s without an exec."
    ),
    input_schema={
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "image": {"type": "string", "maxLength": 300, "description": "Allowlisted image; default: the Python one."},
            "snapshot_id": {"type": "string", "format": "uuid", "description": "Start from this snapshot instead."},
            "ttl_s": {"type": "integer", "minimum": 10, "maximum": MAX_TTL_S, "description": "Lifetime in seconds."},
            "idle_ttl_s": {
                "type": "integer",
                "minimum": 10,
                "maximum": MAX_TTL_S,
                "description": "Destroyed after this long without exec.",
            },
            "env": _ENV,
            "files": {
                "type": "array",
                "maxItems": 500,
                "description": "Files written into /workspace before the sandbox is returned.",
                "items": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["path", "content"],
                    "properties": {
                        "path": {"type": "string", "minLength": 1, "maxLength": 1024},
                        "content": {"type": "string"},
                        "encoding": {"enum": ["utf-8", "base64"], "default": "utf-8"},
                    },
                },
            },
            "limits": _LIMITS,
        },
    },
    output_schema=_SANDBOX_OUT,
    annotations=Annotations(destructive=False, idempotent=False, open_world=False),
    execution="queued",
    queue="sandbox",
    rerun="never",  # a second run would start a second sandbox against the caller's quota
    timeout_s=120,
    task_support="optional",
)
def sandbox_create(ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
    sandbox = services.sandbox_create(
        principal=ctx.principal,
        image=args.get("image"),
        snapshot_id=args.get("snapshot_id"),
        ttl_s=args.get("ttl_s"),
        idle_ttl_s=args.get("idle_ttl_s"),
        env=args.get("env"),
        files=args.get("files"),
        limits=args.get("limits"),
    )
    return selectors.sandbox_summary(sandbox)


class _ProgressRelay:
    """Relays exec output to the caller as progress notifications, batched (≤ 10 per second, ≤ 16 KiB each)."""

    def __init__(self, ctx: ToolContext) -> None:
        self.ctx = ctx
        self.pending: dict[str, bytearray] = {"stdout": bytearray(), "stderr": bytearray()}
        self.sent = 0
        self.last = 0.0
        self.enabled = True

    def __call__(self, stream: str, chunk: bytes) -> None:
        self.pending[stream] += chunk
        if time.monotonic() - self.last >= 0.1 or len(self.pending[stream]) >= 16384:
            self.flush()

    def flush(self) -> None:
        if not self.enabled:
            return
        for stream, data in self.pending.items():
            if not data:
                continue
            self.sent += len(data)
            message = f"{stream}: {bytes(data[:16384]).decode(errors='replace')}"
            data.clear()
            try:
                async_to_sync(self.ctx.progress)(self.sent, None, message)
            except NotImplementedError:
                self.enabled = False  # this context cannot stream (a test or an inline caller): results still come
                return
            except RuntimeError:
                # Called on a thread that runs an event loop: progress cannot be awaited from here.
                log.warning("sandbox.exec output not streamed: the handler runs on an event-loop thread")
                self.enabled = False
                return
        self.last = time.monotonic()


def _text(data: bytes) -> tuple[str, str]:
    try:
        return data.decode(), "utf-8"
    except UnicodeDecodeError:
        return base64.b64encode(data).decode(), "base64"


@tool(
    name="sandbox.exec",
    title="Run a command in a sandbox",
    description=(
        "Run a shell command (string), an argv list, or Python code in a sandbox. stdout/stderr stream as progress; "
        "the result has the exit code, the output (cut past the output limit, with truncated=true) and timed_out "
        "when the timeout killed the process. The sandbox survives timeouts."
    ),
    input_schema={
        "type": "object",
        "additionalProperties": False,
        "required": ["sandbox_id"],
        "oneOf": [{"required": ["command"]}, {"required": ["code"]}],
        "properties": {
            "sandbox_id": _ID,
            "command": {
                "oneOf": [
                    {"type": "string", "minLength": 1, "maxLength": 100_000},
                    {"type": "array", "minItems": 1, "items": {"type": "string"}},
                ],
                "description": "A string runs under `sh -c`; a list is the argv.",
            },
            "code": {"type": "string", "maxLength": 100_000, "description": "Python source run with python3 -c."},
            "stdin": {"type": "string", "maxLength": 10_000_000},
            "timeout_s": {
                "type": "number",
                "exclusiveMinimum": 0,
                "maximum": MAX_EXEC_TIMEOUT_S,
                "description": "Kill the process after this.",
            },
            "workdir": {"type": "string", "description": "Directory inside /workspace (relative or absolute)."},
            "env": _ENV,
        },
    },
    output_schema={
        "type": "object",
        "required": ["exit_code", "stdout", "stderr", "truncated", "timed_out", "duration_ms"],
        "properties": {
            "exit_code": {"type": ["integer", "null"]},
            "stdout": {"type": "string"},
            "stderr": {"type": "string"},
            "stdout_encoding": {"enum": ["utf-8", "base64"]},
            "stderr_encoding": {"enum": ["utf-8", "base64"]},
            "truncated": {"type": "boolean"},
            "timed_out": {"type": "boolean"},
            "duration_ms": {"type": "number"},
            "output_bytes": {"type": "integer"},
            "oom_killed": {"type": "boolean", "description": "The kernel killed it for exceeding memory_mb."},
            "adopted_attempt": {
                "type": ["integer", "null"],
                "description": "Set when the worker running this call died: the attempt whose command this reports "
                "(the command is never started twice).",
            },
        },
    },
    annotations=Annotations(destructive=True, idempotent=False, open_world=False),
    execution="queued",
    queue="sandbox",
    rerun="adopt",  # the exec ledger in the sandbox: a retry adopts the lost attempt's command
    timeout_s=3700,
    task_support="optional",
)
def sandbox_exec(ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
    relay = _ProgressRelay(ctx)
    result = services.sandbox_exec(
        principal=ctx.principal,
        sandbox_id=args["sandbox_id"],
        command=args.get("command"),
        code=args.get("code"),
        stdin=args.get("stdin"),
        timeout_s=args.get("timeout_s"),
        workdir=args.get("workdir"),
        env=args.get("env"),
        on_output=relay,
        cancelled=ctx.cancel_probe(),
        job_id=ctx.job_id,
        attempt=ctx.attempt,
        lost_attempt=ctx.lost_attempt,
    )
    relay.flush()
    if result.cancelled:
        raise ToolError("cancelled", "the call was cancelled: its process was killed (the sandbox lives on)")
    stdout, stdout_encoding = _text(result.stdout)
    stderr, stderr_encoding = _text(result.stderr)
    return {
        "exit_code": result.exit_code,
        "stdout": stdout,
        "stderr": stderr,
        "stdout_encoding": stdout_encoding,
        "stderr_encoding": stderr_encoding,
        "truncated": result.truncated,
        "timed_out": result.timed_out,
        "duration_ms": round(result.duration_ms, 1),
        "output_bytes": result.output_bytes,
        "oom_killed": result.oom_killed,
        "adopted_attempt": result.adopted_attempt,
    }


@tool(
    name="sandbox.snapshot",
    title="Snapshot a sandbox",
    description=(
        "Commit the sandbox and store its /workspace in artifact storage. The snapshot id can be given to "
        "sandbox.create to start new sandboxes from it. export_image also stores the full image (large)."
    ),
    input_schema={
        "type": "object",
        "additionalProperties": False,
        "required": ["sandbox_id"],
        "properties": {"sandbox_id": _ID, "export_image": {"type": "boolean", "default": False}},
    },
    output_schema={
        "type": "object",
        "required": ["snapshot_id", "image", "workdir_bytes"],
        "properties": {
            "snapshot_id": {"type": "string"},
            "sandbox_id": {"type": "string"},
            "image": {"type": "string"},
            "workdir_artifact": {"type": "string"},
            "workdir_bytes": {"type": "integer"},
            "image_artifact": {"type": ["string", "null"]},
            "image_bytes": {"type": "integer"},
        },
    },
    annotations=Annotations(destructive=False, idempotent=False, open_world=False),
    execution="queued",
    queue="sandbox",
    rerun="safe",  # reads the sandbox; a second run stores a second snapshot, nothing else
    timeout_s=600,
    task_support="optional",
)
def sandbox_snapshot(ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
    snapshot = services.sandbox_snapshot(
        principal=ctx.principal, sandbox_id=args["sandbox_id"], export_image=bool(args.get("export_image"))
    )
    return {
        "snapshot_id": str(snapshot.id),
        "sandbox_id": args["sandbox_id"],
        "image": snapshot.image_ref,
        "workdir_artifact": snapshot.workdir_artifact,
        "workdir_bytes": snapshot.workdir_bytes,
        "image_artifact": snapshot.image_artifact or None,
        "image_bytes": snapshot.image_bytes,
    }


@tool(
    name="sandbox.destroy",
    title="Destroy a sandbox",
    description="Kill and remove a sandbox. Idempotent: destroying a destroyed sandbox succeeds and says so.",
    input_schema={
        "type": "object",
        "additionalProperties": False,
        "required": ["sandbox_id"],
        "properties": {"sandbox_id": _ID},
    },
    output_schema={
        "type": "object",
        "required": ["sandbox_id", "state", "already_destroyed"],
        "properties": {
            "sandbox_id": {"type": "string"},
            "state": {"type": "string"},
            "already_destroyed": {"type": "boolean"},
            "reason": {"type": "string"},
        },
    },
    annotations=Annotations(destructive=True, idempotent=True, open_world=False),
    execution="queued",
    queue="sandbox",
    rerun="safe",  # idempotent
    timeout_s=60,
)
def sandbox_destroy(ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
    sandbox, already = services.sandbox_destroy(principal=ctx.principal, sandbox_id=args["sandbox_id"])
    return {
        "sandbox_id": str(sandbox.id),
        "state": sandbox.state,
        "already_destroyed": already,
        "reason": sandbox.destroy_reason,
    }
