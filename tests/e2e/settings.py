"""End-to-end settings: the test settings plus demo tools (slow, counting) the SDK-client tests call."""

from mcpplat.settings.test import *  # noqa: F403
from mcpplat.settings.test import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "tests.e2e.demo"]
MCP_SSE_AFTER_MS = 500
