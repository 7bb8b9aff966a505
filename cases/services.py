"""Writes on cases. Each public function is one transaction: validate everything, then write."""

import secrets
from collections.abc import Sequence
from typing import Any

from django.conf import settings
from django.contrib.auth.hashers import make_password
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils.translation import gettext as _

from cases.models import Case, MediaItem
from cases.validation import media_items_clean
from hashlists.models import HashList

PIN_DIGITS = 8


def new_pin() -> str:
    """An 8-digit PIN from the OS's CSPRNG (wrong guesses are throttled and locked out per case)."""
    return "".join(secrets.choice("0123456789") for _ in range(PIN_DIGITS))


def case_create(
    *,
    reporter: str,
    under_18_when_made: bool,
    items: Sequence[Any],
    hash_list: HashList | None = None,
) -> tuple[Case, str]:
    """Record a new report and its files' hashes; return the case and its PIN (shown once).

    Raises ValidationError, naming each bad field, when the reporter is unknown, the person was
    not under 18, or any item is malformed: then nothing is stored. Stores no data about the
    reporter beyond the answers given.
    """
    errors: dict[str, list[str]] = {}
    if reporter not in Case.Reporter.values:
        errors["reporter"] = [
            _("Tell us who is reporting: yourself, a parent, or a trusted adult.")
        ]
    if under_18_when_made is not True:
        errors["under_18_when_made"] = [
            _("This service is for images taken when the person pictured was under 18.")
        ]
    try:
        cleaned = media_items_clean(items)
    except ValidationError as exc:
        errors.update(exc.message_dict)
    if errors:
        raise ValidationError(errors)
    target = hash_list or HashList.objects.get(slug=settings.TID_DEFAULT_HASH_LIST)
    pin = new_pin()
    # Case numbers are random; a collision (1 in 2^40 per pair) just draws again.
    for _attempt in range(5):
        try:
            with transaction.atomic():
                case = Case.objects.create(
                    reporter=reporter,
                    under_18_when_made=True,
                    hash_list=target,
                    pin_hash=make_password(pin),
                )
                MediaItem.objects.bulk_create(MediaItem(case=case, **item) for item in cleaned)
        except IntegrityError:
            if Case.objects.filter(case_number=case.case_number).exists():
                continue
            raise
        return case, pin
    raise RuntimeError("Could not draw a free case number")  # pragma: no cover - 2^-200
