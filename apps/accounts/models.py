"""Who may call which tool: service accounts, roles with tool grants, role bindings and API tokens."""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator, RegexValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from apps.accounts.roles import grant_error

_slug = RegexValidator(r"^[a-z0-9][a-z0-9_.-]{0,99}$", "lower-case letters, digits, '.', '_' or '-' (max 100)")


def _validate_grant(value: str) -> None:
    if problem := grant_error(value):
        raise ValidationError(problem)


class ServiceAccount(models.Model):
    """A non-human caller (an agent, a CI job, a deployment script). Holds roles and API tokens."""

    name = models.CharField(max_length=100, unique=True, validators=[_slug])
    description = models.TextField(blank=True)
    is_active = models.BooleanField(default=True, help_text="Inactive accounts cannot authenticate.")
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Role(models.Model):
    """A named set of tool grants plus the rate limits the gateway applies to its holders."""

    name = models.CharField(max_length=100, unique=True, validators=[_slug])
    description = models.TextField(blank=True)
    requests_per_minute = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="Requests per minute per principal holding this role. Empty: unlimited.",
    )
    is_builtin = models.BooleanField(default=False, editable=False, help_text="Seeded by the platform's migration.")

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class RoleGrant(models.Model):
    """One tool permission of a role: '*', '<capability>.*' or an exact tool name."""

    role = models.ForeignKey(Role, on_delete=models.CASCADE, related_name="grants")
    pattern = models.CharField(
        max_length=128, validators=[_validate_grant], help_text="'*', 'task.*' or an exact tool name like 'task.list'"
    )

    class Meta:
        ordering = ["role", "pattern"]
        constraints = [models.UniqueConstraint(fields=["role", "pattern"], name="accounts_rolegrant_unique")]

    def __str__(self) -> str:
        return f"{self.role.name}: {self.pattern}"


class RoleToolLimit(models.Model):
    """A per-tool rate limit of a role, overriding the role's general limit for that tool (or pattern)."""

    role = models.ForeignKey(Role, on_delete=models.CASCADE, related_name="tool_limits")
    tool = models.CharField(max_length=128, validators=[_validate_grant], help_text="exact tool name or 'task.*'")
    requests_per_minute = models.PositiveIntegerField(validators=[MinValueValidator(1)])

    class Meta:
        ordering = ["role", "tool"]
        constraints = [models.UniqueConstraint(fields=["role", "tool"], name="accounts_roletoollimit_unique")]

    def __str__(self) -> str:
        return f"{self.role.name}: {self.tool} ≤ {self.requests_per_minute}/min"


class RoleBinding(models.Model):
    """Gives a role to exactly one user, group or service account."""

    role = models.ForeignKey(Role, on_delete=models.CASCADE, related_name="bindings")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="role_bindings"
    )
    group = models.ForeignKey(Group, null=True, blank=True, on_delete=models.CASCADE, related_name="role_bindings")
    service_account = models.ForeignKey(
        ServiceAccount, null=True, blank=True, on_delete=models.CASCADE, related_name="role_bindings"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["role", "pk"]
        constraints = [
            models.CheckConstraint(
                condition=(
                    Q(user__isnull=False, group__isnull=True, service_account__isnull=True)
                    | Q(user__isnull=True, group__isnull=False, service_account__isnull=True)
                    | Q(user__isnull=True, group__isnull=True, service_account__isnull=False)
                ),
                name="accounts_rolebinding_one_subject",
                violation_error_message="bind the role to exactly one of: user, group, service account",
            ),
            models.UniqueConstraint(
                fields=["role", "user"], condition=Q(user__isnull=False), name="accounts_rolebinding_user_unique"
            ),
            models.UniqueConstraint(
                fields=["role", "group"], condition=Q(group__isnull=False), name="accounts_rolebinding_group_unique"
            ),
            models.UniqueConstraint(
                fields=["role", "service_account"],
                condition=Q(service_account__isnull=False),
                name="accounts_rolebinding_service_unique",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.role.name} → {self.subject}"

    @property
    def subject(self) -> str:
        if self.user_id:
            return f"user {self.user}"
        if self.group_id:
            return f"group {self.group}"
        return f"service account {self.service_account}"


class ApiToken(models.Model):
    """A bearer credential `mcpp_<public_id>_<secret>`. Only sha256(secret) is stored; the token is shown once."""

    public_id = models.CharField(max_length=16, unique=True, editable=False)
    secret_hash = models.CharField(max_length=64, editable=False)
    name = models.CharField(max_length=100, help_text="What uses this token (e.g. 'ci deploy', 'claude desktop').")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="api_tokens"
    )
    service_account = models.ForeignKey(
        ServiceAccount, null=True, blank=True, on_delete=models.CASCADE, related_name="api_tokens"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    expires_at = models.DateTimeField(null=True, blank=True, help_text="Empty: never expires.")
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=(
                    Q(user__isnull=False, service_account__isnull=True)
                    | Q(user__isnull=True, service_account__isnull=False)
                ),
                name="accounts_apitoken_one_owner",
                violation_error_message="a token belongs to exactly one of: user, service account",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.name})"

    @property
    def prefix(self) -> str:
        """What the audit trail and the admin show: identifies the token, reveals nothing of the secret."""
        return f"mcpp_{self.public_id}"

    @property
    def owner(self) -> str:
        return f"user {self.user}" if self.user_id else f"service account {self.service_account}"

    def is_usable(self, now: datetime | None = None) -> bool:
        moment = now or timezone.now()
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > moment)
