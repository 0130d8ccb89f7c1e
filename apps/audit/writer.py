"""Append audit events durably, in one hash chain, fast enough for the gateway's hot path.

`audit_record(event)` (async) returns once the row is committed. Group commit: one writer task per event loop
owns an async psycopg connection; while it writes a batch, new events queue up and go in the next transaction
(up to AUDIT_BATCH_MAX rows; under load it lingers AUDIT_BATCH_WAIT_MS to fill a batch, idle it writes at once).
Each transaction takes a PostgreSQL advisory lock, reads the chain head and appends, so every gateway and worker
process extends the same chain. `audit_record_sync` does the same on Django's connection, for sync code.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import orjson
import psycopg
from django.conf import settings
from django.db import connections, transaction

from apps.audit.chain import CHAIN_LOCK_KEY, COLUMNS, GENESIS_HASH, canonical_json, keyed_digest, row_hash
from apps.audit.models import AuditEvent, AuditOutbox, Outcome
from apps.audit.redaction import redact
from apps.common import outages

log = logging.getLogger(__name__)

OUTCOMES = frozenset(Outcome.values)
_MAX_ARGUMENTS_CHARS = 16_000


@dataclass(frozen=True, kw_only=True, slots=True)
class AuditRecord:
    """One thing that happened. `arguments` is the call's input as received: the writer redacts it."""

    principal_id: str | None = None
    identity_source: str | None = None
    credential_id: str | None = None
    method: str
    tool: str | None = None
    arguments: Mapping[str, Any] | None = None
    outcome: str
    error_code: str | None = None
    latency_ms: float | None = None
    request_id: str | None = None
    trace_id: str | None = None
    session_id: str | None = None
    client_host: str | None = None
    protocol_version: str | None = None
    run_id: str | None = None
    job_id: str | None = None
    detail: Any = None

    @classmethod
    def for_principal(cls, principal: Any, **values: Any) -> AuditRecord:
        """A record naming `principal` (an apps.accounts Principal) as the actor."""
        return cls(
            principal_id=principal.id,
            identity_source=principal.identity_source,
            credential_id=principal.credential_id,
            **values,
        )


class AuditWriteError(RuntimeError):
    """The event could not be made durable: the caller must not report success."""


_TEXT_FIELDS = tuple(
    f.name for f in fields(AuditRecord) if f.name not in {"arguments", "detail", "latency_ms", "outcome"}
)
_MAX_LENGTHS: dict[str, int] = {
    f.name: f.max_length for f in AuditEvent._meta.concrete_fields if f.max_length is not None
}


def _text(name: str, value: Any) -> str:
    if value is None:
        return ""
    text = value if type(value) is str else str(value)
    if "\x00" in text:
        text = text.replace("\x00", "")
    limit = _MAX_LENGTHS.get(name)
    return text[:limit] if limit is not None and len(text) > limit else text


def prepare(record: AuditRecord, *, created_at: datetime | None = None) -> dict[str, Any]:
    """The row's values except sequence, prev_hash and hash (those are set under the chain lock)."""
    if record.outcome not in OUTCOMES:
        raise ValueError(f"AuditRecord.outcome={record.outcome!r}: use one of {', '.join(sorted(OUTCOMES))}")
    if not record.method:
        raise ValueError("AuditRecord.method is required (the MCP method or the service action, e.g. 'tools/call')")
    arguments = ""
    digest = ""
    if record.arguments is not None:
        digest = keyed_digest(canonical_json(record.arguments))
        arguments = canonical_json(redact(record.arguments))
        if len(arguments) > _MAX_ARGUMENTS_CHARS:
            keys = sorted(str(k) for k in record.arguments)[:50] if isinstance(record.arguments, Mapping) else []
            arguments = canonical_json({"[truncated]": f"{len(arguments)} characters", "keys": keys})
    latency = None if record.latency_ms is None else round(float(record.latency_ms), 3)
    row: dict[str, Any] = {
        "created_at": created_at or datetime.now(UTC),
        "arguments": arguments,
        "arguments_digest": digest,
        "latency_ms": latency,
        "outcome": record.outcome,
        "detail": "" if record.detail in (None, "", {}) else canonical_json(redact(record.detail)),
    }
    for name in _TEXT_FIELDS:
        row[name] = _text(name, getattr(record, name))
    return row


def _chain(rows: Sequence[dict[str, Any]], head: tuple[int, str] | None) -> list[dict[str, Any]]:
    sequence, prev_hash = head if head is not None else (0, GENESIS_HASH)
    chained = []
    for values in rows:
        sequence += 1
        row = {**values, "sequence": sequence, "prev_hash": prev_hash}
        row["hash"] = prev_hash = row_hash(row)
        chained.append(row)
    return chained


_TABLE = AuditEvent._meta.db_table
_HEAD_SQL = f"SELECT sequence, hash FROM {_TABLE} ORDER BY sequence DESC LIMIT 1"  # noqa: S608
_ALL_COLUMNS = (*COLUMNS, "hash")


def _insert_sql(count: int) -> str:
    row = "(" + ", ".join(["%s"] * len(_ALL_COLUMNS)) + ")"
    return f"INSERT INTO {_TABLE} ({', '.join(_ALL_COLUMNS)}) VALUES " + ", ".join([row] * count)  # noqa: S608


def _params(rows: Sequence[dict[str, Any]]) -> list[Any]:
    return [row[name] for row in rows for name in _ALL_COLUMNS]


# ---------------------------------------------------------------------------------------------- sync


def audit_record_sync(record: AuditRecord) -> AuditEvent:
    """Append one event on Django's connection (inside the caller's transaction, if there is one)."""
    rows = [prepare(record)]
    with transaction.atomic(), connections["default"].cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [CHAIN_LOCK_KEY])
        cursor.execute(_HEAD_SQL)
        head = cursor.fetchone()
        chained = _chain(rows, head)
        cursor.execute(_insert_sql(len(chained)), _params(chained))
    return AuditEvent(**chained[0])


def audit_record_on_commit(record: AuditRecord) -> None:
    """Append `record` once the caller's transaction commits; a record that could not be written fails it now.

    `prepare` (serialization, redaction, digest) runs inside the transaction, so a change whose event cannot be
    recorded is rolled back instead of committed without its row; the write after commit only needs the database.
    """
    prepare(record)
    transaction.on_commit(partial(audit_record_sync, record))


# -------------------------------------------------------------------------------------------- outbox


def audit_record_outbox(record: AuditRecord) -> None:
    """Make `record` durable in the caller's transaction without taking the chain lock there: one INSERT into the
    outbox. It enters the chain (with its own created_at) in a batch shortly after commit (`audit_outbox_drain` on this
    process's drain thread), or at the next runs sweep if this process dies first. For hot paths that must not
    serialize on the chain (a queued call's acceptance and end)."""
    row = prepare(record)
    created_at = row["created_at"]
    row["created_at"] = created_at.isoformat()
    with connections["default"].cursor() as cursor:
        cursor.execute(_OUTBOX_INSERT_SQL, [orjson.dumps(row).decode(), created_at])
    transaction.on_commit(_drainer.kick)


_TABLE_OUTBOX = AuditOutbox._meta.db_table
_OUTBOX_INSERT_SQL = f"INSERT INTO {_TABLE_OUTBOX} (row, created_at) VALUES (%s::jsonb, %s)"  # noqa: S608
_OUTBOX_SELECT_SQL = (
    f"SELECT id, row FROM {_TABLE_OUTBOX} WHERE created_at <= %s ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED"  # noqa: S608
)
_OUTBOX_DELETE_SQL = f"DELETE FROM {_TABLE_OUTBOX} WHERE id = ANY(%s)"  # noqa: S608


def audit_outbox_drain(*, limit: int = 500, older_than_s: float = 0) -> int:
    """Move up to `limit` outbox rows (written at least `older_than_s` ago) into the chain, oldest first, in one
    transaction; the number moved. Concurrent drainers take different rows (SKIP LOCKED) and then queue on the chain
    lock like any writer."""
    cutoff = datetime.now(UTC) - timedelta(seconds=older_than_s)
    with transaction.atomic(), connections["default"].cursor() as cursor:
        cursor.execute(_OUTBOX_SELECT_SQL, [cutoff, limit])
        taken = cursor.fetchall()
        if not taken:
            return 0
        rows = []
        for _, stored in taken:
            row = stored if isinstance(stored, dict) else orjson.loads(stored)
            rows.append({**row, "created_at": datetime.fromisoformat(row["created_at"])})
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [CHAIN_LOCK_KEY])
        cursor.execute(_HEAD_SQL)
        chained = _chain(rows, cursor.fetchone())
        cursor.execute(_insert_sql(len(chained)), _params(chained))
        cursor.execute(_OUTBOX_DELETE_SQL, [[pk for pk, _ in taken]])
    return len(taken)


class _Drainer:
    """One daemon thread per process that drains the outbox when kicked. It lingers AUDIT_BATCH_WAIT_MS after a kick (at
    least 20 ms) so the kicks of that time share one chain transaction: a drain per call costs every queued call a
    chain-lock round trip and its process's GIL (measured: +1.5 ms p50). The rows are durable meanwhile."""

    def __init__(self) -> None:
        self.wake = threading.Event()
        self.lock = threading.Lock()
        self.thread: threading.Thread | None = None

    def kick(self) -> None:
        self.wake.set()
        if self.thread is None or not self.thread.is_alive():
            with self.lock:
                if self.thread is None or not self.thread.is_alive():
                    self.thread = threading.Thread(target=self._run, name="audit-outbox", daemon=True)
                    self.thread.start()

    def _run(self) -> None:
        while True:
            self.wake.wait()
            time.sleep(max(0.02, settings.AUDIT_BATCH_WAIT_MS / 1000))
            self.wake.clear()
            try:
                while audit_outbox_drain() > 0:
                    pass
            except Exception:
                log.exception("audit: draining the outbox failed; the runs sweep moves what is left")
            finally:
                connections.close_all()  # hold no connection while idle (test databases, restarts)


_drainer = _Drainer()


# --------------------------------------------------------------------------------------------- async


def _connection_params() -> dict[str, Any]:
    params = connections["default"].get_connection_params()
    return {
        k: v
        for k, v in params.items()
        if k in {"dbname", "user", "password", "host", "port", "sslmode", "sslrootcert", "sslcert", "sslkey", "options"}
    }


class _GroupWriter:
    """The one writer task of an event loop and its connection."""

    def __init__(self) -> None:
        self.pending: list[tuple[dict[str, Any], asyncio.Future[None]]] = []
        self.task: asyncio.Task[None] | None = None
        self.connection: psycopg.AsyncConnection[Any] | None = None
        self.last_batch = 0

    def submit(self, row: dict[str, Any]) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.pending.append((row, future))
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._drain(), name="audit-group-commit")
        return future

    async def _drain(self) -> None:
        limit = max(1, settings.AUDIT_BATCH_MAX)
        linger = settings.AUDIT_BATCH_WAIT_MS / 1000
        while self.pending:
            if self.last_batch > 1 and len(self.pending) < limit and linger > 0:
                await asyncio.sleep(linger)  # under load: let the batch fill
            else:
                await asyncio.sleep(0)  # let callers scheduled in this same tick join
            batch, self.pending = self.pending[:limit], self.pending[limit:]
            self.last_batch = len(batch)
            try:
                await self._write([row for row, _ in batch])
            except Exception as exc:
                if (dependency := outages.dependency_of(exc)) is not None:
                    outages.log_outage(dependency, exc, f"audit group commit of {len(batch)} events")
                else:
                    log.exception("audit: a group commit of %d events failed", len(batch))
                await self._reset()
                error = AuditWriteError(f"audit trail unavailable ({type(exc).__name__}: {exc}); event not recorded")
                error.__cause__ = exc  # apps.common.outages tells a database outage by the cause
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error)
            else:
                for _, future in batch:
                    if not future.done():
                        future.set_result(None)

    async def _write(self, rows: list[dict[str, Any]]) -> None:
        reused = self.connection is not None and not self.connection.closed
        if self.connection is None or self.connection.closed:
            self.connection = await psycopg.AsyncConnection.connect(
                **_connection_params(), autocommit=False, connect_timeout=max(1, round(settings.DB_TIMEOUT_S))
            )
        connection = self.connection
        inserting = False
        try:
            async with connection.transaction(), connection.cursor() as cursor:
                await cursor.execute("SELECT pg_advisory_xact_lock(%s)", [CHAIN_LOCK_KEY])
                await cursor.execute(_HEAD_SQL)
                head = await cursor.fetchone()
                chained = _chain(rows, head)
                inserting = True
                await cursor.execute(_insert_sql(len(chained)), _params(chained))
        except psycopg.OperationalError:
            if not reused or inserting:
                raise  # a new connection that fails, or a failure once the insert was sent: not retried (no dupes)
            # The kept connection was closed under us (a PostgreSQL restart) before anything was written:
            # connect again and write the batch once on the new connection.
            await self._reset()
            await self._write(rows)

    async def _reset(self) -> None:
        if self.connection is not None:
            try:
                await self.connection.close()
            except Exception:
                log.warning("audit: closing a broken connection failed", exc_info=True)
        self.connection = None

    async def close(self) -> None:
        while self.task is not None and not self.task.done():
            await asyncio.shield(self.task)
        await self._reset()


_writers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _GroupWriter] = weakref.WeakKeyDictionary()


def _writer() -> _GroupWriter:
    loop = asyncio.get_running_loop()
    writer = _writers.get(loop)
    if writer is None:
        writer = _writers[loop] = _GroupWriter()
    return writer


async def audit_record(event: AuditRecord) -> None:
    """Append `event` to the audit chain; returns once it is committed. Raises AuditWriteError if it is not."""
    row = prepare(event)
    future = _writer().submit(row)
    await asyncio.shield(future)  # a cancelled caller does not cancel the write others share


async def audit_writer_close() -> None:
    """Finish queued writes and close this loop's connection (server shutdown, end of a test)."""
    writer = _writers.pop(asyncio.get_running_loop(), None)
    if writer is not None:
        await writer.close()


def monotonic_ms(started: float) -> float:
    """Latency helper for callers: milliseconds since `started` (a time.perf_counter() value)."""
    return (time.perf_counter() - started) * 1000
