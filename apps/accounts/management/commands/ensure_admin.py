"""Create the first admin once; a rerun reports it and changes nothing."""

from __future__ import annotations

import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from apps.accounts.otp import otp_device_create


class Command(BaseCommand):
    help = "Ensure a first superuser exists with an OTP device; print its one-time credentials once."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--username", default="admin")
        parser.add_argument("--email", default="admin@localhost")

    def handle(self, *args: object, **options: str) -> None:
        User = get_user_model()
        with transaction.atomic():
            existing = User.objects.filter(is_superuser=True).order_by("pk").first()
            if existing is not None:
                self.stdout.write(
                    f"admin: {existing.get_username()} exists (credentials were shown when it was created; "
                    f"new OTP codes: ./manage.py create_otp_device --user {existing.get_username()} --static 5)"
                )
                return
            password = secrets.token_urlsafe(12)
            user = User.objects.create_superuser(options["username"], options["email"], password)
            enrolment = otp_device_create(user=user, totp=True, static_tokens=5)
        self.stdout.write(self.style.SUCCESS("first admin created — shown once, save it now:"))
        self.stdout.write(f"  username:     {user.get_username()}")
        self.stdout.write(f"  password:     {password}   (change it after the first login)")
        self.stdout.write(f"  TOTP (scan):  {enrolment.totp_uri}")
        self.stdout.write(f"  backup codes: {' '.join(enrolment.static_tokens)}   (each works once)")
