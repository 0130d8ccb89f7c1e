from importlib import import_module

from django.apps import AppConfig
from django.conf import settings


class RunsConfig(AppConfig):
    name = "apps.runs"
    label = "runs"
    verbose_name = "Jobs and runs"

    def ready(self) -> None:
        # Extra tool modules (test-only queued tools, say) must be registered in workers as well as in the gateway.
        for module in settings.RUNS_EXTRA_TOOL_MODULES:
            import_module(module)
