"""What the tidkit tests need from the real server besides accepted cases
(tests.helpers.accepted_case): items to report, signed snapshots, and partner keys. Shared by
test_sync, test_scan and test_cli."""

import random
from pathlib import Path

from hashlists.models import HashEntry, HashList
from hashlists.snapshots import hash_list_snapshot_build
from partners.models import Partner
from partners.services import api_key_create
from tidkit.hashing import hash_image


def random_image(rng: random.Random) -> dict:
    """A distinct, publishable image item (random PDQ of good quality; pHash with 16-48 bits)."""
    return {
        "media_type": "image",
        "md5": f"{rng.getrandbits(128):032x}",
        "pdq": f"{rng.getrandbits(256):064x}",
        "pdq_quality": 90,
        "phash": f"{rng.getrandbits(32):08x}" + "f0f00f0f",
    }


def random_video(rng: random.Random, frames: int = 4) -> dict:
    return {
        "media_type": "video",
        "md5": f"{rng.getrandbits(128):032x}",
        "vpdq": [{"t": t, "pdq": f"{rng.getrandbits(256):064x}", "q": 90} for t in range(frames)],
    }


def photo_items(paths: list[Path]) -> list[dict]:
    """Items for real files, hashed exactly as the reporter's browser does."""
    return [hash_image(path) for path in paths]


def snapshot(hash_list: HashList):  # noqa: ANN201 - the Snapshot built
    return hash_list_snapshot_build(hash_list=hash_list)


def partner_key(partner: Partner, *scopes: str) -> str:
    return api_key_create(partner=partner, name="tidkit", scopes=list(scopes or ["lists:read"]))[1]


def active_entries(hash_list: HashList) -> dict[str, tuple[str, str]]:
    """{public id: (hash type, value)} of the list's active entries, from the database."""
    return {
        str(public_id): (hash_type, value)
        for public_id, hash_type, value in HashEntry.objects.filter(
            hash_list=hash_list, status=HashEntry.Status.ACTIVE
        ).values_list("public_id", "hash_type", "value")
    }
