"""Issue an API token for automation: prints the token and nothing else (`TOKEN=$(manage.py create_api_token …)`)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from apps.accounts.models import Role, ServiceAccount
from apps.accounts.services import api_token_create, role_bind, service_account_ensure


class Command(BaseCommand):
    help = (
        "Create an API token for --user (a service account, created with --role when absent; or an existing "
        "platform user) and print only the token."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--user", required=True, help="service account name (or an existing user's username)")
        parser.add_argument("--role", required=True, help="role to hold (admin, operator, agent, support, viewer, …)")
        parser.add_argument(
            "--expires", type=int, default=None, metavar="DAYS", help="days until expiry (default: never)"
        )
        parser.add_argument("--name", default="created by create_api_token", help="label shown in the admin")

    def handle(self, *args: Any, **options: Any) -> None:
        name, role = options["user"], options["role"]
        days = options["expires"]
        if days is not None and days <= 0:
            raise CommandError("--expires: give a positive number of days")
        if not Role.objects.filter(name=role).exists():
            known = ", ".join(Role.objects.order_by("name").values_list("name", flat=True))
            raise CommandError(f"--role: no role named {role!r}: use one of {known}")
        expires_in = timedelta(days=days) if days is not None else None
        try:
            with transaction.atomic():
                user = None
                account = ServiceAccount.objects.filter(name=name).first()
                if account is None:
                    user = get_user_model().objects.filter(**{get_user_model().USERNAME_FIELD: name}).first()
                if user is not None:
                    role_bind(role=role, user=user)
                else:
                    account = service_account_ensure(name=name, roles=[role])
                issued = api_token_create(
                    name=options["name"], user=user, service_account=account, expires_in=expires_in
                )
        except ValidationError as exc:
            raise CommandError(f"--user {name!r}: {'; '.join(exc.messages)}") from None
        self.stdout.write(issued.value)
