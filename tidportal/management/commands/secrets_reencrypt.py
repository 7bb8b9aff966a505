"""Encrypt every encrypted field's value under the current ``SECRET_KEY``.

The last step of rotating ``DJANGO_SECRET_KEY`` (docs/deploy.md, "Keys and their rotation"):
with the new key in ``DJANGO_SECRET_KEY`` and the old one in ``DJANGO_SECRET_KEY_FALLBACKS``,
this re-encrypts what the old key encrypted, after which the fallback can be removed. It also
encrypts any plaintext left by the release before encryption. Safe to run again at any time:
values already under the current key are left as they are.
"""

from dataclasses import dataclass, field
from typing import Any

from django.apps import apps
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import models, transaction
from django.db.models.functions import Cast

from tidportal import crypto


@dataclass
class FieldReport:
    label: str
    current: int = 0
    reencrypted: int = 0  # were under a fallback key
    encrypted: int = 0  # were plaintext
    unreadable: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        text = (
            f"{self.label}: {self.reencrypted} re-encrypted, {self.encrypted} encrypted "
            f"(were plaintext), {self.current} already under the current key"
        )
        if self.unreadable:
            text += f", {len(self.unreadable)} cannot be decrypted: {', '.join(self.unreadable)}"
        return text


def encrypted_fields() -> list[tuple[type[models.Model], crypto.EncryptedTextField]]:
    return [
        (model, f)
        for model in apps.get_models()
        for f in model._meta.get_fields()
        if isinstance(f, crypto.EncryptedTextField)
    ]


@transaction.atomic
def reencrypt_field(
    model: type[models.Model], encrypted_field: crypto.EncryptedTextField, *, check: bool
) -> FieldReport:
    """Re-encrypt one field's values; with ``check``, only count what would change.

    The rows are locked while this runs, so a secret set meanwhile is not overwritten.
    """
    name = encrypted_field.name
    report = FieldReport(label=f"{model._meta.label}.{name}")
    rows = (
        model._default_manager.select_for_update()
        .exclude(**{name: ""})
        .annotate(stored=Cast(name, models.TextField()))  # the column as it is, not decrypted
        .order_by("pk")
    )
    for row in rows.iterator():
        value, stored = getattr(row, name), row.stored
        if isinstance(value, crypto.UnreadableSecret):
            report.unreadable.append(str(row))
            continue
        if crypto.is_under_current_key(stored):
            report.current += 1
            continue
        if crypto.is_encrypted(stored):
            report.reencrypted += 1
        else:
            report.encrypted += 1
        if not check:
            model._default_manager.filter(pk=row.pk).update(**{name: value})
    return report


class Command(BaseCommand):
    help = (
        "Encrypt every encrypted field (partners' webhook secrets) under the current "
        "DJANGO_SECRET_KEY: run after rotating it, before removing the old key from "
        "DJANGO_SECRET_KEY_FALLBACKS."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--check",
            action="store_true",
            help="Change nothing; fail if any value is not yet under the current key.",
        )

    def handle(self, *args: Any, check: bool, **options: Any) -> None:
        reports = [reencrypt_field(model, f, check=check) for model, f in encrypted_fields()]
        for report in reports:
            self.stdout.write(str(report))
        unreadable = sum(len(report.unreadable) for report in reports)
        behind = sum(report.reencrypted + report.encrypted for report in reports)
        if unreadable:
            raise CommandError(
                f"{unreadable} value(s) cannot be decrypted with DJANGO_SECRET_KEY or "
                "DJANGO_SECRET_KEY_FALLBACKS: put the key they were encrypted under back into "
                "the fallbacks and run this again, or set them again (a partner's webhook "
                "secret: in the admin, then give it to the partner)."
            )
        if check and behind:
            raise CommandError(
                f"{behind} value(s) are not under the current key yet: run "
                "`manage.py secrets_reencrypt` before removing DJANGO_SECRET_KEY_FALLBACKS."
            )
        if check:
            self.stdout.write(self.style.SUCCESS("Every value is under the current key."))
        else:
            self.stdout.write(self.style.SUCCESS("Done: nothing needs the fallback keys now."))
