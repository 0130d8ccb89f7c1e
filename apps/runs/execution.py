"""Running one job in a worker: claim, a worker-side ToolContext, a heartbeat/cancel watcher, the handler,
and the outcome. `job_execute` is the service behind every queue's actor."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Generator
from typing import Any

import redis
from django.conf import settings
from django.db import OperationalError, connections
from dramatiq.middleware.time_limit import TimeLimitExceeded

from apps.accounts.principal import Principal
from apps.gateway.registry import ToolContext, ToolError, registry
from apps.runs import events, services
from apps.runs.models import Job, JobEventKind

log = logging.getLogger(__name__)

# Errors that say "the world was briefly unavailable", not "this call is wrong": retried like retryable ToolErrors.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    ConnectionError,
    TimeoutError,
    redis.ConnectionError,
    redis.TimeoutError,
    OperationalError,
)
_HOST = socket.gethostname()


class _Done:
    """An already-finished awaitable: lets sync handlers call `ctx.progress(...)` and async ones `await` it."""

    def __await__(self) -> Generator[Any, None, None]:
        return
        yield


class WorkerToolContext(ToolContext):
    """The ToolContext of a queued tool. `progress()`/`log()` write job events (Postgres + Redis stream);
    `cancelled()` is a memory read of a flag the watcher thread keeps current."""

    job_id: str

    def __init__(self, job: Job, claim: str):
        self.principal = Principal.from_dict(job.principal)
        self.request_id = job.request_id
        self.run_id = str(job.run_id) if job.run_id else None
        self.job_id = str(job.pk)
        self.claim = claim
        self.attempt = job.attempts
        # The adoption hook of `rerun="adopt"` tools: set when the attempt just before this one lost its worker.
        lost = job.lost_attempt
        self.lost_attempt = lost if job.rerun == "adopt" and lost is not None and lost == job.attempts - 1 else None
        self._cancel = threading.Event()

    def progress(self, progress: float, total: float | None = None, message: str | None = None) -> Any:  # type: ignore[override]
        payload: dict[str, Any] = {"progress": progress}
        if total is not None:
            payload["total"] = total
        if message is not None:
            payload["message"] = message
        return self._emit(JobEventKind.PROGRESS, payload)

    def log(self, level: str, message: str, data: dict[str, Any] | None = None) -> Any:
        return self._emit(JobEventKind.LOG, {"level": level, "message": message, "data": data or {}})

    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def cancel(self) -> None:
        self._cancel.set()

    def _emit(self, kind: str, payload: dict[str, Any]) -> Any:
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # sync handler: write now; the returned awaitable is already done
            self._write(kind, payload)
            return _Done()
        return events.db_call(self._write)(kind, payload)

    def _write(self, kind: str, payload: dict[str, Any]) -> None:
        if events.job_event_emit(job_id=self.job_id, kind=kind, payload=payload) is None:
            self._cancel.set()  # the job ended (cancelled, say): tell the handler to stop


class _Watcher(threading.Thread):
    """Polls the cancel flag every RUNS_CANCEL_POLL_MS and writes the job's heartbeat every RUNS_JOB_HEARTBEAT_S.

    A lost claim (job cancelled in Postgres, or requeued as stale) also raises the cancel flag.
    """

    def __init__(self, ctx: WorkerToolContext, deadline: float):
        super().__init__(name=f"job-watch-{ctx.job_id[:8]}", daemon=True)
        self.ctx = ctx
        self.deadline = deadline
        self.stopped = threading.Event()
        self.timed_out = False

    def run(self) -> None:
        poll = settings.RUNS_CANCEL_POLL_MS / 1000
        beat_every = settings.RUNS_JOB_HEARTBEAT_S
        next_beat = time.monotonic() + beat_every
        beats = 0
        key = events.cancel_key(self.ctx.job_id)
        try:
            while not self.stopped.wait(poll):
                now = time.monotonic()
                if now >= self.deadline and not self.timed_out:
                    self.timed_out = True
                    self.ctx.cancel()
                try:
                    if events.redis_client().exists(key):
                        self.ctx.cancel()
                except redis.RedisError:
                    pass  # the heartbeat below still notices a cancel through Postgres
                if now >= next_beat:
                    next_beat = now + beat_every
                    beats += 1
                    try:
                        if not services.job_heartbeat(job_id=self.ctx.job_id, claim=self.ctx.claim):
                            self.ctx.cancel()
                        elif beats % 10 == 0:
                            events.job_event_emit(job_id=self.ctx.job_id, kind=JobEventKind.HEARTBEAT, payload={})
                    except OperationalError as exc:
                        log.warning("job %s: heartbeat failed: %s", self.ctx.job_id, exc)
        finally:
            connections.close_all()


def _error(code: str, message: str, data: dict[str, Any] | None = None, *, retryable: bool) -> dict[str, Any]:
    return {"code": code, "message": message, "data": data or {}, "retryable": retryable}


def job_execute(*, job_id: str) -> None:
    """Run one delivery of a job's message. Safe to call for any message, any number of times."""
    claim = f"{_HOST}:{os.getpid()}:{threading.get_native_id()}:{uuid.uuid4().hex[:8]}"
    job = services.job_claim(job_id=job_id, worker_id=claim)
    if job is None:
        return
    tool = registry.get(job.tool)
    if tool is None:
        services.job_fail(
            job_id=job_id,
            claim=claim,
            error=_error("tool_not_found", f"this worker has no tool {job.tool!r} (deploy mismatch?)", retryable=True),
            retryable=True,
        )
        return
    ctx = WorkerToolContext(job, claim)
    watcher = _Watcher(ctx, deadline=time.monotonic() + job.timeout_s)
    watcher.start()
    result: Any
    try:
        if tool.is_async:
            result = asyncio.run(tool.handler(ctx, dict(job.arguments)))  # type: ignore[arg-type]
        else:
            result = tool.handler(ctx, dict(job.arguments))
    except TimeLimitExceeded:
        _timed_out(job, claim)
        return
    except ToolError as exc:
        if watcher.timed_out:
            _timed_out(job, claim)
            return
        error = _error(exc.code, exc.message, exc.data, retryable=exc.retryable)
        services.job_fail(job_id=job_id, claim=claim, error=error, retryable=exc.retryable)
        return
    except Exception as exc:
        if watcher.timed_out:
            _timed_out(job, claim)
            return
        retryable = isinstance(exc, TRANSIENT_ERRORS)
        log.exception("job %s (%s) attempt %s raised", job_id, job.tool, job.attempts)
        error = _error(
            "internal_error" if not retryable else "unavailable", f"{type(exc).__name__}: {exc}", retryable=retryable
        )
        services.job_fail(job_id=job_id, claim=claim, error=error, retryable=retryable)
        return
    finally:
        watcher.stopped.set()
        watcher.join(5)
    if watcher.timed_out:
        _timed_out(job, claim)
        return
    if not isinstance(result, dict):
        error = _error(
            "invalid_output", f"tool {job.tool} returned {type(result).__name__}, not an object", retryable=False
        )
        services.job_fail(job_id=job_id, claim=claim, error=error, retryable=False)
        return
    if tool.output_validator is not None and (problems := list(tool.output_validator.iter_errors(result))):
        first = problems[0]
        where = "/".join(str(p) for p in first.absolute_path) or "(root)"
        error = _error(
            "invalid_output", f"tool {job.tool} returned bad output at {where}: {first.message}", retryable=False
        )
        services.job_fail(job_id=job_id, claim=claim, error=error, retryable=False)
        return
    services.job_succeed(job_id=job_id, claim=claim, result=result)


def _timed_out(job: Job, claim: str) -> None:
    error = _error("timeout", f"tool {job.tool} ran longer than its {job.timeout_s:g} s limit", retryable=False)
    services.job_fail(job_id=str(job.pk), claim=claim, error=error, retryable=False, timed_out=True)
