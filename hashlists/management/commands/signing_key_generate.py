"""Generate an Ed25519 snapshot-signing key (development, or the first key of a deployment)."""

import os
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from hashlists.signing import key_id_for, private_key_pem, raw_public


class Command(BaseCommand):
    help = "Write a new Ed25519 private key (PEM, mode 0600) for signing hash-list snapshots."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--path",
            default=settings.TID_SIGNING_KEY_FILE,
            help="Where to write it (default: TID_SIGNING_KEY_FILE).",
        )
        parser.add_argument(
            "--if-missing",
            action="store_true",
            help="Do nothing if the file exists (for start-up scripts).",
        )

    def handle(self, *args: Any, path: str, if_missing: bool, **options: Any) -> None:
        if not path:
            raise CommandError("Give --path or set TID_SIGNING_KEY_FILE.")
        target = Path(path)
        if target.exists():
            if if_missing:
                return
            raise CommandError(
                f"{target} exists; move it away first (old snapshots need its "
                "public key: add it to TID_SIGNING_PUBLIC_KEYS when rotating)."
            )
        key = Ed25519PrivateKey.generate()
        target.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as fh:
            fh.write(private_key_pem(key))
        key_id = key_id_for(raw_public(key.public_key()))
        self.stdout.write(f"Signing key {key_id} written to {target}")
