"""Test overrides: thin. The suite runs on the same real services as development."""

import os

from mcpplat import embedded
from mcpplat.settings.base import *  # noqa: F403
from mcpplat.settings.base import REDIS_URL, USE_EMBEDDED_REDIS, VAR_PATHS

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast; tests never store real passwords
# The suite fails authentication on purpose from 127.0.0.1 all the time; the limit's own test sets it low.
MCP_AUTH_FAILURES_PER_MINUTE = 0

# Keep the suite's keys away from a platform running from the same checkout (`make run` uses db 0).
if USE_EMBEDDED_REDIS:
    REDIS_URL = embedded.redis_url(VAR_PATHS, db=9)
    DRAMATIQ_BROKER["OPTIONS"]["url"] = REDIS_URL  # type: ignore[index]  # noqa: F405
    CHANNEL_LAYERS = {
        "default": {**CHANNEL_LAYERS["default"], "CONFIG": {"hosts": [REDIS_URL], "prefix": "mcpplat:channels"}}  # noqa: F405
    }
    CACHES["default"]["LOCATION"] = REDIS_URL  # noqa: F405

# Worker processes started by a test use that test's database (pytest-django creates `test_mcpplat`).
if _worker_db := os.environ.get("MCPPLAT_TEST_WORKER_DB"):
    DATABASES["default"]["NAME"] = _worker_db  # noqa: F405
