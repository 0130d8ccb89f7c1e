from django.apps import AppConfig
from django.conf import settings


class GatewayConfig(AppConfig):
    name = "apps.gateway"
    label = "gateway"
    verbose_name = "MCP gateway"

    def ready(self) -> None:
        from apps.gateway.registry import registry

        registry.autodiscover()
        if settings.MCP_CONFORMANCE_FIXTURES:
            # Only apps/gateway/conformance/settings.py sets this; the module refuses to load otherwise.
            from apps.gateway.conformance import fixtures  # noqa: F401
