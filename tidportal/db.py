"""Model building blocks shared by the apps."""

import secrets

from django.db import models
from django.utils.translation import gettext_lazy as _


class TimeStampedModel(models.Model):
    created_at = models.DateTimeField(_("created at"), auto_now_add=True, db_index=False)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        abstract = True


# Crockford's base32 without I, L, O, U: easy to read aloud and to type on a phone.
READABLE_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def random_readable(length: int) -> str:
    return "".join(secrets.choice(READABLE_ALPHABET) for _ in range(length))


def choices_check(
    field: str, choices: type[models.TextChoices], name: str
) -> models.CheckConstraint:
    """A check constraint that keeps a TextChoices column to its declared values."""
    return models.CheckConstraint(condition=models.Q(**{f"{field}__in": choices.values}), name=name)
