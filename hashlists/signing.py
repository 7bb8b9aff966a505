"""Ed25519 signatures on hash-list snapshots (DESIGN.md section 4).

A signature covers the snapshot file's SHA-256 together with its list, sequence number and entry
count, in this canonical message (UTF-8, each field on its own line)::

    tidportal-snapshot-v1
    <list slug>
    <seq>
    <entry count>
    <sha256 hex of the file's bytes>

Key ids are the first 16 hex digits of the SHA-256 of the raw 32-byte public key. The private
key comes from TID_SIGNING_KEY (PEM text) or TID_SIGNING_KEY_FILE (a PEM file); rotation keeps
old public keys in TID_SIGNING_PUBLIC_KEYS (base64 raw keys) so older snapshots still verify.

The message and the key ids are tidkit.sync's, the code partners verify with: one definition of
the format on both sides.
"""

import base64
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from tidkit.sync import key_id_for, snapshot_message


@dataclass(frozen=True)
class PublicKey:
    key_id: str
    raw: bytes
    current: bool

    @property
    def b64(self) -> str:
        return base64.b64encode(self.raw).decode()


def raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


@cache
def _private_key(pem: bytes) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ImproperlyConfigured("The signing key must be an Ed25519 private key.")
    return key


def signing_key() -> Ed25519PrivateKey:
    """The current private key. Raises ImproperlyConfigured when none is configured."""
    if settings.TID_SIGNING_KEY:
        return _private_key(settings.TID_SIGNING_KEY.encode())
    path = settings.TID_SIGNING_KEY_FILE
    if path and Path(path).is_file():
        return _private_key(Path(path).read_bytes())
    raise ImproperlyConfigured(
        "No snapshot signing key: set TID_SIGNING_KEY or TID_SIGNING_KEY_FILE "
        "(`manage.py signing_key_generate` makes a development key)."
    )


def public_keys() -> list[PublicKey]:
    """The current public key first, then retired ones still valid for older snapshots."""
    current = raw_public(signing_key().public_key())
    keys = [PublicKey(key_id_for(current), current, True)]
    for b64 in settings.TID_SIGNING_PUBLIC_KEYS:
        raw = base64.b64decode(b64)
        if raw != current:
            keys.append(PublicKey(key_id_for(raw), raw, False))
    return keys


def sign_snapshot(*, list_slug: str, seq: int, count: int, sha256: str) -> tuple[str, bytes]:
    """Return (key id, signature) for a snapshot with the current key."""
    key = signing_key()
    message = snapshot_message(list_slug=list_slug, seq=seq, count=count, sha256=sha256)
    return key_id_for(raw_public(key.public_key())), key.sign(message)


def verify_snapshot(
    *, public_key: bytes, signature: bytes, list_slug: str, seq: int, count: int, sha256: str
) -> bool:
    """Whether ``signature`` is the holder of ``public_key`` signing exactly these values."""
    message = snapshot_message(list_slug=list_slug, seq=seq, count=count, sha256=sha256)
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


def private_key_pem(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
