"""Writes on partners and their API keys. Each function is one transaction."""

import hashlib
import secrets
import string
from collections.abc import Sequence
from datetime import datetime

from django.contrib.auth.models import AbstractBaseUser
from django.core.cache import cache
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify
from django.utils.translation import gettext as _

from hashlists.models import HashList
from partners.models import ApiKey, Partner

KEY_PREFIX_LENGTH = 12
KEY_SECRET_LENGTH = 40  # ~238 bits from a 62-symbol alphabet
_PREFIX_ALPHABET = string.ascii_lowercase + string.digits
_SECRET_ALPHABET = string.ascii_letters + string.digits


def api_key_digest(raw_key: str) -> str:
    """SHA-256 of the whole key. The key has ~238 random bits, so a fast hash is enough."""
    return hashlib.sha256(raw_key.encode()).hexdigest()


@transaction.atomic
def partner_create(
    *,
    name: str,
    slug: str = "",
    contact_email: str = "",
    readable_lists: Sequence[HashList] = (),
) -> Partner:
    """Create an active partner allowed to read ``readable_lists``.

    Raises ValidationError (field errors) for a duplicate name or slug or a bad e-mail address.
    """
    partner = Partner(name=name, slug=slug or slugify(name), contact_email=contact_email)
    partner.full_clean()
    partner.save()
    partner.readable_lists.set(readable_lists)
    return partner


@transaction.atomic
def api_key_create(
    *,
    partner: Partner,
    name: str,
    scopes: Sequence[str],
    expires_at: datetime | None = None,
    created_by: AbstractBaseUser | None = None,
) -> tuple[ApiKey, str]:
    """Create a key for ``partner``; return it with the raw key, which is never stored.

    The caller shows the raw key exactly once. Raises ValidationError for unknown or missing
    scopes or an empty name.
    """
    unknown = set(scopes) - set(ApiKey.Scope.values)
    if not scopes or unknown:
        raise ValidationError(
            {
                "scopes": _("Choose one or more of: %(scopes)s.")
                % {"scopes": ", ".join(ApiKey.Scope.values)}
            }
        )
    prefix = "".join(secrets.choice(_PREFIX_ALPHABET) for _ in range(KEY_PREFIX_LENGTH))
    secret = "".join(secrets.choice(_SECRET_ALPHABET) for _ in range(KEY_SECRET_LENGTH))
    raw_key = f"tid_{prefix}_{secret}"
    key = ApiKey(
        partner=partner,
        name=name,
        prefix=prefix,
        digest=api_key_digest(raw_key),
        scopes=sorted(set(scopes)),
        expires_at=expires_at,
        created_by=created_by,
    )
    key.full_clean()
    key.save()
    return key, raw_key


@transaction.atomic
def api_key_revoke(*, key: ApiKey) -> ApiKey:
    """Revoke a key: every request with it fails from now on. Revoking again changes nothing."""
    key = ApiKey.objects.select_for_update().get(pk=key.pk)
    if key.revoked_at is None:
        key.revoked_at = timezone.now()
        key.save(update_fields=["revoked_at"])
    return key


@transaction.atomic
def partner_set_status(*, partner: Partner, staff: AbstractBaseUser, status: str) -> Partner:
    """Suspend or reinstate a partner. A suspended partner's keys all fail at once (every
    request re-checks the partner's status). Raises PermissionDenied without
    ``partners.suspend_partner``."""
    if not staff.has_perm("partners.suspend_partner"):
        raise PermissionDenied(_("Only partner managers can suspend or reinstate partners."))
    if status not in Partner.Status.values:
        raise ValidationError({"status": _("Unknown status.")})
    partner = Partner.objects.select_for_update().get(pk=partner.pk)
    if partner.status != status:
        partner.status = status
        partner._change_reason = f"set {status}"
        partner.save(update_fields=["status", "updated_at"])
    return partner


def api_key_mark_used(*, key: ApiKey) -> None:
    """Keep ``last_used_at`` roughly current without a database write per request: at most one
    write a minute per key (the cache remembers the last one)."""
    if cache.add(f"apikey-used:{key.pk}", 1, timeout=60):
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=timezone.now())
