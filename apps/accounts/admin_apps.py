from django.contrib.admin.apps import AdminConfig


class PlatformAdminConfig(AdminConfig):
    """django.contrib.admin with our OTP-protected site as the default site."""

    default_site = "apps.accounts.admin_site.PlatformAdminSite"
