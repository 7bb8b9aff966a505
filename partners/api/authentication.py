"""Partner API authentication: `Authorization: Bearer tid_<prefix>_<secret>` (DESIGN.md 5)."""

from dataclasses import dataclass
from typing import Any

from django.utils.translation import gettext as _
from rest_framework import authentication, exceptions, permissions
from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle

from partners.models import ApiKey, Partner
from partners.selectors import ApiKeyInvalid, PartnerSuspended, api_key_authenticate
from partners.services import api_key_mark_used


@dataclass(frozen=True)
class PartnerPrincipal:
    """What `request.user` is on the partner API: the partner behind the key."""

    partner: Partner
    is_authenticated: bool = True
    is_anonymous: bool = False

    @property
    def pk(self) -> int:
        return self.partner.pk


def api_key_check(raw_key: str) -> ApiKey:
    """The usable key behind ``raw_key``, or the API's answer: 401 for a key that is unknown,
    revoked or expired, 403 for a suspended partner's."""
    try:
        return api_key_authenticate(raw_key=raw_key)
    except ApiKeyInvalid:
        raise exceptions.AuthenticationFailed(
            _("This API key is not valid: unknown, revoked or expired.")
        ) from None
    except PartnerSuspended:
        raise exceptions.PermissionDenied(
            _("This partner is suspended. Contact the tidportal team.")
        ) from None


class ApiKeyAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[PartnerPrincipal, ApiKey] | None:
        header = authentication.get_authorization_header(request)
        if not header:
            return None
        try:
            scheme, _space, raw = header.decode("ascii").partition(" ")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed(_("Malformed Authorization header.")) from None
        if scheme.lower() != "bearer" or not raw.strip():
            raise exceptions.AuthenticationFailed(_("Use the header: Authorization: Bearer <key>."))
        key = api_key_check(raw.strip())
        api_key_mark_used(key=key)
        return PartnerPrincipal(key.partner), key

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="tidportal"'


class HasScope(permissions.BasePermission):
    """The key carries the view's ``required_scope``."""

    def has_permission(self, request: Request, view: Any) -> bool:
        scope = getattr(view, "required_scope", None)
        key = request.auth
        if not isinstance(key, ApiKey):
            return False
        if scope and scope not in key.scopes:
            self.message = _("This API key lacks the %(scope)s scope.") % {"scope": scope}
            return False
        return True


class PartnerKeyThrottle(SimpleRateThrottle):
    """Requests per API key (TID_THROTTLE_PARTNER)."""

    scope = "partner"

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        key = request.auth
        return f"throttle:partner:{key.pk}" if isinstance(key, ApiKey) else None
