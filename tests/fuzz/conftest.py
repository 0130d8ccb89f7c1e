from apps.gateway.tests.conftest import admin_token

__all__ = ["admin_token"]
