"""Who may use the support pages: OTP-verified users holding the `support` role read; staff and admins change.

The same rule serves the HTTP views (django-otp's `request.user.is_verified()`) and the WebSocket consumers
(which see the session but not django-otp's middleware, so the device check is repeated here).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any
from urllib.parse import urlencode

from asgiref.sync import sync_to_async
from django.contrib import messages
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import redirect, render
from django.urls import reverse
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp.models import Device

from apps.accounts.principal import Principal
from apps.accounts.selectors import principal_for_user, role_names_for_user

SUPPORT_ROLE = "support"
ADMIN_ROLE = "admin"
MANAGE_RUNS = "runs.manage"


@dataclass(frozen=True)
class SupportAccess:
    user: Any
    signed_in: bool
    verified: bool
    can_read: bool
    can_change: bool

    @property
    def principal_id(self) -> str:
        return f"user:{self.user.pk}"

    def reason(self) -> str:
        if not self.signed_in:
            return "Sign in with your password and a one-time code to use the support pages."
        if not self.verified:
            return "Your session is not verified with a one-time code: sign in again with your code."
        return (
            f"Your account ({self.user.get_username()}) has no '{SUPPORT_ROLE}' role: ask a platform administrator "
            f"to bind the role to you in the admin (Roles → {SUPPORT_ROLE})."
        )


def support_access_for(user: AbstractBaseUser | AnonymousUser | None, *, verified: bool) -> SupportAccess:
    """Read: support, staff or admin. Change (cancel runs and jobs): staff or admin. Both need a verified OTP."""
    if user is None or not user.is_authenticated:
        return SupportAccess(user, False, False, False, False)
    if not verified or not getattr(user, "is_active", False):
        return SupportAccess(user, True, False, False, False)
    roles = role_names_for_user(user)
    staff = bool(getattr(user, "is_staff", False) or getattr(user, "is_superuser", False) or ADMIN_ROLE in roles)
    return SupportAccess(user, True, True, staff or SUPPORT_ROLE in roles, staff)


def request_access(request: HttpRequest) -> SupportAccess:
    user = request.user
    verified = bool(user.is_authenticated and getattr(user, "is_verified", lambda: False)())
    return support_access_for(user, verified=verified)


def acting_principal(access: SupportAccess) -> Principal:
    """The Principal a page action runs as: the user's own roles; staff also manage every run and job."""
    principal = principal_for_user(access.user, identity_source="session")
    if access.can_change:
        principal = dataclasses.replace(principal, grants=principal.grants | {MANAGE_RUNS})
    return principal


def _denied(request: HttpRequest, access: SupportAccess) -> HttpResponse:
    if not access.verified:
        if access.signed_in:  # signed in with a password only (or the OTP device was removed)
            messages.warning(request, access.reason())
        query = urlencode({"next": request.get_full_path()})
        return redirect(f"{reverse('support:login')}?{query}")
    return render(request, "support/denied.html", {"reason": access.reason(), "title": "Not allowed"}, status=403)


View = Callable[..., HttpResponse]


def support_read_required(view: View) -> View:
    """Sync view guard: attaches `request.support` (a SupportAccess) for the view and its templates."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        access = request_access(request)
        if not access.can_read:
            return _denied(request, access)
        request.support = access  # type: ignore[attr-defined]
        return view(request, *args, **kwargs)

    return wrapper


AsyncView = Callable[..., Awaitable[HttpResponseBase]]


def asupport_read_required(view: AsyncView) -> Any:
    """Async view guard (exports): same rule, through `request.auser()` (which django-otp verifies)."""

    @wraps(view)
    async def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        user = await request.auser()
        verified = bool(user.is_authenticated and getattr(user, "is_verified", lambda: False)())
        access = await sync_to_async(support_access_for)(user, verified=verified)
        if not access.can_read:
            request.user = user
            return await sync_to_async(_denied)(request, access)
        request.support = access  # type: ignore[attr-defined]
        return await view(request, *args, **kwargs)

    return wrapper


def scope_access(scope: dict[str, Any]) -> SupportAccess:
    """For WebSocket consumers (call in a thread): the session's user and its OTP device, checked as django-otp does."""
    user = scope.get("user")
    session = scope.get("session")
    verified = False
    if user is not None and user.is_authenticated and session is not None:
        session_device = session.get(DEVICE_ID_SESSION_KEY)
        if session_device:
            device = Device.from_persistent_id(session_device)
            verified = device is not None and device.user_id == user.pk and device.confirmed
    return support_access_for(user, verified=verified)
