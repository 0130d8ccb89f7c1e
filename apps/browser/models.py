"""Browser domain policies (per role, managed in the admin) and the record of every blocked request."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import models


def _lines(text: str) -> list[str]:
    return [part.strip() for part in text.replace(",", "\n").splitlines() if part.strip()]


class BrowserPolicy(models.Model):
    """Which hosts a role's browser sessions may reach. Deny wins; internal addresses need `allow_internal`."""

    role = models.CharField(max_length=64, unique=True, help_text="Role name (admin, operator, agent, …).")
    allow = models.TextField(
        default="*", help_text="Host patterns, one a line: *, example.com, *.example.com, host:443"
    )
    deny = models.TextField(blank=True, default="", help_text="Host patterns refused even when allowed.")
    allow_internal = models.TextField(
        blank=True,
        default="",
        help_text="Internal addresses this role may reach, one a line: 10.0.0.0/8, 127.0.0.1:8080.",
    )
    allow_downloads = models.BooleanField(default=False)
    max_sessions = models.PositiveIntegerField(default=4, help_text="Open sessions the role may hold at once.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["role"]
        verbose_name_plural = "browser policies"

    def __str__(self) -> str:
        return f"browser policy for {self.role}"

    def clean(self) -> None:
        from apps.browser.policy import InternalAllowance

        for entry in _lines(self.allow_internal):
            try:
                InternalAllowance.parse(entry)
            except ValueError as exc:
                raise ValidationError({"allow_internal": str(exc)}) from None

    def as_policy(self):  # -> DomainPolicy (import cycle-free)
        from apps.browser.policy import DomainPolicy

        return DomainPolicy.build(
            name=self.role,
            allow=_lines(self.allow),
            deny=_lines(self.deny),
            allow_internal=_lines(self.allow_internal),
            allow_downloads=self.allow_downloads,
            max_sessions=self.max_sessions,
        )


class BlockedRequest(models.Model):
    """One request the domain policy refused (kept until apps.audit records it; then as a browsing log)."""

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    principal_id = models.CharField(max_length=255, db_index=True)
    session_id = models.CharField(max_length=64, blank=True, default="")
    tool = models.CharField(max_length=64)
    url = models.TextField()
    reason = models.CharField(max_length=64)
    detail = models.TextField()
    address = models.CharField(max_length=64, blank=True, default="")
    job_id = models.CharField(max_length=64, blank=True, default="")

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.reason}: {self.url}"
