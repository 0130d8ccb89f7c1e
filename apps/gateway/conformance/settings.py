"""Settings for `make conformance` only: the base settings plus the suite's fixtures and loopback principal.

A deployment cannot reach this by an environment variable; it must name this module, and it refuses production.
"""

from django.core.exceptions import ImproperlyConfigured

from mcpplat import env
from mcpplat.settings.base import *  # noqa: F403
from mcpplat.settings.base import PRODUCTION

if PRODUCTION:
    raise ImproperlyConfigured("the conformance profile never runs with MCPPLAT_ENV=production")
if env.get_str("BIND") not in {"127.0.0.1", "::1", "localhost"}:
    raise ImproperlyConfigured(f"the conformance profile binds to loopback only, not BIND={env.get_str('BIND')!r}")

MCP_CONFORMANCE_FIXTURES = True
MCP_AUTHENTICATOR = "apps.gateway.conformance.identity"
