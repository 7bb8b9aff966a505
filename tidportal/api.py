"""What every JSON API of the project shares: one error shape, CSRF for the site's own pages,
a request body limit, and throttles keyed without storing who the client is."""

import sys
from typing import Any

import kombu.exceptions
import redis.exceptions
from django import db
from django.core.exceptions import PermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.template.loader import render_to_string
from django.utils.translation import gettext as _
from django.views.defaults import page_not_found
from rest_framework import exceptions, parsers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import SimpleRateThrottle
from rest_framework.views import exception_handler as drf_exception_handler

from tidportal.clients import client_key

ERROR_CODES = {
    400: "invalid",
    401: "not_authenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    411: "length_required",
    413: "too_large",
    415: "unsupported_media_type",
    429: "throttled",
}


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request is too large."
    default_code = "too_large"


def error_response(
    status_code: int,
    detail: str,
    *,
    code: str | None = None,
    fields: dict | None = None,
    headers: dict | None = None,
) -> Response:
    body = {"error": code or ERROR_CODES.get(status_code, "error"), "detail": detail}
    body["fields"] = fields or {}
    return Response(body, status=status_code, headers=headers)


def flatten_errors(detail: Any, prefix: str = "") -> dict[str, list[str]]:
    """DRF's nested error detail as ``{"items.2.pdq": ["..."]}``."""
    if isinstance(detail, dict):
        out: dict[str, list[str]] = {}
        for key, value in detail.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            out.update(flatten_errors(value, name))
        return out
    if isinstance(detail, list) and detail and all(isinstance(v, str) for v in detail):
        return {prefix or "non_field_errors": [str(v) for v in detail]}
    if isinstance(detail, list):
        out = {}
        for index, value in enumerate(detail):
            if value:
                out.update(flatten_errors(value, f"{prefix}.{index}" if prefix else str(index)))
        return out
    return {prefix or "non_field_errors": [str(detail)]}


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Every API error as ``{"error": code, "detail": text, "fields": {...}}`` (DESIGN.md 5)."""
    if isinstance(exc, DjangoValidationError):
        fields = (
            exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
        )
        return error_response(400, _("Some of what was sent is not valid."), fields=fields)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    headers = {
        k: v for k, v in response.items() if k in ("Retry-After", "WWW-Authenticate", "Allow")
    }
    if isinstance(exc, exceptions.ValidationError):
        return error_response(
            400,
            _("Some of what was sent is not valid."),
            fields=flatten_errors(exc.detail),
            headers=headers,
        )
    detail = exc.detail if isinstance(exc, exceptions.APIException) else str(exc)
    code = getattr(exc, "default_code", None) if response.status_code not in ERROR_CODES else None
    if isinstance(exc, exceptions.Throttled):
        code = exc.get_codes() if exc.get_codes() != "throttled" else "throttled"
        if code == "throttled":
            minutes = max(1, -(-int(exc.wait or 1) // 60))
            detail = _("Too many attempts. Please wait %(minutes)d minute(s) and try again.") % {
                "minutes": minutes
            }
    return error_response(response.status_code, str(detail), code=code, headers=headers)


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """The project's handler404: a URL under /api/ that matches no route (an unknown path, or a
    list slug with a character no slug has) answers in the API's error shape like every other
    API 404; the rest of the site gets Django's page."""
    if request.path.startswith("/api/"):
        body = {"error": ERROR_CODES[404], "detail": str(exceptions.NotFound.default_detail)}
        return JsonResponse({**body, "fields": {}}, status=404)
    return page_not_found(request, exception)


# What a dependency that is down looks like from here: PostgreSQL unreachable or restarting, Redis
# (cache, throttles) stopped, the broker refusing a publish.
DEPENDENCY_ERRORS: tuple[type[BaseException], ...] = (
    db.OperationalError,
    db.InterfaceError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    kombu.exceptions.OperationalError,
)
RETRY_AFTER_SECONDS = 10


def server_error(request: HttpRequest) -> HttpResponse:
    """The project's handler500. While a dependency is down, the answer is a clear 503 with
    Retry-After (DESIGN.md section 8: nothing acknowledged is lost, so trying again later is
    right), not a 500: JSON in the error shape under /api/, a readable page elsewhere. Other
    errors stay 500s, in the same two forms."""
    exc = sys.exc_info()[1]
    unavailable = isinstance(exc, DEPENDENCY_ERRORS)
    status_code = 503 if unavailable else 500
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS)} if unavailable else {}
    if unavailable:
        detail = _(
            "The service is briefly unavailable. Nothing you sent was lost; please try again "
            "in a few seconds."
        )
    else:
        detail = _("Something went wrong on our side. Please try again later.")
    if request.path.startswith("/api/"):
        body = {"error": "unavailable" if unavailable else "server_error", "detail": detail}
        return JsonResponse({**body, "fields": {}}, status=status_code, headers=headers)
    page = render_to_string(
        "site/error.html",
        {"status_code": status_code, "detail": detail, "unavailable": unavailable},
    )
    return HttpResponse(page, status=status_code, headers=headers)


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser (the only one the API takes), except that a body nested deeper than
    Python's recursion limit (say 10,000 levels of ``[[[``) is a 400 like any other malformed
    JSON, instead of a RecursionError and a 500."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise exceptions.ParseError(_("JSON parse error: nested too deeply.")) from None


def body_limit_enforce(request: Request, max_bytes: int) -> None:
    """Refuse, before anything reads it, a body whose declared length is over ``max_bytes``, or
    is not a length at all (413 in the error shape)."""
    try:
        size = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        size = max_bytes + 1
    if size > max_bytes or size < 0:
        raise PayloadTooLarge(
            _("This request is too large (the limit is %(mb).1f MB).")
            % {"mb": max_bytes / 1_000_000}
        )


class SiteJsonApiMixin:
    """For the JSON APIs the site's own pages call: CSRF-protected and size-limited.

    DRF exempts its views from CSRF and only re-checks it for session-authenticated users; these
    endpoints are anonymous, so the check is made here for every unsafe request.
    """

    max_body_bytes: int = 64 * 1024

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        body_limit_enforce(request, self.max_body_bytes)
        if request.method not in ("GET", "HEAD", "OPTIONS", "TRACE"):
            check = CsrfViewMiddleware(lambda req: None)
            check.process_request(request._request)
            reason = check.process_view(request._request, None, (), {})
            if reason is not None:
                raise exceptions.PermissionDenied(
                    _("Your session has expired. Reload the page and try again.")
                )
        super().initial(request, *args, **kwargs)  # type: ignore[misc]


class AnonymousClientThrottle(SimpleRateThrottle):
    """A rate per anonymous client, keyed by an HMAC of its address (tidportal.clients)."""

    def get_cache_key(self, request: Request, view: Any) -> str:
        return f"throttle:{self.scope}:{client_key(request)}"


class ReportSubmitThrottle(AnonymousClientThrottle):
    scope = "public_report"


class CaseLookupThrottle(AnonymousClientThrottle):
    scope = "public_case"
