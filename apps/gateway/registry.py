"""The tool registry: every MCP tool is declared once, in its app's `tools.py`, with `@tool(...)`.

The registry imports each installed app's `tools` module at start-up, compiles every JSON Schema once and
refuses to start on an invalid declaration (a bad schema, a duplicate name, a queued tool without a queue).
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import autodiscover_modules
from jsonschema import Draft202012Validator

from apps.gateway import schemas

# SEP-986 tool names: 1-128 chars of letters, digits, `_`, `-`, `.`; ours are `<capability>.<verb>`.
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")

Execution = Literal["inline", "queued"]
TaskSupport = Literal["forbidden", "optional", "required"]
# What the job runtime may do with a queued call whose worker died mid-job (docs/jobs-and-runs.md, "Effects at most
# once"): "safe" runs it again from the start; "adopt" runs it again with `ctx.lost_attempt` set, and the handler
# adopts what the lost attempt did (sandbox.exec's exec ledger) instead of repeating it; "never" fails the job with
# `worker_lost`. Unset: "safe" for tools annotated read-only or idempotent, else "never".
Rerun = Literal["safe", "adopt", "never"]
RERUN_POLICIES: tuple[Rerun, ...] = ("safe", "adopt", "never")


class ToolError(Exception):
    """An expected failure of a tool: becomes an `isError` result naming what was wrong and what to do.

    `code` is one of the platform error codes (docs/errors.md); `retryable` tells the job runtime whether
    a queued call may be tried again.
    """

    def __init__(self, code: str, message: str, *, data: Mapping[str, Any] | None = None, retryable: bool = False):
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = dict(data or {})
        self.retryable = retryable


@dataclass(frozen=True, kw_only=True)
class Annotations:
    """MCP tool annotations (hints for clients; never trusted for security)."""

    read_only: bool = False
    destructive: bool = True
    idempotent: bool = False
    open_world: bool = True

    def as_mcp(self) -> dict[str, bool]:
        return {
            "readOnlyHint": self.read_only,
            "destructiveHint": self.destructive,
            "idempotentHint": self.idempotent,
            "openWorldHint": self.open_world,
        }


class ToolContext:
    """What a handler may use besides its arguments. The gateway and the job runtime each provide one.

    Attributes: `principal` (the authenticated caller), `request_id`, `run_id` (when attached to a run),
    `job_id` (queued tools). Methods: `progress()`, `log()`, `cancelled()`.
    """

    principal: Any
    request_id: str | None = None
    run_id: str | None = None
    job_id: str | None = None
    # Queued tools: this execution's attempt number (1, 2, …), and for `rerun="adopt"` tools the attempt whose worker
    # died mid-job when this execution is its retry (None otherwise).
    attempt: int = 1
    lost_attempt: int | None = None

    async def progress(self, progress: float, total: float | None = None, message: str | None = None) -> None:
        raise NotImplementedError

    def cancelled(self) -> bool:
        raise NotImplementedError

    def cancel_probe(self) -> Callable[[], bool] | None:
        """`cancelled` when this context can report cancellation (the job runtime's can), else None."""
        try:
            self.cancelled()
        except NotImplementedError:
            return None
        return self.cancelled


Handler = Callable[[ToolContext, dict[str, Any]], dict[str, Any] | Awaitable[dict[str, Any]]]


@dataclass(frozen=True, kw_only=True)
class Tool:
    name: str
    title: str
    description: str
    input_schema: dict[str, Any]
    output_schema: dict[str, Any] | None
    handler: Handler
    permission: str
    annotations: Annotations = field(default_factory=Annotations)
    execution: Execution = "inline"
    queue: str | None = None
    timeout_s: float = 30.0
    max_retries: int = 0
    task_support: TaskSupport = "forbidden"
    rerun: Rerun = "never"
    is_async: bool = False
    input_validator: Any = None  # apps.gateway.schemas.InputValidator
    output_validator: Draft202012Validator | None = None


class Registry:
    def __init__(self) -> None:
        self._tools: dict[str, Tool] = {}
        self._discovered = False

    def register(self, spec: Tool) -> Tool:
        if not _NAME.match(spec.name):
            raise ImproperlyConfigured(f"tool {spec.name!r}: names are 1-128 of [A-Za-z0-9_.-]")
        if spec.name in self._tools and self._tools[spec.name].handler is not spec.handler:
            raise ImproperlyConfigured(f"tool {spec.name!r} is declared twice")
        if spec.execution == "queued" and not spec.queue:
            raise ImproperlyConfigured(f"tool {spec.name!r}: a queued tool needs queue=")
        if spec.rerun not in RERUN_POLICIES:
            raise ImproperlyConfigured(f"tool {spec.name!r}: rerun must be one of {', '.join(RERUN_POLICIES)}")
        if spec.input_schema.get("type") != "object":
            raise ImproperlyConfigured(f"tool {spec.name!r}: input_schema must have type 'object'")
        validators: dict[str, Any] = {}
        for which in ("input_schema", "output_schema"):
            schema = getattr(spec, which)
            if schema is None:
                continue
            try:
                validators[which] = (
                    schemas.input_validator(schemas.harden(schema))
                    if which == "input_schema"
                    else schemas.offline_validator(schema, field=which)
                )
            except schemas.SchemaRefused as exc:
                raise ImproperlyConfigured(f"tool {spec.name!r}: invalid {exc}") from None
        # What tools/list publishes is what the gateway enforces: the declaration plus the stack's own bounds.
        input_schema = schemas.harden(spec.input_schema)
        compiled = Tool(
            **{
                **spec.__dict__,
                "input_schema": input_schema,
                "is_async": inspect.iscoroutinefunction(spec.handler),
                "input_validator": validators["input_schema"],
                "output_validator": validators.get("output_schema"),
            },
        )
        self._tools[spec.name] = compiled
        return compiled

    def autodiscover(self) -> None:
        if not self._discovered:
            autodiscover_modules("tools")
            self._discovered = True

    def get(self, name: str) -> Tool | None:
        return self._tools.get(name)

    def all(self) -> list[Tool]:
        """Every tool, in a stable order (2026-07-28 asks for deterministic `tools/list`)."""
        return [self._tools[name] for name in sorted(self._tools)]


registry = Registry()


def tool(
    *,
    name: str,
    title: str,
    description: str,
    input_schema: dict[str, Any],
    output_schema: dict[str, Any] | None = None,
    permission: str | None = None,
    annotations: Annotations | None = None,
    execution: Execution = "inline",
    queue: str | None = None,
    timeout_s: float = 30.0,
    max_retries: int = 0,
    task_support: TaskSupport = "forbidden",
    rerun: Rerun | None = None,
) -> Callable[[Handler], Handler]:
    """Declare an MCP tool. `permission` defaults to the tool's name (roles grant tool names or `cap.*`).

    `rerun` (queued tools): see `Rerun`; unset, a tool annotated read-only or idempotent is "safe", any other "never".
    """
    hints = annotations or Annotations()
    policy: Rerun = rerun or ("safe" if hints.read_only or hints.idempotent else "never")

    def decorate(handler: Handler) -> Handler:
        registry.register(
            Tool(
                name=name,
                title=title,
                description=description,
                input_schema=input_schema,
                output_schema=output_schema,
                handler=handler,
                permission=permission or name,
                annotations=hints,
                execution=execution,
                queue=queue,
                timeout_s=timeout_s,
                max_retries=max_retries,
                task_support=task_support,
                rerun=policy,
            )
        )
        return handler

    return decorate
