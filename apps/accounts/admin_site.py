from django_otp.admin import OTPAdminSite


class PlatformAdminSite(OTPAdminSite):
    """The admin requires a verified OTP device: a password alone never gets a staff member in."""

    site_header = "mcpplat administration"
    site_title = "mcpplat admin"
    index_title = "Platform"

    def __init__(self, name: str = "admin") -> None:
        super().__init__(name)  # keep the `admin` instance namespace for reverse()
