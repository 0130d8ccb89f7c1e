from __future__ import annotations

import asyncio
from typing import Any

import redis
from django.conf import settings

from apps.gateway.registry import Annotations, ToolContext, ToolError, tool

CALLS_KEY = "e2e:echo:calls"


@tool(
    name="platform.e2e_echo",
    title="Echo",
    description="Returns its text and how many times it really ran (a sync handler, run in a thread).",
    input_schema={
        "type": "object",
        "properties": {"text": {"type": "string", "maxLength": 20}, "fail": {"type": "boolean"}},
        "required": ["text"],
        "additionalProperties": False,
    },
    output_schema={
        "type": "object",
        "properties": {"text": {"type": "string"}, "calls": {"type": "integer"}},
        "required": ["text", "calls"],
    },
    annotations=Annotations(read_only=False, destructive=False, idempotent=False, open_world=False),
)
def echo(ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
    if args.get("fail"):
        raise ToolError("demo_failure", "platform.e2e_echo was asked to fail (fail=true); call it without fail")
    client = redis.Redis.from_url(settings.REDIS_URL)
    try:
        calls = int(client.incr(CALLS_KEY))
    finally:
        client.close()
    return {"text": args["text"], "calls": calls}


@tool(
    name="platform.e2e_count",
    title="Count slowly",
    description="Counts to `steps`, sleeping `delay_ms` between steps and reporting progress; cancellable.",
    input_schema={
        "type": "object",
        "properties": {
            "steps": {"type": "integer", "minimum": 1, "maximum": 50},
            "delay_ms": {"type": "integer", "minimum": 0, "maximum": 5000},
        },
        "required": ["steps"],
        "additionalProperties": False,
    },
    output_schema={"type": "object", "properties": {"counted": {"type": "integer"}}, "required": ["counted"]},
    annotations=Annotations(read_only=True, destructive=False, idempotent=True, open_world=False),
)
async def count(ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
    steps, delay = args["steps"], args.get("delay_ms", 10) / 1000
    client = redis.asyncio.Redis.from_url(settings.REDIS_URL)
    try:
        for step in range(1, steps + 1):
            await asyncio.sleep(delay)
            await client.set("e2e:count:last", step)
            await ctx.progress(step, steps, f"step {step} of {steps}")
    finally:
        await client.aclose()
    return {"counted": steps}
