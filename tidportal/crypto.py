"""Secrets the server must use, not just check, encrypted at rest (``EncryptedTextField``).

API keys and PINs are stored as digests because the server only compares them. A partner's
webhook secret is an HMAC key the server signs with, so it must be recoverable; stored in
plaintext, a database dump or backup would let anyone forge our webhooks. It is stored encrypted
with Fernet (AES-128-CBC and HMAC-SHA256, from ``cryptography``) under a key that is not in the
database: one derived with HKDF-SHA256 from ``SECRET_KEY``.

Why ``SECRET_KEY`` and no key of its own: every process that handles these secrets (web nodes,
where staff set them; workers, which sign with them) already holds ``SECRET_KEY``, so a separate
key would add a secret to distribute without keeping it from anyone; and if ``SECRET_KEY`` leaks
it must be rotated anyway, which then rotates this key with it. Rotation follows Django's: the new
key in ``SECRET_KEY``, the old ones in ``SECRET_KEY_FALLBACKS`` (still decrypt, never encrypt),
then ``manage.py secrets_reencrypt`` moves every value to the new key, after which the fallbacks
can go (docs/deploy.md, "Keys and their rotation").

Stored values are ``PREFIX`` + a Fernet token, so a value without the prefix is recognisably
plaintext: a row written before the migration that encrypted the column, or by the previous
release during a rolling deploy. Such a value is read as it is and encrypted on its next save or
by ``secrets_reencrypt``. A value with the prefix that no key decrypts (the key it was encrypted
under is lost) is never returned as text: it reads as an ``UnreadableSecret``, which code that
uses the secret must refuse (a webhook is not signed with it) and which a save writes back
unchanged, so restoring the lost key makes it readable again.
"""

import base64
import functools
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.core import validators
from django.core.exceptions import ValidationError
from django.db import models
from django.db.backends.base.base import BaseDatabaseWrapper
from django.utils.translation import gettext_lazy as _

PREFIX = "tidenc1:"
# Binds the derived key to this use: the same SECRET_KEY gives unrelated keys for sessions,
# signing and anything else that derives one.
_HKDF_INFO = b"tidportal.crypto: encrypted fields, Fernet, v1"


class SecretUnreadable(Exception):
    """A stored secret that no key in ``SECRET_KEY`` or ``SECRET_KEY_FALLBACKS`` decrypts."""


class UnreadableSecret:
    """The value of an ``EncryptedTextField`` whose stored ciphertext cannot be decrypted.

    Not a ``str``, so it cannot be used as a key by mistake (``.encode()`` fails); true, because a
    secret is set, only unusable. Holds the stored value so that saving the row keeps it.
    """

    __slots__ = ("stored",)

    def __init__(self, stored: str) -> None:
        self.stored = stored

    def __repr__(self) -> str:
        return "<UnreadableSecret>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, UnreadableSecret) and other.stored == self.stored

    def __hash__(self) -> int:
        return hash(self.stored)


def _keys() -> tuple[str, ...]:
    """``SECRET_KEY`` first (encrypts and decrypts), then the fallbacks (decrypt only)."""
    return (settings.SECRET_KEY, *settings.SECRET_KEY_FALLBACKS)


@functools.lru_cache(maxsize=8)
def _fernets(keys: tuple[str, ...]) -> tuple[Fernet, MultiFernet]:
    """The Fernet of the current key, and one that tries every key in turn."""
    fernets = [
        Fernet(
            base64.urlsafe_b64encode(
                HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_HKDF_INFO).derive(
                    key.encode()
                )
            )
        )
        for key in keys
    ]
    return fernets[0], MultiFernet(fernets)


def is_encrypted(stored: str) -> bool:
    """Whether a stored value is ciphertext (otherwise it is legacy plaintext, or empty)."""
    return stored.startswith(PREFIX)


def encrypt(plaintext: str) -> str:
    """The stored form of ``plaintext``: ``PREFIX`` + a Fernet token under ``SECRET_KEY``.

    Each call gives a different token (random IV), so equal secrets do not look equal at rest.
    """
    current, _ = _fernets(_keys())
    return PREFIX + current.encrypt(plaintext.encode()).decode("ascii")


def decrypt(stored: str) -> str:
    """The plaintext of an encrypted value, under ``SECRET_KEY`` or any of its fallbacks.

    Raises ``SecretUnreadable`` if no key decrypts it (the key it was made with is gone, or the
    value was altered), and ``ValueError`` for a value that is not encrypted at all.
    """
    if not is_encrypted(stored):
        raise ValueError("not an encrypted value")
    _, any_key = _fernets(_keys())
    try:
        return any_key.decrypt(stored.removeprefix(PREFIX)).decode()
    except InvalidToken:
        raise SecretUnreadable(
            "cannot be decrypted with SECRET_KEY or SECRET_KEY_FALLBACKS: the key it was "
            "encrypted under is no longer configured"
        ) from None


def is_under_current_key(stored: str) -> bool:
    """Whether a value is encrypted with ``SECRET_KEY`` itself (not with a fallback)."""
    if not is_encrypted(stored):
        return False
    current, _ = _fernets(_keys())
    try:
        current.decrypt(stored.removeprefix(PREFIX))
    except InvalidToken:
        return False
    return True


def _not_ciphertext(value: str) -> None:
    """A plaintext that looked like ciphertext would be stored as it is, and never decrypt."""
    if is_encrypted(value):
        raise ValidationError(
            _("This value cannot start with %(prefix)s."),
            code="reserved_prefix",
            params={"prefix": PREFIX},
        )


class EncryptedTextField(models.TextField):
    """A text field stored encrypted (see the module docstring); reads as plaintext ``str``.

    Empty stays empty (it means "not set" and reveals nothing). ``max_length`` limits the
    plaintext; the column is ``text``, as the ciphertext is longer and its length varies.
    Filtering on the field compares stored values, so only ``""`` is a useful lookup. Dumps
    (``dumpdata``) carry the ciphertext, and loading it stores it unchanged.
    """

    description = _("Text (encrypted at rest)")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Added here rather than passed on, as CharField does: not part of the migration state.
        self.validators.append(_not_ciphertext)
        if self.max_length is not None:
            self.validators.append(validators.MaxLengthValidator(self.max_length))

    def from_db_value(
        self, value: str | None, expression: object, connection: BaseDatabaseWrapper
    ) -> str | UnreadableSecret | None:
        if not value or not is_encrypted(value):
            return value
        try:
            return decrypt(value)
        except SecretUnreadable:
            return UnreadableSecret(value)

    def get_db_prep_save(self, value: Any, connection: BaseDatabaseWrapper) -> Any:
        if hasattr(value, "as_sql"):
            return value
        return super().get_db_prep_save(stored_form(value), connection)

    def to_python(self, value: Any) -> Any:
        if isinstance(value, UnreadableSecret):
            return value
        return super().to_python(value)

    def value_to_string(self, obj: models.Model) -> str:
        return stored_form(self.value_from_object(obj)) or ""

    def run_validators(self, value: Any) -> None:
        if not isinstance(value, UnreadableSecret):
            super().run_validators(value)


def stored_form(value: str | UnreadableSecret | None) -> str | None:
    """What an ``EncryptedTextField`` writes for ``value``: ciphertext for any non-empty text,
    except text that already is ciphertext (a dump being loaded) and an unreadable secret."""
    if isinstance(value, UnreadableSecret):
        return value.stored
    if not value or is_encrypted(value):
        return value
    return encrypt(value)
