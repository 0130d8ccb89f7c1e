"""Browser services: open, act, extract, trace, close — called by the tool handlers, actors and admin.

A session's pages live in the worker process that opened it (its context cannot move). The Redis lease
records that owner. A call for a session that arrives at another worker (Dramatiq hands `browser` messages to
any worker) is forwarded to the owner's inbox and the answer awaited; a call for a session whose owner is
gone fails with `session_lost`. See docs/browser.md.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import importlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from django.apps import apps as django_apps
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import storages
from django.utils import timezone

from apps.browser import leases, pages
from apps.browser.models import BlockedRequest, BrowserPolicy
from apps.browser.policy import DomainPolicy, PolicyError, parse_target, resolve_checked
from apps.browser.runtime import BrowserUnavailable, CallCancelled, LiveSession, SessionEnded, runtime
from apps.gateway.registry import ToolError

log = logging.getLogger(__name__)

_SLACK_S = 10.0  # on top of the page timeouts, for the hop to the loop thread (and to the owner worker)


# ------------------------------------------------------------------------------------------------ policy


def policy_for(principal: Any) -> DomainPolicy:
    """The policy of the principal's first role (by name) that has one; else the env default policy."""
    roles = sorted(getattr(principal, "roles", ()) or ())
    row = BrowserPolicy.objects.filter(role__in=roles).order_by("role").first() if roles else None
    if row is not None:
        return row.as_policy()
    return DomainPolicy.build(
        name=f"default:{roles[0]}" if roles else "default",
        allow=settings.BROWSER_DEFAULT_ALLOW,
        deny=settings.BROWSER_DEFAULT_DENY,
        max_sessions=settings.BROWSER_MAX_SESSIONS_PER_ROLE,
    )


def _record_blocks(
    *, principal: Any, tool: str, session_id: str, blocks: list[dict[str, Any]], job_id: str | None
) -> None:
    """Persist and audit every block (the caller also gets them in the result)."""
    for block in blocks:
        BlockedRequest.objects.create(
            principal_id=principal.id,
            session_id=session_id or "",
            tool=tool,
            url=block.get("url") or "",
            reason=block.get("reason") or "",
            detail=block.get("detail") or "",
            address=block.get("address") or "",
            job_id=job_id or "",
        )
        _audit_block(principal=principal, tool=tool, session_id=session_id, block=block, job_id=job_id)


def _audit_block(*, principal: Any, tool: str, session_id: str, block: dict[str, Any], job_id: str | None) -> None:
    """Audit a refusal through apps.audit when it is installed (it lands from the identity branch)."""
    if not django_apps.is_installed("apps.audit"):
        return  # BlockedRequest holds the record until then
    writer = importlib.import_module("apps.audit.writer")
    writer.audit_record_sync(
        writer.AuditRecord(
            principal_id=principal.id,
            identity_source=getattr(principal, "identity_source", None),
            credential_id=getattr(principal, "credential_id", None),
            method="tools/call",
            tool=tool,
            arguments={"url": block.get("url")},
            outcome="denied",
            error_code=f"browser.{block.get('reason')}",
            job_id=job_id,
            detail={"browser_session": session_id, **block},
        )
    )


def _timeout() -> float:
    return (settings.BROWSER_NAVIGATION_TIMEOUT_MS + settings.BROWSER_ACTION_TIMEOUT_MS) / 1000 + _SLACK_S


# ----------------------------------------------------------------------------------------- local execution


# The running job's cancel check (ToolContext.cancelled), set by the tool layer for the length of one call: every
# wait on the browser, local or routed to the owning worker, checks it so a cancelled job ends within a second.
_cancel_probe: contextvars.ContextVar[Callable[[], bool] | None] = contextvars.ContextVar(
    "browser_cancel_probe", default=None
)


@contextlib.contextmanager
def cancellable(probe: Callable[[], bool] | None) -> Iterator[None]:
    token = _cancel_probe.set(probe)
    try:
        yield
    finally:
        _cancel_probe.reset(token)


def _cancelled_error(session_id: str) -> ToolError:
    return ToolError(
        "cancelled",
        f"the call was cancelled; its pending browser step on session {session_id} was abandoned (the session stays "
        "open: check its state with browser.extract)",
        data={"session": session_id},
    )


def _local(session_id: str, op: str, args: dict[str, Any]) -> dict[str, Any]:
    """Run one operation on a session this process owns. Blocks travel back in `blocks`."""

    async def run() -> dict[str, Any]:
        session = runtime.get(session_id)
        async with session.lock:
            try:
                if op == "navigate":
                    result = await pages.navigate(session, args["url"])
                elif op == "act":
                    result = await pages.act(session, args)
                elif op == "extract":
                    result = await pages.extract(session, args)
                elif op == "trace":
                    result = await _trace(session, args["action"])
                elif op == "close":
                    await runtime.session_close(session_id, reason="closed by the caller")
                    return {"session": session_id, "closed": True, "blocks": session.drain_blocks()}
                else:
                    raise ToolError("invalid_arguments", f"unknown browser operation {op!r}")
            except ToolError as exc:
                exc.data.setdefault("blocks", session.drain_blocks())
                raise
            if session.ended:
                raise SessionEnded(session_id, session.ended)
            result["blocks"] = session.drain_blocks()
            return result

    try:
        result = runtime.call(run, timeout=_timeout(), cancelled=_cancel_probe.get())
    except CallCancelled:
        raise _cancelled_error(session_id) from None
    except SessionEnded as exc:
        leases.lease_release(session_id)
        raise ToolError("session_ended", str(exc), data={"session": session_id}) from None
    except TimeoutError:
        raise ToolError(
            "browser_timeout", f"the browser did not answer within {_timeout():.0f} s", retryable=True
        ) from None
    return _store_artifacts(session_id, result)


async def _trace(session: LiveSession, action: str) -> dict[str, Any]:
    import tempfile

    tracing = session.context.tracing
    if action == "start":
        if session.tracing:
            raise ToolError("trace_active", "a trace is already recording for this session: stop it first")
        await tracing.start(screenshots=True, snapshots=True, sources=False)
        session.tracing = True
        return {"session": session.id, "tracing": True}
    if not session.tracing:
        raise ToolError("trace_not_active", "no trace is recording for this session: call action=start first")
    with tempfile.TemporaryDirectory(prefix="mcpplat-trace-") as tmp:
        path = f"{tmp}/trace.zip"
        await tracing.stop(path=path)
        session.tracing = False
        with open(path, "rb") as handle:
            data = handle.read()
    return {"session": session.id, "tracing": False, "trace_zip": data}


def _store_artifacts(session_id: str, result: dict[str, Any]) -> dict[str, Any]:
    """Binary outputs go to artifact storage; the result names where to fetch them."""
    for key, kind, suffix in (("trace_zip", "traces", "zip"), ("screenshot_png", "screenshots", "png")):
        data = result.pop(key, None)
        if data is None:
            continue
        storage = storages["artifacts"]
        stamp = timezone.now().strftime("%Y%m%dT%H%M%S")
        name = storage.save(f"browser/{kind}/{session_id}/{stamp}-{uuid.uuid4().hex[:8]}.{suffix}", ContentFile(data))
        artifact = {
            "storage": "artifacts",
            "name": name,
            "url": storage.url(name),
            "bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
        }
        with contextlib.suppress(NotImplementedError):
            artifact["path"] = storage.path(name)
        result["trace" if kind == "traces" else "screenshot"] = artifact
    return result


# ------------------------------------------------------------------------------------------- routing


def _lease_for(session_id: str, principal: Any) -> leases.Lease:
    lease = leases.lease_get(session_id)
    if lease is None or lease.principal != principal.id:
        raise ToolError(
            "session_not_found",
            f"browser session {session_id!r} does not exist or has expired (idle longer than "
            f"{settings.BROWSER_SESSION_IDLE_S} s): call browser.open without a session to start a new one",
            data={"session": session_id},
        )
    return lease


def _on_owner(session_id: str, principal: Any, op: str, args: dict[str, Any]) -> dict[str, Any]:
    lease = _lease_for(session_id, principal)
    leases.lease_touch(lease)
    if lease.owner == runtime.worker_id:
        result = _local(session_id, op, args)
    elif not leases.worker_alive(lease.owner):
        leases.lease_release(session_id, lease.role)
        raise ToolError(
            "session_lost",
            f"the worker that held browser session {session_id} is gone; the session ended with it: open a new one",
            data={"session": session_id},
        )
    else:
        result = _forward(lease.owner, session_id, op, args)
    if op == "close":
        leases.lease_release(session_id, lease.role)
    return result


def _forward(owner: str, session_id: str, op: str, args: dict[str, Any]) -> dict[str, Any]:
    call_id = uuid.uuid4().hex
    client = leases.client()
    message = {"call": call_id, "session": session_id, "op": op, "args": args, "sent": time.time()}
    client.rpush(leases.inbox_key(owner), json.dumps(message))
    client.expire(leases.inbox_key(owner), 120)
    probe = _cancel_probe.get()
    deadline = time.monotonic() + _timeout() + 5
    answer = None
    while answer is None and time.monotonic() < deadline:
        answer = client.blpop([leases.reply_key(call_id)], timeout=1 if probe is not None else int(_timeout()) + 5)
        if answer is None and probe is not None and probe():
            # The owner finishes the step on its own; its reply expires unread.
            raise _cancelled_error(session_id)
    if answer is None:
        raise ToolError(
            "browser_timeout", f"the worker holding session {session_id} did not answer in time", retryable=True
        )
    reply = json.loads(answer[1])
    if "error" in reply:
        error = reply["error"]
        raise ToolError(
            error["code"], error["message"], data=error.get("data"), retryable=error.get("retryable", False)
        )
    return reply["result"]


def _answer(raw: str) -> None:
    """Owner side of `_forward`: run the call locally and push the answer."""
    message = json.loads(raw)
    try:
        reply: dict[str, Any] = {"result": _local(message["session"], message["op"], message["args"])}
    except ToolError as exc:
        reply = {"error": {"code": exc.code, "message": exc.message, "data": exc.data, "retryable": exc.retryable}}
    except Exception as exc:
        log.exception("routed browser call failed")
        reply = {"error": {"code": "browser_error", "message": f"the browser call failed: {exc}"}}
    client = leases.client()
    client.rpush(leases.reply_key(message["call"]), json.dumps(reply, default=str))
    client.expire(leases.reply_key(message["call"]), 60)


class _Housekeeper:
    """Per-process thread: heartbeat, the routed-call inbox, and closing local sessions whose lease is gone."""

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="browser-inbox")
        self._lock = threading.Lock()
        self.stopping = threading.Event()

    def ensure(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                # Announce this worker before returning: a session leased right after ensure() must already
                # point at a live owner, or a router on another process would declare it lost.
                leases.worker_heartbeat(runtime.worker_id, len(runtime.sessions))
                self.stopping.clear()
                self._thread = threading.Thread(target=self._run, name="browser-housekeeper", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        last_sweep = 0.0
        while not self.stopping.is_set():
            try:
                leases.worker_heartbeat(runtime.worker_id, len(runtime.sessions))
                item = leases.client().blpop([leases.inbox_key(runtime.worker_id)], timeout=2)
                if item is not None:
                    self._pool.submit(_answer, leases.text_of(item[1]))
                if time.monotonic() - last_sweep > 5:
                    last_sweep = time.monotonic()
                    sessions_sweep_local()
            except Exception as exc:  # noqa: BLE001 - Redis restarting, a closed connection at exit: keep going
                log.warning("browser housekeeping failed (%s); retrying", exc)
                self.stopping.wait(1)

    def stop(self) -> None:
        self.stopping.set()
        if self._thread is not None:
            self._thread.join(5)


housekeeper = _Housekeeper()


def sessions_sweep_local() -> list[str]:
    """Close contexts in this process whose lease expired (idle) or was released elsewhere."""
    closed = []
    for session_id in list(runtime.sessions):
        if not leases.lease_exists(session_id):
            _close_quietly(session_id, "idle timeout")
            closed.append(session_id)
    return closed


def _close_quietly(session_id: str, reason: str) -> None:
    async def close() -> bool:
        return await runtime.session_close(session_id, reason=reason)

    try:
        runtime.call(close, timeout=15)
    except Exception as exc:  # noqa: BLE001 - the session is gone either way; say why it did not close cleanly
        log.warning("closing browser session %s failed: %s", session_id, exc)


def sessions_reap() -> dict[str, int]:
    """Maintenance: drop index entries of expired leases and leases whose owner worker died (orphans)."""
    expired = orphaned = 0
    for role in leases.roles_indexed():
        for session_id in leases.role_sessions(role):
            lease = leases.lease_get(session_id)
            if lease is None:
                leases.lease_release(session_id, role)
                expired += 1
            elif not leases.worker_alive(lease.owner):
                leases.lease_release(session_id, role)
                orphaned += 1
    return {"expired": expired, "orphaned": orphaned}


# ------------------------------------------------------------------------------------------- services


def _checked_url(policy: DomainPolicy, url: str, *, principal: Any, session_id: str, job_id: str | None) -> str:
    """Refuse a bad or blocked URL before the browser is touched (no connection is made for it)."""
    try:
        target = parse_target(url)
        if target.scheme not in ("http", "https"):
            raise PolicyError("scheme_blocked", f"the {target.scheme}: scheme cannot be opened as a page", url=url)
        runtime.call(lambda: resolve_checked(policy, target, runtime.resolver), timeout=30)
    except PolicyError as block:
        if block.reason == "invalid_url":
            raise ToolError("invalid_url", f"url: {block.detail}", data={"field": "url"}) from None
        _record_blocks(
            principal=principal, tool="browser.open", session_id=session_id, blocks=[block.as_dict()], job_id=job_id
        )
        raise ToolError("url_blocked", f"url: {block.detail}", data={"url": url, "blocks": [block.as_dict()]}) from None
    return url


def browser_open(
    *, principal: Any, url: str, session_id: str | None = None, job_id: str | None = None
) -> dict[str, Any]:
    policy = policy_for(principal)
    _checked_url(policy, url, principal=principal, session_id=session_id or "", job_id=job_id)
    if session_id:
        return _session_call(principal, "browser.open", session_id, "navigate", {"url": url}, job_id=job_id)
    housekeeper.ensure()
    new_id = uuid.uuid4().hex
    role = policy.name
    if not leases.lease_acquire(
        session_id=new_id, owner=runtime.worker_id, principal=principal.id, role=role, cap=policy.max_sessions
    ):
        raise ToolError(
            "session_limit",
            f"role policy {role!r} already holds its {policy.max_sessions} browser sessions: close one "
            "(browser.act action=close… or let it idle out) and try again",
            data={"limit": policy.max_sessions},
            retryable=True,
        )
    try:
        runtime.call(
            lambda: runtime.session_start(session_id=new_id, principal_id=principal.id, policy=policy), timeout=60
        )
    except BrowserUnavailable as exc:
        leases.lease_release(new_id, role)
        raise ToolError("browser_unavailable", str(exc), retryable=True) from None
    except BaseException:
        leases.lease_release(new_id, role)
        raise
    try:
        return _with_blocks(principal, "browser.open", new_id, job_id, lambda: _local(new_id, "navigate", {"url": url}))
    except ToolError:
        # A session that never showed a page is not handed out: close it rather than leak it.
        _close_quietly(new_id, "first navigation failed")
        leases.lease_release(new_id, role)
        raise


def _with_blocks(
    principal: Any, tool: str, session_id: str, job_id: str | None, call: Callable[[], dict[str, Any]]
) -> dict[str, Any]:
    try:
        result = call()
    except ToolError as exc:
        if blocks := exc.data.get("blocks"):
            _record_blocks(principal=principal, tool=tool, session_id=session_id, blocks=blocks, job_id=job_id)
        raise
    if blocks := result.get("blocks"):
        _record_blocks(principal=principal, tool=tool, session_id=session_id, blocks=blocks, job_id=job_id)
    return result


def _session_call(
    principal: Any, tool: str, session_id: str, op: str, args: dict[str, Any], *, job_id: str | None
) -> dict[str, Any]:
    return _with_blocks(principal, tool, session_id, job_id, lambda: _on_owner(session_id, principal, op, args))


def browser_act(*, principal: Any, session_id: str, args: dict[str, Any], job_id: str | None = None) -> dict[str, Any]:
    op = "close" if args.get("action") == "close" else "act"
    return _session_call(principal, "browser.act", session_id, op, args, job_id=job_id)


def browser_extract(
    *, principal: Any, session_id: str, args: dict[str, Any], job_id: str | None = None
) -> dict[str, Any]:
    if "structured" in args:  # refuse a schema that points outside itself before the session is touched
        pages.structured_validator(args["structured"].get("schema") or {})
    return _session_call(principal, "browser.extract", session_id, "extract", args, job_id=job_id)


def browser_trace(*, principal: Any, session_id: str, action: str, job_id: str | None = None) -> dict[str, Any]:
    return _session_call(principal, "browser.trace", session_id, "trace", {"action": action}, job_id=job_id)


def browser_close(*, principal: Any, session_id: str) -> dict[str, Any]:
    return _on_owner(session_id, principal, "close", {})
