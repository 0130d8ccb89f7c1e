"""Test-only queued tools. Imported by the tests, and by test workers through RUNS_EXTRA_TOOL_MODULES.

They record what they did in Redis (`<key>:…`) so tests can see side effects across processes.
"""

from __future__ import annotations

import os
import time
from typing import Any

import redis
from django.conf import settings

from apps.gateway.registry import ToolContext, ToolError, tool

_OBJECT = {"type": "object"}


def _redis() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL)


@tool(
    name="test.noop",
    title="no-op",
    description="Returns its arguments.",
    input_schema=_OBJECT,
    execution="queued",
    queue="default",
    task_support="optional",
    rerun="safe",
)
def noop(ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
    return {"echo": args}


@tool(name="test.noop_inline", title="no-op inline", description="Returns its arguments.", input_schema=_OBJECT)
def noop_inline(ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
    return {"echo": args}


@tool(
    name="test.flaky",
    title="flaky",
    description="Fails (retryably) until attempt `succeed_on`.",
    input_schema=_OBJECT,
    execution="queued",
    queue="default",
    max_retries=3,
)
def flaky(ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
    _redis().rpush(f"{args['key']}:attempts", ctx.attempt)  # type: ignore[attr-defined]
    if ctx.attempt < args["succeed_on"]:  # type: ignore[attr-defined]
        raise ToolError("upstream_unavailable", f"attempt {ctx.attempt} failed", retryable=True)  # type: ignore[attr-defined]
    return {"attempt": ctx.attempt}  # type: ignore[attr-defined]


@tool(
    name="test.permanent",
    title="permanent",
    description="Always fails permanently.",
    input_schema=_OBJECT,
    execution="queued",
    queue="default",
    max_retries=3,
)
def permanent(ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
    _redis().incr(f"{args['key']}:calls")
    raise ToolError("bad_document", "the document is not valid UTF-8", data={"field": "document"})


@tool(
    name="test.gated",
    title="gated",
    description="Fails retryably until Redis key `<key>:open` exists.",
    input_schema=_OBJECT,
    execution="queued",
    queue="default",
    max_retries=2,
)
def gated(ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
    _redis().incr(f"{args['key']}:calls")
    if not _redis().exists(f"{args['key']}:open"):
        raise ToolError("gate_closed", "the gate is closed", retryable=True)
    return {"passed": True}


@tool(
    name="test.slow",
    title="slow",
    description="Works in `steps` steps of `step_s`, reporting progress.",
    input_schema=_OBJECT,
    execution="queued",
    queue="default",
    timeout_s=60,
    max_retries=0,
    task_support="optional",
    rerun="safe",
)
def slow(ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
    client = _redis()
    key = args["key"]
    client.rpush(f"{key}:starts", os.getpid())
    steps = int(args.get("steps", 10))
    for step in range(1, steps + 1):
        if ctx.cancelled():
            client.set(f"{key}:stopped_at", repr(time.time()))
            raise ToolError("cancelled", "stopped on request")
        ctx.progress(step, steps, f"step {step}")
        deadline = time.monotonic() + float(args.get("step_s", 0.1))
        while time.monotonic() < deadline:
            if ctx.cancelled():
                break
            time.sleep(0.02)
    client.incr(f"{key}:completions")
    return {"steps": steps}


@tool(
    name="test.async_progress",
    title="async",
    description="An async handler reporting progress.",
    input_schema=_OBJECT,
    execution="queued",
    queue="default",
)
async def async_progress(ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
    for step in range(1, 4):
        await ctx.progress(step, 3)
    return {"done": True}


@tool(
    name="test.sleepy",
    title="sleepy",
    description="Sleeps cooperatively for up to 10 s; its limit is 0.5 s.",
    input_schema=_OBJECT,
    execution="queued",
    queue="default",
    timeout_s=0.5,
)
def sleepy(ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not ctx.cancelled():
        time.sleep(0.02)
    return {"slept": True}


def _counted(ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
    runs = _redis().incr(f"{args['key']}:runs")
    return {"runs": runs, "attempt": ctx.attempt, "lost_attempt": ctx.lost_attempt}


for _name, _rerun in (("test.effect_never", "never"), ("test.effect_safe", "safe"), ("test.effect_adopt", "adopt")):
    tool(
        name=_name,
        title=_name,
        description=f"Counts its runs in Redis `<key>:runs` (rerun={_rerun}).",
        input_schema=_OBJECT,
        execution="queued",
        queue="default",
        rerun=_rerun,  # type: ignore[arg-type]
    )(_counted)
