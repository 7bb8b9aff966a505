"""Give a staff member a TOTP device for the admin's second factor and show how to add it."""

from typing import Any

import qrcode
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django_otp.plugins.otp_totp.models import TOTPDevice


class Command(BaseCommand):
    help = "Create a confirmed TOTP device for a staff user; print its otpauth URL and QR code."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("username")
        parser.add_argument("--name", default="authenticator app", help="Name of the device.")
        parser.add_argument(
            "--replace", action="store_true", help="Delete the user's existing TOTP devices first."
        )

    @transaction.atomic
    def handle(self, *args: Any, username: str, name: str, replace: bool, **options: Any) -> None:
        user = get_user_model().objects.filter(username=username, is_staff=True).first()
        if user is None:
            raise CommandError(f"No staff user {username!r}.")
        devices = TOTPDevice.objects.filter(user=user)
        if devices.exists() and not replace:
            raise CommandError(
                f"{username} already has a TOTP device; use --replace for a new one."
            )
        devices.delete()
        device = TOTPDevice.objects.create(user=user, name=name, confirmed=True)
        self.stdout.write(f"Add this to {username}'s authenticator app (shown once):")
        self.stdout.write(device.config_url)
        code = qrcode.QRCode(border=1)
        code.add_data(device.config_url)
        code.print_ascii(out=self.stdout, invert=True)
