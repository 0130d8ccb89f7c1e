from django.apps import AppConfig


class GatewayConfig(AppConfig):
    name = "apps.gateway"
    label = "gateway"
    verbose_name = "MCP gateway"

    def ready(self) -> None:
        from apps.gateway.registry import registry

        registry.autodiscover()
