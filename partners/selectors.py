"""Reads on partners and keys."""

import hmac

from partners.models import ApiKey, Partner
from partners.services import api_key_digest


def api_key_get_for_raw_key(*, raw_key: str) -> ApiKey | None:
    """The usable key that ``raw_key`` is, or None (unknown, wrong secret, revoked, expired,
    partner suspended). Found by prefix; the digest is compared in constant time."""
    parts = raw_key.split("_", 2)
    if len(parts) != 3 or parts[0] != "tid" or not parts[1] or not parts[2]:
        return None
    key = ApiKey.objects.select_related("partner").filter(prefix=parts[1]).first()
    if key is None:
        # Spend the same digest work as a real comparison, so timing does not tell prefixes apart.
        hmac.compare_digest(api_key_digest(raw_key), "0" * 64)
        return None
    if not hmac.compare_digest(api_key_digest(raw_key), key.digest):
        return None
    return key if key.is_usable() else None


def partner_names_for_public() -> list[str]:
    """Names of the platforms taking part, for the reporter site. Suspended partners are left out:
    the site promises reporters that the platforms it names are the ones acting on the list."""
    return list(
        Partner.objects.filter(status=Partner.Status.ACTIVE)
        .order_by("name")
        .values_list("name", flat=True)
    )
