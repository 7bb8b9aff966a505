"""Authentication of the StopNCII-compatible API: partner keys in StopNCII's two headers.

python-threatexchange's StopNCII client (``StopNCIIAPI``) sends two headers on every request:
``Ocp-Apim-Subscription-Key`` (StopNCII's Azure API Management subscription, the same on every
call) and ``x-functions-key`` (a key per endpoint: ``fetch_function_key`` for FetchHashes, the
``additional_function_keys`` entry for SubmitFeedback). It cannot send ``Authorization``, so
here both headers carry our partner keys (``tid_<prefix>_<secret>``), and they combine thus:

- both must be present and each a usable key (known, not revoked, not expired: checked in
  constant time by ``api_key_authenticate``), and both must belong to the same partner;
- the function key is the one that must carry the endpoint's scope (``lists:read`` for
  FetchHashes, ``matches:write`` for SubmitFeedback), as StopNCII's function keys are per
  endpoint; the subscription key only has to be the same partner's;
- requests are throttled per function key, and both keys' ``last_used_at`` is kept.

The simplest set-up is one key with both scopes in all three places. Asking for both headers
mirrors StopNCII, so a client configured with only one of them fails here as it would there.
Missing or bad keys are a 401, a suspended partner a 403, in the project's JSON error shape; the
client raises ``requests.HTTPError`` on either.
"""

import hmac

from django.utils.translation import gettext as _
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from partners.api.authentication import PartnerPrincipal, api_key_check
from partners.models import ApiKey
from partners.services import api_key_mark_used

SUBSCRIPTION_HEADER = "Ocp-Apim-Subscription-Key"
FUNCTION_HEADER = "x-functions-key"


class StopNCIIKeyAuthentication(authentication.BaseAuthentication):
    """Partner keys in ``Ocp-Apim-Subscription-Key`` and ``x-functions-key`` (module docstring)."""

    def authenticate(self, request: Request) -> tuple[PartnerPrincipal, ApiKey] | None:
        function_raw = request.headers.get(FUNCTION_HEADER, "").strip()
        subscription_raw = request.headers.get(SUBSCRIPTION_HEADER, "").strip()
        if not function_raw and not subscription_raw:
            return None  # -> 401 "not authenticated"
        if not function_raw or not subscription_raw:
            raise exceptions.AuthenticationFailed(
                _("Send a partner API key in both headers: %(a)s and %(b)s.")
                % {"a": SUBSCRIPTION_HEADER, "b": FUNCTION_HEADER}
            )
        function_key = api_key_check(function_raw)
        subscription_key = (
            function_key
            if hmac.compare_digest(function_raw.encode(), subscription_raw.encode())
            else api_key_check(subscription_raw)
        )
        if subscription_key.partner_id != function_key.partner_id:
            raise exceptions.AuthenticationFailed(
                _("The two keys belong to different partners: use keys of one partner.")
            )
        for key in {function_key.pk: function_key, subscription_key.pk: subscription_key}.values():
            api_key_mark_used(key=key)
        return PartnerPrincipal(function_key.partner), function_key

    def authenticate_header(self, request: Request) -> str:
        # Any value makes DRF answer 401 (not 403) when the keys are missing or wrong.
        return f'{FUNCTION_HEADER} realm="tidportal"'


class StopNCIIKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    """Both headers, required together (one security requirement naming two schemes)."""

    target_class = StopNCIIKeyAuthentication
    name = ["StopNCIISubscriptionKey", "StopNCIIFunctionKey"]

    def get_security_definition(self, auto_schema: object) -> list[dict]:
        return [
            {
                "type": "apiKey",
                "in": "header",
                "name": SUBSCRIPTION_HEADER,
                "description": "A partner API key (`tid_<prefix>_<secret>`) of the same partner "
                "as the function key: python-threatexchange's `subscription_key`.",
            },
            {
                "type": "apiKey",
                "in": "header",
                "name": FUNCTION_HEADER,
                "description": "A partner API key with the endpoint's scope: `lists:read` for "
                "FetchHashes (python-threatexchange's `fetch_function_key`), `matches:write` "
                "for SubmitFeedback (its `additional_function_keys`). The same key may serve "
                "as the subscription key.",
            },
        ]
