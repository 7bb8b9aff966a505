"""Reads on partners and keys."""

import hmac

from django.utils import timezone

from partners.models import ApiKey, Partner
from partners.services import api_key_digest


def api_key_get_for_raw_key(*, raw_key: str) -> ApiKey | None:
    """The usable key that ``raw_key`` is, or None (see api_key_authenticate)."""
    try:
        return api_key_authenticate(raw_key=raw_key)
    except (ApiKeyInvalid, PartnerSuspended):
        return None


def partner_names_for_public() -> list[str]:
    """Names of the platforms taking part, for the reporter site. Suspended partners are left out:
    the site promises reporters that the platforms it names are the ones acting on the list."""
    return list(
        Partner.objects.filter(status=Partner.Status.ACTIVE)
        .order_by("name")
        .values_list("name", flat=True)
    )


class ApiKeyInvalid(Exception):
    """Unknown, malformed, wrong, revoked or expired: one answer for all (401)."""


class PartnerSuspended(Exception):
    """The key is good but its partner is suspended (403)."""


def api_key_authenticate(*, raw_key: str) -> ApiKey:
    """The key ``raw_key`` is, checked in constant time; raises ApiKeyInvalid or PartnerSuspended.

    Revocation, expiry and suspension are read from the database on every request, so they take
    effect at once.
    """
    parts = raw_key.split("_", 2)
    if len(parts) != 3 or parts[0] != "tid" or not parts[1] or not parts[2]:
        raise ApiKeyInvalid
    key = ApiKey.objects.select_related("partner").filter(prefix=parts[1]).first()
    expected = key.digest if key is not None else "0" * 64
    if not hmac.compare_digest(api_key_digest(raw_key), expected) or key is None:
        raise ApiKeyInvalid
    now = timezone.now()
    if key.revoked_at is not None or (key.expires_at is not None and key.expires_at <= now):
        raise ApiKeyInvalid
    if not key.partner.is_active:
        raise PartnerSuspended
    return key
