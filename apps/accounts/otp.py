"""OTP device provisioning shared by `ensure_admin` and `create_otp_device`."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice


@dataclass(frozen=True)
class Enrolment:
    totp_uri: str | None
    static_tokens: list[str]


@transaction.atomic
def otp_device_create(*, user: AbstractBaseUser, totp: bool = True, static_tokens: int = 0) -> Enrolment:
    """Give `user` a confirmed TOTP device and/or a static device with `static_tokens` single-use codes."""
    uri = None
    if totp:
        device = TOTPDevice(user=user, name="totp", confirmed=True)
        device.full_clean()
        device.save()
        uri = device.config_url
    tokens: list[str] = []
    if static_tokens:
        static, _ = StaticDevice.objects.get_or_create(user=user, name="backup", defaults={"confirmed": True})
        for _ in range(static_tokens):
            token = f"{secrets.randbelow(10**8):08d}"
            StaticToken.objects.create(device=static, token=token)
            tokens.append(token)
    return Enrolment(totp_uri=uri, static_tokens=tokens)
