"""Staff screens for roles, bindings, service accounts and API tokens (on the OTP-protected admin site).

Admin actions call the same services as the command line, so every change is audited the same way.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.models import Group, User
from django.core.exceptions import ValidationError
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html

from apps.accounts.models import ApiToken, Role, RoleBinding, RoleGrant, RoleToolLimit, ServiceAccount
from apps.accounts.services import (
    IssuedToken,
    api_token_create,
    api_token_revoke,
    api_token_rotate,
    service_account_deactivate,
)


def _staff(request: HttpRequest) -> User:
    """The admin site admits only authenticated, OTP-verified staff users."""
    assert isinstance(request.user, User)  # noqa: S101
    return request.user


def _show_once(request: HttpRequest, issued: IssuedToken) -> None:
    messages.warning(
        request,
        format_html(
            "New API token for {} — copy it now, it is shown only this once: <code>{}</code>",
            issued.token.owner,
            issued.value,
        ),
    )


class RoleGrantInline(admin.TabularInline):
    model = RoleGrant
    extra = 1
    verbose_name = "tool grant"
    verbose_name_plural = "tool grants ('*', 'task.*' or an exact tool name)"


class RoleToolLimitInline(admin.TabularInline):
    model = RoleToolLimit
    extra = 0
    verbose_name = "per-tool rate limit"
    verbose_name_plural = "per-tool rate limits (override the role's requests/minute for these tools)"


class RoleBindingInline(admin.TabularInline):
    model = RoleBinding
    extra = 0
    autocomplete_fields = ["user", "group", "service_account"]
    fields = ["user", "group", "service_account", "created_at"]
    readonly_fields = ["created_at"]


@admin.register(Role)
class RoleAdmin(admin.ModelAdmin):
    list_display = ["name", "grant_list", "requests_per_minute_display", "binding_count", "is_builtin"]
    list_filter = ["is_builtin"]
    search_fields = ["name", "description", "grants__pattern"]
    inlines = [RoleGrantInline, RoleToolLimitInline, RoleBindingInline]
    readonly_fields = ["is_builtin"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Role]:
        return super().get_queryset(request).prefetch_related("grants").annotate(_bindings=Count("bindings"))

    @admin.display(description="tool grants")
    def grant_list(self, role: Role) -> str:
        return ", ".join(g.pattern for g in role.grants.all()) or "—"

    @admin.display(description="requests/minute", ordering="requests_per_minute")
    def requests_per_minute_display(self, role: Role) -> str:
        return "unlimited" if role.requests_per_minute is None else str(role.requests_per_minute)

    @admin.display(description="bindings", ordering="_bindings")
    def binding_count(self, role: Role) -> int:
        return role._bindings  # type: ignore[attr-defined]


@admin.register(RoleBinding)
class RoleBindingAdmin(admin.ModelAdmin):
    list_display = ["role", "subject", "created_at"]
    list_filter = ["role"]
    search_fields = ["role__name", "user__username", "user__email", "group__name", "service_account__name"]
    autocomplete_fields = ["role", "user", "group", "service_account"]
    list_select_related = ["role", "user", "group", "service_account"]


class ApiTokenReadOnlyInline(admin.TabularInline):
    model = ApiToken
    extra = 0
    fk_name = "service_account"
    fields = ("prefix", "name", "created_at", "expires_at", "last_used_at", "revoked_at")
    readonly_fields = ("prefix", "name", "created_at", "expires_at", "last_used_at", "revoked_at")
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ServiceAccountRoleBindingInline(admin.TabularInline):
    """On a service account's page: the roles it holds (the role page's inline lists who holds a role)."""

    model = RoleBinding
    fk_name = "service_account"
    extra = 0
    fields = ["role", "created_at"]
    readonly_fields = ["created_at"]
    verbose_name_plural = "roles"


@admin.register(ServiceAccount)
class ServiceAccountAdmin(admin.ModelAdmin):
    list_display = ["name", "is_active", "role_list", "active_tokens", "created_at"]
    list_filter = ["is_active", "role_bindings__role"]
    search_fields = ["name", "description"]
    readonly_fields = ["created_at", "created_by"]
    inlines = [ServiceAccountRoleBindingInline, ApiTokenReadOnlyInline]
    actions = ["issue_token", "deactivate"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[ServiceAccount]:
        now = timezone.now()
        usable = Q(api_tokens__revoked_at__isnull=True) & (
            Q(api_tokens__expires_at__isnull=True) | Q(api_tokens__expires_at__gt=now)
        )
        return (
            super()
            .get_queryset(request)
            .prefetch_related("role_bindings__role")
            .annotate(_tokens=Count("api_tokens", filter=usable, distinct=True))
        )

    def save_model(self, request: HttpRequest, obj: ServiceAccount, form: Any, change: bool) -> None:
        if not change:
            obj.created_by = _staff(request)
        super().save_model(request, obj, form, change)

    @admin.display(description="roles")
    def role_list(self, account: ServiceAccount) -> str:
        return ", ".join(sorted(b.role.name for b in account.role_bindings.all())) or "—"

    @admin.display(description="usable tokens", ordering="_tokens")
    def active_tokens(self, account: ServiceAccount) -> int:
        return account._tokens  # type: ignore[attr-defined]

    @admin.action(description="Issue a new API token (shown once)")
    def issue_token(self, request: HttpRequest, queryset: QuerySet[ServiceAccount]) -> None:
        for account in queryset:
            _show_once(
                request, api_token_create(name="issued in the admin", service_account=account, by=_staff(request))
            )

    @admin.action(description="Deactivate (tokens stop working within TOKEN_CACHE_SECONDS)")
    def deactivate(self, request: HttpRequest, queryset: QuerySet[ServiceAccount]) -> None:
        accounts = [a for a in queryset if a.is_active]
        for account in accounts:
            service_account_deactivate(account=account, by=_staff(request))
        self.message_user(request, f"{len(accounts)} service account(s) deactivated.")


class TokenStatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("usable", "usable"), ("expired", "expired"), ("revoked", "revoked"), ("unused", "never used")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> QuerySet[ApiToken]:
        now = timezone.now()
        match self.value():
            case "usable":
                return queryset.filter(revoked_at__isnull=True).filter(
                    Q(expires_at__isnull=True) | Q(expires_at__gt=now)
                )
            case "expired":
                return queryset.filter(revoked_at__isnull=True, expires_at__lte=now)
            case "revoked":
                return queryset.filter(revoked_at__isnull=False)
            case "unused":
                return queryset.filter(last_used_at__isnull=True)
        return queryset


class OwnerKindFilter(admin.SimpleListFilter):
    title = "owner"
    parameter_name = "owner"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("user", "users"), ("service", "service accounts")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> QuerySet[ApiToken]:
        if self.value() == "user":
            return queryset.filter(user__isnull=False)
        if self.value() == "service":
            return queryset.filter(service_account__isnull=False)
        return queryset


class ApiTokenAddForm(forms.ModelForm):
    expires_in_days = forms.IntegerField(
        required=False, min_value=1, max_value=3650, help_text="Days until the token expires. Empty: never."
    )

    class Meta:
        model = ApiToken
        fields = ["name", "user", "service_account"]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if bool(data.get("user")) == bool(data.get("service_account")):
            raise ValidationError("Choose exactly one owner: a user or a service account.")
        return data


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ["prefix", "name", "owner", "status", "created_at", "expires_at", "last_used_at"]
    list_filter = [TokenStatusFilter, OwnerKindFilter, "created_at", "last_used_at"]
    search_fields = ["public_id", "name", "user__username", "user__email", "service_account__name"]
    list_select_related = ["user", "service_account"]
    autocomplete_fields = ["user", "service_account"]
    actions = ["revoke", "rotate"]
    date_hierarchy = "created_at"

    def get_form(self, request: HttpRequest, obj: ApiToken | None = None, change: bool = False, **kwargs: Any) -> Any:
        if obj is None:
            kwargs["form"] = ApiTokenAddForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request: HttpRequest, obj: ApiToken | None = None) -> Any:
        if obj is None:
            return ["name", "user", "service_account", "expires_in_days"]
        return [
            "prefix",
            "name",
            "owner",
            "status",
            "created_at",
            "created_by",
            "expires_at",
            "last_used_at",
            "revoked_at",
        ]

    def get_readonly_fields(self, request: HttpRequest, obj: ApiToken | None = None) -> list[str]:
        if obj is None:
            return []
        return ["prefix", "owner", "status", "created_at", "created_by", "expires_at", "last_used_at", "revoked_at"]

    def has_delete_permission(self, request: HttpRequest, obj: ApiToken | None = None) -> bool:
        return False  # revoke instead: the row (and its prefix in the audit trail) stays explainable

    def save_model(self, request: HttpRequest, obj: ApiToken, form: Any, change: bool) -> None:
        if change:
            obj.save(update_fields=["name"])
            return
        days = form.cleaned_data.get("expires_in_days")
        issued = api_token_create(
            name=obj.name,
            user=form.cleaned_data.get("user"),
            service_account=form.cleaned_data.get("service_account"),
            expires_in=timedelta(days=days) if days else None,
            by=_staff(request),
        )
        for field in ApiToken._meta.concrete_fields:
            setattr(obj, field.attname, getattr(issued.token, field.attname))
        _show_once(request, issued)

    @admin.display(description="status")
    def status(self, token: ApiToken) -> str:
        if token.revoked_at is not None:
            return "revoked"
        if token.expires_at is not None and token.expires_at <= timezone.now():
            return "expired"
        return "usable"

    @admin.action(description="Revoke selected tokens")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        tokens = [t for t in queryset.select_related("user", "service_account") if t.revoked_at is None]
        for token in tokens:
            api_token_revoke(token=token, by=_staff(request))
        self.message_user(
            request,
            f"{len(tokens)} token(s) revoked; other gateway processes stop accepting them within TOKEN_CACHE_SECONDS.",
        )

    @admin.action(description="Rotate selected tokens (new token shown once, old one revoked)")
    def rotate(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        for token in queryset.select_related("user", "service_account"):
            if token.revoked_at is None:
                _show_once(request, api_token_rotate(token=token, by=_staff(request)))


# ------------------------------------------------------------- users and groups: their roles and tokens inline


class UserRoleBindingInline(admin.TabularInline):
    model = RoleBinding
    fk_name = "user"
    extra = 0
    fields = ["role", "created_at"]
    readonly_fields = ["created_at"]
    verbose_name_plural = "roles"


class GroupRoleBindingInline(UserRoleBindingInline):
    fk_name = "group"


class UserApiTokenInline(ApiTokenReadOnlyInline):
    fk_name = "user"


admin.site.unregister(User)
admin.site.unregister(Group)


@admin.register(User)
class PlatformUserAdmin(UserAdmin):
    inlines = [*UserAdmin.inlines, UserRoleBindingInline, UserApiTokenInline]
    list_filter = [*UserAdmin.list_filter, "role_bindings__role"]


@admin.register(Group)
class PlatformGroupAdmin(GroupAdmin):
    inlines = [*GroupAdmin.inlines, GroupRoleBindingInline]
