"""The run tools: inline (they run in the gateway), Postgres-backed."""

from __future__ import annotations

from typing import Any

from apps.gateway.registry import Annotations, ToolContext, tool
from apps.runs import selectors, services
from apps.runs.models import Run, RunEvent

_RUN_ID = {"type": "string", "format": "uuid", "description": "The id returned by run.start."}

_RUN_STATE = {
    "type": "object",
    "properties": {
        "run_id": {"type": "string"},
        "name": {"type": "string"},
        "state": {"type": "string", "enum": ["active", "cancelled", "expired", "completed"]},
        "lease_expires_at": {"type": "string"},
        "last_seq": {"type": "integer"},
    },
    "required": ["run_id", "state", "lease_expires_at", "last_seq"],
}


def run_as_dict(run: Run) -> dict[str, Any]:
    return {
        "run_id": str(run.pk),
        "name": run.name,
        "metadata": run.metadata,
        "state": services.run_state_now(run),
        "lease_seconds": run.lease_seconds,
        "lease_expires_at": run.lease_expires_at.isoformat(),
        "created_at": run.created_at.isoformat(),
        "last_seq": run.last_seq,
    }


def event_as_dict(event: RunEvent) -> dict[str, Any]:
    return {
        "seq": event.seq,
        "kind": event.kind,
        "job_id": str(event.job_id) if event.job_id else None,
        "payload": event.payload,
        "at": event.created_at.isoformat(),
    }


@tool(
    name="run.start",
    title="Start a run",
    description="Start a run: a long-lived unit of work that groups tool calls (attach them with _meta "
    '{"run_id": …}), keeps an ordered event log, and stays alive while you renew its lease with run.heartbeat. '
    "When the lease expires, its unfinished jobs are cancelled.",
    input_schema={
        "type": "object",
        "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": services.RUN_NAME_MAX},
            "metadata": {"type": "object"},
            "lease_seconds": {
                "type": "integer",
                "minimum": services.LEASE_MIN_S,
                "maximum": services.LEASE_MAX_S,
                "default": 300,
            },
        },
        "required": ["name"],
        "additionalProperties": False,
    },
    output_schema=_RUN_STATE,
    annotations=Annotations(read_only=False, destructive=False, idempotent=False, open_world=False),
)
def run_start(ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
    run = services.run_start(
        principal=ctx.principal,
        name=args["name"],
        metadata=args.get("metadata"),
        lease_seconds=args.get("lease_seconds", 300),
    )
    return run_as_dict(run)


@tool(
    name="run.heartbeat",
    title="Renew a run's lease",
    description="Renew the run's lease for another lease_seconds. An expired or ended run cannot be renewed: "
    "the error run_expired / run_not_active says so; start a new run.",
    input_schema={
        "type": "object",
        "properties": {"run_id": _RUN_ID},
        "required": ["run_id"],
        "additionalProperties": False,
    },
    output_schema=_RUN_STATE,
    annotations=Annotations(read_only=False, destructive=False, idempotent=True, open_world=False),
)
def run_heartbeat(ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
    return run_as_dict(services.run_heartbeat(run_id=args["run_id"], principal=ctx.principal))


@tool(
    name="run.resume",
    title="Resume a run",
    description="The run's state and every event after after_seq, in order, without gaps or duplicates "
    f"(at most {selectors.RUN_EVENTS_PAGE} per call: when `more` is true, call again with the last seq). "
    "A cursor at or beyond the end returns an empty list. Works from any gateway replica, after restarts.",
    input_schema={
        "type": "object",
        "properties": {"run_id": _RUN_ID, "after_seq": {"type": "integer", "minimum": 0, "default": 0}},
        "required": ["run_id"],
        "additionalProperties": False,
    },
    output_schema={
        "type": "object",
        "properties": {
            "run": _RUN_STATE,
            "events": {"type": "array", "items": {"type": "object"}},
            "more": {"type": "boolean"},
        },
        "required": ["run", "events", "more"],
    },
    annotations=Annotations(read_only=True, destructive=False, idempotent=True, open_world=False),
)
def run_resume(ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
    run = selectors.run_access(run_id=args["run_id"], principal=ctx.principal)
    page = selectors.run_events(run.pk, after_seq=args.get("after_seq", 0))
    return {
        "run": run_as_dict(run),
        "events": [event_as_dict(e) for e in page],
        "more": bool(page) and page[-1].seq < run.last_seq,
    }


@tool(
    name="run.cancel",
    title="Cancel a run",
    description="Cancel the run and every unfinished job in it (running jobs stop within about a second). "
    "Cancelling an ended run changes nothing and returns its state with an empty cancelled_jobs list.",
    input_schema={
        "type": "object",
        "properties": {"run_id": _RUN_ID, "reason": {"type": "string", "maxLength": 500}},
        "required": ["run_id"],
        "additionalProperties": False,
    },
    output_schema={
        "type": "object",
        "properties": {"run": _RUN_STATE, "cancelled_jobs": {"type": "array", "items": {"type": "string"}}},
        "required": ["run", "cancelled_jobs"],
    },
    annotations=Annotations(read_only=False, destructive=True, idempotent=True, open_world=False),
)
def run_cancel(ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
    run, jobs = services.run_cancel(run_id=args["run_id"], principal=ctx.principal, reason=args.get("reason", ""))
    return {"run": run_as_dict(run), "cancelled_jobs": [str(j.pk) for j in jobs]}
