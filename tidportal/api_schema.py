"""What the OpenAPI schema of every partner endpoint shares: the one error shape (DESIGN.md 5)
and the error answers to document beside each endpoint's own."""

from drf_spectacular.utils import OpenApiExample, OpenApiResponse
from rest_framework import serializers


class ErrorSerializer(serializers.Serializer):
    """Every error the API answers, whatever the endpoint."""

    error = serializers.CharField(
        help_text="A stable code: invalid, not_authenticated, forbidden, not_found, throttled, ..."
    )
    detail = serializers.CharField(help_text="A sentence for people.")
    fields = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        help_text='Per field, for 400: {"items.3.value": ["..."]}; empty otherwise.',
    )


_ERROR_TEXT = {
    400: "The request is not valid; `fields` says what, by field (and item index for batches).",
    401: "No key, or a key that is unknown, revoked or expired.",
    403: "The partner is suspended, or the key lacks the scope this endpoint needs.",
    404: "Not found, or not visible to this partner (both answer the same).",
    413: "The request body is too large.",
    415: "Only application/json is accepted.",
    429: "Too many requests for this key; see Retry-After.",
}


def error_responses(*codes: int) -> dict[int, OpenApiResponse]:
    """The documented error answers, for ``@extend_schema(responses={200: ..., **error_responses(
    400, 401)})``."""
    return {
        code: OpenApiResponse(
            ErrorSerializer,
            description=_ERROR_TEXT[code],
            examples=[
                OpenApiExample(
                    f"{code}",
                    value={
                        "error": "invalid",
                        "detail": "Some of what was sent is not valid.",
                        "fields": {"items.0.value": ["Enter 64 lowercase hex characters."]},
                    }
                    if code == 400
                    else {
                        "error": "not_found" if code == 404 else "error",
                        "detail": _ERROR_TEXT[code],
                        "fields": {},
                    },
                    response_only=True,
                    status_codes=[str(code)],
                )
            ],
        )
        for code in codes
    }


PARTNER_ERRORS = (401, 403, 429)
