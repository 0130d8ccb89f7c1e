"""Complete settings, read from the environment only (mcpplat/env.py declares every variable)."""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

from mcpplat import embedded, env

BASE_DIR = Path(__file__).resolve().parent.parent.parent
MCPPLAT_ENV = env.get_str("MCPPLAT_ENV")
if MCPPLAT_ENV not in {"development", "test", "production"}:
    raise ImproperlyConfigured(f"MCPPLAT_ENV={MCPPLAT_ENV!r}: use development, test or production")
PRODUCTION = MCPPLAT_ENV == "production"
if PRODUCTION and (missing := env.missing_for_production()):
    raise ImproperlyConfigured(
        f"production mode needs {', '.join(missing)}: set {'it' if len(missing) == 1 else 'them'} in the "
        "environment (see the configuration table in README.md)"
    )

VAR_PATHS = embedded.paths(env.get_str("VAR_DIR"))
VAR_DIR = VAR_PATHS.var


def _dev_secret_key() -> str:
    """A per-checkout key kept under var/, so sessions survive restarts without anyone choosing one."""
    path = VAR_DIR / "secret_key"
    if not path.exists():
        VAR_DIR.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = env.get("SECRET_KEY") or _dev_secret_key()
DEBUG = env.get_bool("DEBUG")
ALLOWED_HOSTS = env.get_list("ALLOWED_HOSTS")
CSRF_TRUSTED_ORIGINS = env.get_list("CSRF_TRUSTED_ORIGINS")

# ------------------------------------------------------------------------------------- applications
INSTALLED_APPS = [
    "daphne",
    "django_dramatiq",  # before our apps: it configures the broker our actors bind to
    "apps.accounts.admin_apps.PlatformAdminConfig",  # the OTP admin site instead of django.contrib.admin
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
    "rest_framework",
    "drf_spectacular",
    "channels",
    "apps.common",
    "apps.accounts",
    "apps.gateway",
    # -- apps added by capability work go below, one line each --
    "apps.sandbox",
    "apps.audit",
    "apps.browser",
    "apps.runs",
    "apps.support",
    "apps.tasks",
    "apps.memory",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "mcpplat.urls"
ASGI_APPLICATION = "mcpplat.asgi.application"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# -------------------------------------------------------------------------------------------- data


def _database_from_url(url: str) -> dict[str, object]:
    parts = urlsplit(url)
    if parts.scheme not in {"postgres", "postgresql"} or not parts.path.strip("/"):
        raise ImproperlyConfigured(
            f"DATABASE_URL: cannot use {parts.scheme or url!r}: expected postgres://user:password@host:5432/name"
        )
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    try:
        port = str(parts.port or 5432)
    except ValueError:
        raise ImproperlyConfigured("DATABASE_URL: the port is not a number") from None
    return {
        "HOST": unquote(parts.hostname or ""),
        "PORT": port,
        "NAME": unquote(parts.path.lstrip("/")),
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "OPTIONS_EXTRA": query,
    }


USE_EMBEDDED_DB = not env.is_set("DATABASE_URL")
USE_EMBEDDED_REDIS = not env.is_set("REDIS_URL")
_management_only = len(sys.argv) > 1 and sys.argv[1] in {"embedded", "help", "env_table"}
if (USE_EMBEDDED_DB or USE_EMBEDDED_REDIS) and not _management_only:
    try:
        embedded.ensure_started(VAR_PATHS, postgres=USE_EMBEDDED_DB, redis=USE_EMBEDDED_REDIS)
    except embedded.EmbeddedError as exc:
        raise ImproperlyConfigured(str(exc)) from None

_db = embedded.database_settings(VAR_PATHS) if USE_EMBEDDED_DB else _database_from_url(env.get_str("DATABASE_URL"))
DB_TIMEOUT_S = env.get_float("DB_TIMEOUT_S")
OUTAGE_RETRY_AFTER_S = env.get_int("OUTAGE_RETRY_AFTER_S")
_db_extra = dict(_db.pop("OPTIONS_EXTRA", {}) or {})  # type: ignore[call-overload]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        **_db,
        "CONN_MAX_AGE": 0,  # the pool keeps connections; Django's persistent connections are wrong under ASGI
        # With the pool this is psycopg's check at checkout: a connection broken by a PostgreSQL restart is
        # discarded instead of handed to the next call (apps.common.db, docs/reliability.md).
        "CONN_HEALTH_CHECKS": True,
        "OPTIONS": {
            "connect_timeout": max(1, round(DB_TIMEOUT_S)),
            **_db_extra,
            "pool": {
                "min_size": 1,
                "max_size": env.get_int("DB_POOL_MAX_SIZE"),
                "timeout": DB_TIMEOUT_S,
            },
        },
        "TEST": {"NAME": "test_mcpplat"},
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = embedded.redis_url(VAR_PATHS) if USE_EMBEDDED_REDIS else env.get_str("REDIS_URL")
DRAMATIQ_BROKER_URL = env.get("DRAMATIQ_BROKER_URL") or REDIS_URL

_broker_scheme = urlsplit(DRAMATIQ_BROKER_URL).scheme
if _broker_scheme in {"redis", "rediss", "unix"}:
    _broker_class = "apps.runs.broker.WakingRedisBroker"  # Dramatiq's RedisBroker + push wake-ups (docs/queues.md)
elif _broker_scheme in {"amqp", "amqps"}:
    _broker_class = "dramatiq.brokers.rabbitmq.RabbitmqBroker"
else:
    raise ImproperlyConfigured(
        f"DRAMATIQ_BROKER_URL: unsupported scheme {_broker_scheme!r}: use redis://, rediss://, unix:// or amqp://"
    )
DRAMATIQ_BROKER = {
    "BROKER": _broker_class,
    "OPTIONS": {"url": DRAMATIQ_BROKER_URL},
    "MIDDLEWARE": [
        "dramatiq.middleware.AgeLimit",
        "dramatiq.middleware.TimeLimit",
        "dramatiq.middleware.Callbacks",
        "dramatiq.middleware.Pipelines",
        "dramatiq.middleware.Retries",
        "django_dramatiq.middleware.DbConnectionsMiddleware",
        "apps.memory.middleware.EmbeddingWarmup",
    ],
}
DRAMATIQ_AUTODISCOVER_MODULES = ["actors"]
# One queue per capability (docs/queues.md); `make run` starts a worker pool for each.
DRAMATIQ_QUEUES = ["default", "browser", "sandbox", "memory", "maintenance"]

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": [REDIS_URL], "prefix": "mcpplat:channels"},
    }
}
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 5},  # an outage answers 503, never hangs
    }
}

# ------------------------------------------------------------------------------------- auth & admin
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "admin:login"
OTP_TOTP_ISSUER = "mcpplat"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = PRODUCTION
CSRF_COOKIE_SECURE = PRODUCTION
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.CursorPagination",
    "PAGE_SIZE": 50,
}
SPECTACULAR_SETTINGS = {"TITLE": "mcpplat API", "VERSION": "0.1.0", "SERVE_INCLUDE_SCHEMA": False}


# ------------------------------------------------- identity, authorization and audit (apps/accounts, apps/audit)
def _public_base_url() -> str:
    bind = env.get_str("BIND")
    url = env.get("PUBLIC_BASE_URL") or f"http://{'[' + bind + ']' if ':' in bind else bind}:{env.get_int('PORT')}"
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.netloc or parts.path.strip("/") or parts.query:
        raise ImproperlyConfigured(
            f"PUBLIC_BASE_URL={url!r}: give the origin clients use, e.g. https://mcp.example.com (no path)"
        )
    return url.rstrip("/")


PUBLIC_BASE_URL = _public_base_url()
MCP_RESOURCE_URL = f"{PUBLIC_BASE_URL}/mcp"
TOKEN_CACHE_SECONDS = env.get_int("TOKEN_CACHE_SECONDS")
OAUTH_ISSUER = env.get("OAUTH_ISSUER")
OAUTH_AUDIENCE = env.get("OAUTH_AUDIENCE") or MCP_RESOURCE_URL
OAUTH_JWKS_URL = env.get("OAUTH_JWKS_URL")
if OAUTH_ISSUER and not OAUTH_JWKS_URL:
    raise ImproperlyConfigured("OAUTH_ISSUER is set but OAUTH_JWKS_URL is not: give the issuer's JWKS URL or file")
if (
    OAUTH_JWKS_URL
    and OAUTH_JWKS_URL.startswith("http://")
    and (urlsplit(OAUTH_JWKS_URL).hostname or "")
    not in {
        "127.0.0.1",
        "localhost",
        "::1",
    }
):
    raise ImproperlyConfigured("OAUTH_JWKS_URL: fetch signing keys over https:// (plain http only on loopback)")
OAUTH_JWKS_CACHE_SECONDS = env.get_int("OAUTH_JWKS_CACHE_SECONDS")
OAUTH_ALGORITHMS = env.get_list("OAUTH_ALGORITHMS")
if _bad_algs := [a for a in OAUTH_ALGORITHMS if a.lower() == "none" or a.upper().startswith("HS")]:
    raise ImproperlyConfigured(f"OAUTH_ALGORITHMS: {', '.join(_bad_algs)} not allowed; use RS256, ES256, EdDSA, …")
OAUTH_REQUIRED_SCOPES = env.get_list("OAUTH_REQUIRED_SCOPES")
OAUTH_USER_CLAIM = env.get_str("OAUTH_USER_CLAIM")
OAUTH_DEFAULT_ROLE = env.get("OAUTH_DEFAULT_ROLE") or None
TAILNET_TRUSTED_PROXIES = env.get_list("TAILNET_TRUSTED_PROXIES")
TAILNET_ALLOWED_LOGINS = env.get_list("TAILNET_ALLOWED_LOGINS")
TAILSCALE_LOCALAPI_SOCKET = env.get("TAILSCALE_LOCALAPI_SOCKET") or ""
AUDIT_SIGNING_KEY = env.get("AUDIT_SIGNING_KEY") or ""  # empty: apps.audit derives one from SECRET_KEY
AUDIT_BATCH_MAX = env.get_int("AUDIT_BATCH_MAX")
AUDIT_BATCH_WAIT_MS = env.get_int("AUDIT_BATCH_WAIT_MS")
# ------------------------------------------------------------------- end identity, authorization and audit

# -- tasks: self-hosted Swagger UI / Redoc for /api/docs/ (no CDN at run time) --
INSTALLED_APPS.append("drf_spectacular_sidecar")
SPECTACULAR_SETTINGS |= {"SWAGGER_UI_DIST": "SIDECAR", "SWAGGER_UI_FAVICON_HREF": "SIDECAR", "REDOC_DIST": "SIDECAR"}

# -------------------------------------------------------------------------------------- i18n/static
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "static"

# ------------------------------------------------------------------------------------ observability
LOG_LEVEL = env.get_str("LOG_LEVEL").upper()
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "text": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "mcpplat.logging.JsonFormatter"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": env.get_str("LOG_FORMAT")}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {"django.db.backends": {"level": "INFO"}},
}
if env.get_str("LOG_FORMAT") not in {"text", "json"}:
    raise ImproperlyConfigured(f"LOG_FORMAT={env.get_str('LOG_FORMAT')!r}: use text or json")

if SENTRY_DSN := env.get("SENTRY_DSN"):
    # Before django_dramatiq builds the broker: the Dramatiq integration patches Broker.__init__.
    import sentry_sdk
    from sentry_sdk.integrations.django import DjangoIntegration
    from sentry_sdk.integrations.dramatiq import DramatiqIntegration

    sentry_sdk.init(
        dsn=SENTRY_DSN,
        environment=MCPPLAT_ENV,
        integrations=[DjangoIntegration(), DramatiqIntegration()],
        send_default_pii=False,
    )

# ------------------------------------------------------------------------------------------ sandbox
# apps/sandbox: Docker Engine runtime. Limits are the defaults a sandbox gets; SANDBOX_QUOTAS caps them per role.
DOCKER_HOST = env.get_str("DOCKER_HOST")
SANDBOX_RUNTIME = env.get_str("SANDBOX_RUNTIME")
SANDBOX_SCOPE = env.get("SANDBOX_SCOPE") or ""  # unset: apps.common.deployment.sandbox_scope()
if SANDBOX_RUNTIME not in {"runc", "runsc"}:
    raise ImproperlyConfigured(f"SANDBOX_RUNTIME={SANDBOX_RUNTIME!r}: use runc or runsc")
SANDBOX_DEFAULT_IMAGE = env.get_str("SANDBOX_DEFAULT_IMAGE")
SANDBOX_IMAGE_ALLOWLIST = env.get_list("SANDBOX_IMAGE_ALLOWLIST")
SANDBOX_DEFAULT_LIMITS = {
    "memory_mb": env.get_int("SANDBOX_DEFAULT_MEMORY_MB"),
    "cpus": float(env.get_str("SANDBOX_DEFAULT_CPUS")),
    "pids": env.get_int("SANDBOX_DEFAULT_PIDS"),
    "disk_mb": env.get_int("SANDBOX_DEFAULT_DISK_MB"),
}
SANDBOX_DEFAULT_TTL_S = env.get_int("SANDBOX_DEFAULT_TTL_S")
SANDBOX_DEFAULT_IDLE_TTL_S = env.get_int("SANDBOX_DEFAULT_IDLE_TTL_S")
SANDBOX_EXEC_TIMEOUT_S = env.get_int("SANDBOX_EXEC_TIMEOUT_S")
SANDBOX_OUTPUT_LIMIT_BYTES = env.get_int("SANDBOX_OUTPUT_LIMIT_BYTES")
SANDBOX_POOL_SIZE = env.get_int("SANDBOX_POOL_SIZE")
SANDBOX_QUOTAS_JSON = env.get("SANDBOX_QUOTAS") or ""

# Artifact storage shared by capabilities (sandbox snapshots, browser traces): filesystem unless a bucket is set.
if env.is_set("ARTIFACTS_S3_BUCKET"):
    _artifacts = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": env.get_str("ARTIFACTS_S3_BUCKET"),
            "endpoint_url": env.get("ARTIFACTS_S3_ENDPOINT_URL"),
            "access_key": env.get("ARTIFACTS_S3_ACCESS_KEY_ID"),
            "secret_key": env.get("ARTIFACTS_S3_SECRET_ACCESS_KEY"),
            "file_overwrite": False,
        },
    }
else:
    _artifacts = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(VAR_DIR / "artifacts"), "base_url": "/artifacts/"},
    }
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    "artifacts": _artifacts,
}
# ------------------------------------------------------------------------------------- end sandbox


# ------------------------------------------------------------------------------- browser (apps.browser)
BROWSER_EXECUTABLE = env.get_str("BROWSER_EXECUTABLE")
BROWSER_SESSION_IDLE_S = env.get_int("BROWSER_SESSION_IDLE_S")
BROWSER_MAX_SESSIONS_PER_ROLE = env.get_int("BROWSER_MAX_SESSIONS_PER_ROLE")
BROWSER_DEFAULT_ALLOW = env.get_list("BROWSER_DEFAULT_ALLOW")
BROWSER_DEFAULT_DENY = env.get_list("BROWSER_DEFAULT_DENY")
BROWSER_WARM_CONTEXTS = env.get_int("BROWSER_WARM_CONTEXTS")
BROWSER_NAVIGATION_TIMEOUT_MS = env.get_int("BROWSER_NAVIGATION_TIMEOUT_MS")
BROWSER_ACTION_TIMEOUT_MS = env.get_int("BROWSER_ACTION_TIMEOUT_MS")
BROWSER_SNAPSHOT_MAX_CHARS = env.get_int("BROWSER_SNAPSHOT_MAX_CHARS")
# Artifact storage (traces, screenshots): the shared STORAGES["artifacts"] of the sandbox block above.
# --------------------------------------------------------------------------------- gateway (/mcp)
MCP_ALLOWED_ORIGINS = env.get_list("MCP_ALLOWED_ORIGINS")
MCP_CORS_ORIGINS = env.get_list("MCP_CORS_ORIGINS")
MCP_MAX_BODY_BYTES = env.get_int("MCP_MAX_BODY_BYTES")
MCP_RATE_LIMIT_TOOL = env.get_str("MCP_RATE_LIMIT_TOOL")
MCP_AUTH_FAILURES_PER_MINUTE = env.get_int("MCP_AUTH_FAILURES_PER_MINUTE")
AUTH_FAILURE_CACHE_S = env.get_float("AUTH_FAILURE_CACHE_S")
MCP_IDEMPOTENCY_TTL_S = env.get_int("MCP_IDEMPOTENCY_TTL_S")
MCP_SESSION_TTL_S = env.get_int("MCP_SESSION_TTL_S")
MCP_SSE_KEEPALIVE_S = env.get_int("MCP_SSE_KEEPALIVE_S")
MCP_SSE_AFTER_MS = env.get_int("MCP_SSE_AFTER_MS")
MCP_PAGE_SIZE = env.get_int("MCP_PAGE_SIZE")
# Not env vars on purpose: code paths, switched only by a settings module (tests, the conformance profile).
MCP_AUTHENTICATOR = "apps.accounts.identity"  # module providing `authenticate` and `AuthError`
MCP_AUDIT_WRITER = "apps.audit.writer"  # module providing `audit_record` and `AuditRecord`
MCP_CONFORMANCE_FIXTURES = False  # only apps/gateway/conformance/settings.py turns this on
# ------------------------------------------------------------------------------------ runs (jobs, runs, scheduler)
# With the waking Redis broker an idle consumer blocks in Redis until an enqueue wakes it; `worker_timeout` is only
# the fallback poll. Dramatiq reads it from this env var at import, so set it before `rundramatiq` execs.
os.environ.setdefault("dramatiq_worker_timeout", str(env.get_int("DRAMATIQ_WORKER_TIMEOUT_MS")))
if _broker_scheme in {"redis", "rediss", "unix"}:
    # A killed worker's unacked messages are requeued by broker maintenance once its heartbeat is this old.
    DRAMATIQ_BROKER["OPTIONS"]["heartbeat_timeout"] = env.get_int("DRAMATIQ_HEARTBEAT_TIMEOUT_MS")  # type: ignore[index]
    DRAMATIQ_BROKER["OPTIONS"]["maintenance_interval_ms"] = env.get_int("DRAMATIQ_MAINTENANCE_INTERVAL_MS")  # type: ignore[index]
RUNS_JOB_HEARTBEAT_S = env.get_float("RUNS_JOB_HEARTBEAT_S")
RUNS_JOB_STALE_S = env.get_float("RUNS_JOB_STALE_S")
RUNS_LOST_WORKER_RETRIES = env.get_int("RUNS_LOST_WORKER_RETRIES")
RUNS_RESEND_AFTER_S = env.get_int("RUNS_RESEND_AFTER_S")
RUNS_RETRY_BASE_MS = env.get_int("RUNS_RETRY_BASE_MS")
RUNS_RETRY_MAX_MS = env.get_int("RUNS_RETRY_MAX_MS")
RUNS_CANCEL_POLL_MS = env.get_int("RUNS_CANCEL_POLL_MS")
RUNS_TASK_TTL_MS = env.get_int("RUNS_TASK_TTL_MS")
RUNS_TASK_POLL_MS = env.get_int("RUNS_TASK_POLL_MS")
RUNS_STREAM_TTL_S = env.get_int("RUNS_STREAM_TTL_S")
RUNS_SCHEDULER_TICK_S = env.get_float("RUNS_SCHEDULER_TICK_S")
RUNS_EXTRA_TOOL_MODULES = env.get_list("RUNS_EXTRA_TOOL_MODULES")

# ------------------------------------------------------------------------------------------- memory
# Embeddings for apps.memory (docs/memory.md). The backend is built lazily by apps.memory.embeddings.
EMBEDDING_BACKEND = env.get_str("EMBEDDING_BACKEND").lower()
if EMBEDDING_BACKEND not in {"local", "openai", "none"}:
    raise ImproperlyConfigured(f"EMBEDDING_BACKEND={EMBEDDING_BACKEND!r}: use local, openai or none")
EMBEDDING_MODEL = env.get("EMBEDDING_MODEL") or ""
EMBEDDING_URL = env.get("EMBEDDING_URL") or ""
EMBEDDING_API_KEY = env.get("EMBEDDING_API_KEY") or ""
EMBEDDING_DIMENSIONS = env.get_int("EMBEDDING_DIMENSIONS")
EMBEDDING_BATCH_SIZE = env.get_int("EMBEDDING_BATCH_SIZE")
EMBEDDING_TIMEOUT_S = float(env.get_str("EMBEDDING_TIMEOUT_S"))
EMBEDDING_THREADS = env.get_int("EMBEDDING_THREADS")
EMBEDDING_WARM_AT_START = env.get_bool("EMBEDDING_WARM_AT_START")
MEMORY_MAX_CONTENT_CHARS = env.get_int("MEMORY_MAX_CONTENT_CHARS")
MEMORY_MAX_ITEMS_PER_STORE = env.get_int("MEMORY_MAX_ITEMS_PER_STORE")
MEMORY_HNSW_EF_SEARCH = env.get_int("MEMORY_HNSW_EF_SEARCH")
