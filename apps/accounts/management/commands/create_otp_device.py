from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.accounts.otp import otp_device_create


class Command(BaseCommand):
    help = "Give a user a TOTP device and/or static one-time codes (for automation and recovery)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--user", required=True, help="username")
        parser.add_argument("--totp", action="store_true", help="add a TOTP device and print its otpauth:// URI")
        parser.add_argument("--static", type=int, default=0, metavar="N", help="add N single-use codes")

    def handle(self, *args: object, **options: object) -> None:
        if not options["totp"] and not options["static"]:
            raise CommandError("nothing to create: pass --totp and/or --static N")
        if not 0 <= int(options["static"]) <= 50:  # type: ignore[call-overload]
            raise CommandError("--static: give between 1 and 50 codes")
        try:
            user = get_user_model().objects.get(username=options["user"])
        except get_user_model().DoesNotExist:
            raise CommandError(f"--user: no user named {options['user']!r}") from None
        enrolment = otp_device_create(
            user=user,
            totp=bool(options["totp"]),
            static_tokens=int(options["static"]),  # type: ignore[call-overload]
        )
        if enrolment.totp_uri:
            self.stdout.write(enrolment.totp_uri)
        for token in enrolment.static_tokens:
            self.stdout.write(token)
