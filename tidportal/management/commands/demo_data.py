"""Load demo data for the embedded default: staff users, a demo partner with a key, demo cases.

Credentials are printed once, when created; they are stored only as hashes. Running the command
again leaves existing data alone (use --reset-credentials for new passwords and a new key).
"""

import io
import secrets
from typing import Any

import numpy as np
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand
from django.db import transaction
from PIL import Image, ImageFilter

from cases.models import Case
from cases.services import case_create
from hashlists.models import HashList
from partners.models import ApiKey, Partner
from partners.services import api_key_create, partner_create
from tidkit.hashing import hash_image

DEMO_PARTNER = "Demo Platform"
STAFF = [
    # username, group, superuser
    ("admin", None, True),
    ("reviewer", "Case reviewer", False),
    ("supervisor", "Supervisor", False),
    ("partners", "Partner manager", False),
]


class Command(BaseCommand):
    help = "Create demo staff, a demo partner with an API key and a few demo cases."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--reset-credentials",
            action="store_true",
            help="Give the demo staff new passwords and the demo partner a new API key.",
        )

    @transaction.atomic
    def handle(self, *args: Any, reset_credentials: bool = False, **options: Any) -> None:
        lines = self._staff(reset=reset_credentials)
        lines += self._partner(reset=reset_credentials)
        if not Case.objects.exists():
            self._cases()
            lines.append("demo cases: 4 received cases with image and video hashes")
        if lines:
            self.stdout.write(self.style.WARNING("Shown once; stored only as hashes:"))
            for line in lines:
                self.stdout.write(f"  {line}")
        else:
            self.stdout.write(
                "Demo data already loaded (credentials were shown when it was created; "
                "`manage.py demo_data --reset-credentials` makes new ones)."
            )

    def _staff(self, *, reset: bool) -> list[str]:
        User = get_user_model()
        lines = []
        for username, group, superuser in STAFF:
            user = User.objects.filter(username=username).first()
            if user and not reset:
                continue
            password = secrets.token_urlsafe(12)
            if user is None:
                user = User(username=username, is_staff=True, is_superuser=superuser)
            user.set_password(password)
            user.save()
            if group:
                user.groups.add(Group.objects.get(name=group))
            role = "superuser" if superuser else group
            lines.append(f"staff {username!r} ({role}): password {password}")
        return lines

    def _partner(self, *, reset: bool) -> list[str]:
        partner = Partner.objects.filter(name=DEMO_PARTNER).first()
        if partner and not reset:
            return []
        if partner is None:
            partner = partner_create(
                name=DEMO_PARTNER,
                contact_email="trust-and-safety@demo.invalid",
                readable_lists=list(HashList.objects.filter(published=True)),
            )
        _key, raw = api_key_create(partner=partner, name="demo", scopes=list(ApiKey.Scope.values))
        return [f"partner {DEMO_PARTNER!r}: API key {raw}"]

    def _cases(self) -> None:
        rng = np.random.default_rng(20261125)
        for n, reporter in enumerate(["self", "parent", "trusted_adult", "self"]):
            items = [hash_image(_demo_png(rng)) for _ in range(n % 3 + 1)]
            if n == 3:
                frames = [hash_image(_demo_png(rng)) for _ in range(5)]
                items.append(
                    {
                        "media_type": "video",
                        "md5": secrets.token_hex(16),
                        "vpdq": [
                            {"t": t, "pdq": f["pdq"], "q": f["pdq_quality"]}
                            for t, f in enumerate(frames)
                        ],
                    }
                )
            case_create(reporter=reporter, under_18_when_made=True, items=items)


def _demo_png(rng: np.random.Generator) -> bytes:
    """A random smooth picture: enough structure for realistic PDQ quality, nothing depicted."""
    noise = rng.integers(0, 256, size=(48, 64, 3), dtype=np.uint8)
    image = Image.fromarray(noise).resize((640, 480), Image.Resampling.BICUBIC)
    image = image.filter(ImageFilter.GaussianBlur(6))

    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
