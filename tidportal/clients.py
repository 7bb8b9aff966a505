"""An anonymous, short-lived key for "the same client" without storing who the client is.

Throttles and PIN lockouts need to tell one place from another, but reporters are anonymous:
their IP address is never stored, logged or used as a key. ``client_key`` is an HMAC of the
address under the server's secret, truncated; it lives only in the cache, under keys that
expire within hours.
"""

import hashlib
import hmac

from django.conf import settings
from django.http import HttpRequest


def client_address(request: HttpRequest) -> str:
    """The client's address as the nearest trusted proxy reports it (see TID_CLIENT_IP_HEADER)."""
    header = settings.TID_CLIENT_IP_HEADER
    if header:
        forwarded = request.META.get(header, "")
        if forwarded:
            # The right-most address is the one our own proxy appended: the others are the
            # client's to invent.
            return forwarded.split(",")[-1].strip()
    return request.META.get("REMOTE_ADDR", "")


def client_key(request: HttpRequest) -> str:
    digest = hmac.new(
        settings.SECRET_KEY.encode(), b"client:" + client_address(request).encode(), hashlib.sha256
    )
    return digest.hexdigest()[:24]
