"""What the OpenAPI schema of every partner endpoint shares: the one error shape (DESIGN.md 5),
the error answers to document beside each endpoint's own, and the hooks that decide what the
partner document covers (SPECTACULAR_SETTINGS)."""

from typing import Any

from drf_spectacular.utils import OpenApiExample, OpenApiResponse
from rest_framework import serializers

from tidportal.api import ERROR_CODES


class ErrorSerializer(serializers.Serializer):
    """Every error the API answers, whatever the endpoint."""

    error = serializers.CharField(
        help_text="A stable code for programs: "
        + ", ".join(f"`{code}` ({status})" for status, code in ERROR_CODES.items())
        + "."
    )
    detail = serializers.CharField(help_text="A sentence for people, in the request's language.")
    fields = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        help_text='Per field, for 400: {"items.3.value": ["..."]} (batch items by index, nested '
        "fields joined by dots); empty otherwise.",
    )


_ERROR_TEXT = {
    400: "The request is not valid; `fields` says what, by field (and item index for batches). "
    "Nothing was stored.",
    401: "No key, or a key that is unknown, revoked or expired.",
    403: "The partner is suspended, or the key lacks the scope this endpoint needs.",
    404: "Not found, or not visible to this partner (both answer the same).",
    413: "The request body is too large.",
    415: "Only application/json is accepted.",
    429: "Too many requests for this key; retry after the seconds in Retry-After.",
}

# What the API really says in each case, so that the examples teach the real answers.
_ERROR_DETAIL = {
    401: "This API key is not valid: unknown, revoked or expired.",
    403: "This partner is suspended. Contact the tidportal team.",
    404: "Not found.",
    413: "The request is too large.",
    415: 'Unsupported media type "text/plain" in request.',
    429: "Too many attempts. Please wait 1 minute(s) and try again.",
}

_INVALID_FIELDS = {"items.0.value": ["Enter 64 lowercase hex characters."]}


def error_responses(
    *codes: int,
    invalid_fields: dict[str, list[str]] | None = None,
    descriptions: dict[int, str] | None = None,
) -> dict[int, OpenApiResponse]:
    """The documented error answers, for ``@extend_schema(responses={200: ..., **error_responses(
    400, *PARTNER_ERRORS)})``. ``invalid_fields`` is the 400 example's ``fields``, so that each
    endpoint can show an error about its own fields; ``descriptions`` replaces the general
    description of a code with what it means at this endpoint."""
    descriptions = descriptions or {}
    return {
        code: _error_response(
            code, invalid_fields or _INVALID_FIELDS, descriptions.get(code, _ERROR_TEXT[code])
        )
        for code in codes
    }


def _error_response(
    code: int, invalid_fields: dict[str, list[str]], description: str
) -> OpenApiResponse:
    if code == 400:
        value = {
            "error": ERROR_CODES[400],
            "detail": "Some of what was sent is not valid.",
            "fields": invalid_fields,
        }
    else:
        value = {"error": ERROR_CODES[code], "detail": _ERROR_DETAIL[code], "fields": {}}
    return OpenApiResponse(
        ErrorSerializer,
        description=description,
        examples=[
            OpenApiExample(
                ERROR_CODES[code], value=value, response_only=True, status_codes=[str(code)]
            )
        ],
    )


PARTNER_ERRORS = (401, 403, 429)


# ------------------------------------------------------------------------------------------------
# Hooks (SPECTACULAR_SETTINGS PREPROCESSING_HOOKS / POSTPROCESSING_HOOKS)
# ------------------------------------------------------------------------------------------------

# The document is for partner platforms. The reporter site's JSON API (/api/public/) is left out
# on purpose: it is the private contract between the site's own pages and the server (anonymous,
# CSRF-protected with the site's cookie, throttled per client), not something partners may call,
# and publishing it beside the partner API would invite other programs to file reports.
PARTNER_PATH_PREFIXES = ("/api/v1/", "/api/compat/")


def partner_endpoints_only(endpoints: list[tuple], **kwargs: Any) -> list[tuple]:
    """Keep the partner API (/api/v1/) and the StopNCII-compatible API (/api/compat/)."""
    return [endpoint for endpoint in endpoints if endpoint[0].startswith(PARTNER_PATH_PREFIXES)]


RESPONSE_HEADERS_EXTENSION = "x-tid-response-headers"


def response_headers(headers: dict[int, dict[str, str]]) -> dict[str, Any]:
    """Response headers by status code, ``{200: {"ETag": "what it is"}}``, for
    ``@extend_schema(extensions=response_headers(...))``: drf-spectacular has no option for them,
    so document_error_headers moves them where OpenAPI wants them."""
    return {
        RESPONSE_HEADERS_EXTENSION: {
            str(status): {
                name: {"schema": {"type": "string"}, "description": description}
                for name, description in by_name.items()
            }
            for status, by_name in headers.items()
        }
    }


_ERROR_HEADERS = {
    "401": {
        "WWW-Authenticate": {
            "schema": {"type": "string"},
            "description": 'How to authenticate: `Bearer realm="tidportal"` on /api/v1/, '
            '`x-functions-key realm="tidportal"` on the StopNCII-compatible API.',
        }
    },
    "429": {
        "Retry-After": {
            "schema": {"type": "integer", "minimum": 0},
            "description": "Seconds to wait before the next request with this key.",
        }
    },
}


def document_response_headers(result: dict, **kwargs: Any) -> dict:
    """Response headers where OpenAPI wants them: those an endpoint declares with
    response_headers(), and WWW-Authenticate on every 401 and Retry-After on every 429."""
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.get("responses", {})
            declared = operation.pop(RESPONSE_HEADERS_EXTENSION, {})
            for status, headers in [*declared.items(), *_ERROR_HEADERS.items()]:
                if status in responses:
                    responses[status].setdefault("headers", {}).update(headers)
    return result
