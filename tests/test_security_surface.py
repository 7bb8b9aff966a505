"""The attack surface, walked whole (issue 8, "Attack and bad input"; DESIGN.md sections 3, 5, 6).

The endpoints are not a hand-kept list: they come from the URL resolver, so a route added later is
held to the same rules without anyone remembering to add it here. Path parameters are filled from
PATH_VALUES (a new parameter name fails loudly until it gets plausible values), and the partner
endpoints' request bodies are the examples of the OpenAPI document.

Related tests elsewhere, not repeated here: tests/cases/test_public_api.py (a wrong PIN and an
unknown case get the same 404; one client's lock; the case-wide lock against distributed
guessing, with time passing by a database update; 415 and 413 on the report endpoint; CSRF with
and without a token on the report endpoint) and tests/test_settings.py (headers on three pages,
production's HTTPS settings).
"""

import json
import math
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.apps import apps
from django.conf import settings as django_settings
from django.core.exceptions import ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.middleware.csrf import _get_new_csrf_string, _mask_cipher_secret
from django.test import Client
from django.test.client import BOUNDARY, encode_multipart
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone
from drf_spectacular.generators import SchemaGenerator
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from rest_framework.permissions import AllowAny

from cases.models import CASE_NUMBER_PATTERN, Case
from cases.services import case_number_normalise
from cases.validation import media_item_clean
from hashlists.models import HashEntry, HashList
from partners.models import ApiKey, Partner
from partners.services import api_key_create, api_key_revoke, partner_create
from tests.helpers import accepted_case, run_in_production
from tests.helpers import numbered_image as image
from tests.partners.test_matches_api import item as match_item
from tidkit import formats
from tidkit.errors import HashFormatError
from tidportal.api import CaseLookupThrottle, ReportSubmitThrottle

ROOT = Path(__file__).resolve().parents[1]
ERROR_KEYS = {"error", "detail", "fields"}
SCOPES = ("lists:read", "matches:write")

# ------------------------------------------------------------------------------------------------
# The surface, from the URL resolver
# ------------------------------------------------------------------------------------------------

_PARAM = re.compile(r"<(?:\w+:)?(\w+)>")
_METHODS = ("get", "post", "put", "patch", "delete")


@dataclass(frozen=True)
class Endpoint:
    route: str  # as the resolver has it: /api/v1/lists/<slug:slug>/changes
    view: type
    method: str  # upper case

    @property
    def params(self) -> list[str]:
        return _PARAM.findall(self.route)

    def url(self, **values: str) -> str:
        return _PARAM.sub(lambda m: values[m.group(1)], self.route)

    @property
    def compat(self) -> bool:
        return self.route.startswith("/api/compat/")

    @property
    def has_body(self) -> bool:
        return self.method in ("POST", "PUT", "PATCH")

    def __str__(self) -> str:
        return f"{self.method} {self.route}"


def _routes() -> Iterator[tuple[str, Any]]:
    def walk(patterns: list, prefix: str) -> Iterator[tuple[str, Any]]:
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                yield from walk(pattern.url_patterns, prefix + str(pattern.pattern))
            elif isinstance(pattern, URLPattern):
                yield prefix + str(pattern.pattern), pattern.callback

    yield from walk(get_resolver().url_patterns, "/")


def _endpoints(*prefixes: str) -> list[Endpoint]:
    found = []
    for route, callback in _routes():
        view = getattr(callback, "cls", None) or getattr(callback, "view_class", None)
        if view is None or not route.startswith(prefixes):
            continue
        found += [Endpoint(route, view, m.upper()) for m in _METHODS if hasattr(view, m)]
    return found


def _is_public(endpoint: Endpoint) -> bool:
    return not endpoint.view.authentication_classes and AllowAny in endpoint.view.permission_classes


PARTNER_SURFACE = _endpoints("/api/v1/", "/api/compat/")
PARTNER_ENDPOINTS = [e for e in PARTNER_SURFACE if not _is_public(e)]
PUBLIC_API = _endpoints("/api/public/")
JSON_BODY_ENDPOINTS = [e for e in PUBLIC_API + PARTNER_ENDPOINTS if e.has_body]
SITE_PAGES = [
    route
    for route, _cb in _routes()
    if not route.startswith(("/api/", "/admin/", "/i18n/")) and not _PARAM.search(route)
]
# Open by design: the signing keys partners verify snapshots with, and the API's documentation.
PUBLIC_BY_DESIGN = {"/api/v1/keys", "/api/v1/schema/", "/api/v1/docs/"}


def test_the_walk_finds_the_whole_surface():
    """A guard on the walk itself: if the resolver's shape changed and it found nothing, every
    parametrised test below would pass vacuously."""
    routes = {e.route for e in PARTNER_SURFACE}
    assert {"/api/v1/lists/", "/api/v1/matches/<str:report_id>", "/api/v1/lookup"} <= routes
    assert "/api/compat/stopncii/v1/SubmitFeedback" in routes
    assert len(PUBLIC_API) == 4 and len(PARTNER_ENDPOINTS) >= 11
    assert {"/", "/report/", "/status/", "/healthz"} <= set(SITE_PAGES)


def test_only_the_keys_and_the_docs_are_open_without_a_partner_key():
    assert {e.route for e in PARTNER_SURFACE if _is_public(e)} == PUBLIC_BY_DESIGN
    for endpoint in PARTNER_SURFACE:
        if _is_public(endpoint):
            assert endpoint.method == "GET", endpoint


@pytest.mark.parametrize("path", sorted(PUBLIC_BY_DESIGN))
def test_the_open_ones_answer_anyone(db, path):
    assert Client().get(path).status_code == 200


# ------------------------------------------------------------------------------------------------
# The world the requests run against
# ------------------------------------------------------------------------------------------------


@dataclass
class World:
    keys: dict[str, str]  # raw keys of partner A by kind, plus "other" (partner B's)
    own: dict[str, str]  # path parameter -> an object partner A may see
    others: dict[str, str]  # path parameter -> partner B's object (a 404 for A)
    missing: dict[str, str]  # path parameter -> no such object at all


def _key(partner: Partner, scopes: tuple[str, ...] = SCOPES) -> tuple[ApiKey, str]:
    return api_key_create(partner=partner, name="k", scopes=list(scopes))


@pytest.fixture
def world(db, default_list, partner, staff_user) -> World:
    """Partner A (the conftest's, reading the default list) with a key of every kind; partner B
    reading the default list and a list of its own (with a snapshot), with a match report."""
    accepted_case(staff_user, [image(1)])
    other_list = HashList.objects.create(slug="other-list", name="Other list", published=True)
    other = partner_create(name="Other Platform", readable_lists=[default_list, other_list])
    suspended = partner_create(name="Suspended Platform", readable_lists=[])
    Partner.objects.filter(pk=suspended.pk).update(status=Partner.Status.SUSPENDED)

    keys = {"full": _key(partner)[1], "other": _key(other)[1], "suspended": _key(suspended)[1]}
    for scope in SCOPES:
        keys[scope] = _key(partner, (scope,))[1]
    revoked, keys["revoked"] = _key(partner)
    api_key_revoke(key=revoked)
    expired, keys["expired"] = _key(partner)
    ApiKey.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - timedelta(seconds=1))

    from hashlists.snapshots import hash_list_snapshot_build

    hash_list_snapshot_build(hash_list=HashList.objects.get(slug="take-it-down"))
    hash_list_snapshot_build(hash_list=other_list)

    def report_of(raw: str) -> str:
        response = Client(HTTP_AUTHORIZATION=f"Bearer {raw}").post(
            "/api/v1/matches", {"matches": [match_item(0)]}, content_type="application/json"
        )
        assert response.status_code == 201, response.content
        return response.json()["results"][0]["id"]

    return World(
        keys=keys,
        own={"slug": "take-it-down", "report_id": report_of(keys["full"])},
        others={"slug": other_list.slug, "report_id": report_of(keys["other"])},
        missing={"slug": "no-such-list", "report_id": str(uuid.uuid4())},
    )


def auth(endpoint: Endpoint, raw: str) -> dict[str, str]:
    """The headers that carry ``raw`` to ``endpoint``: Bearer, or StopNCII's two headers."""
    if endpoint.compat:
        return {"HTTP_OCP_APIM_SUBSCRIPTION_KEY": raw, "HTTP_X_FUNCTIONS_KEY": raw}
    return {"HTTP_AUTHORIZATION": f"Bearer {raw}"}


def call(client: Client, endpoint: Endpoint, url: str, body: Any = None, **extra: Any):
    method = getattr(client, endpoint.method.lower())
    if endpoint.has_body:
        data = body if isinstance(body, bytes | str) else json.dumps({} if body is None else body)
        return method(
            url, data, content_type=extra.pop("content_type", "application/json"), **extra
        )
    return method(url, **extra)


def assert_error(response, status: int | tuple[int, ...], error: str | None = None) -> dict:
    statuses = (status,) if isinstance(status, int) else status
    assert response.status_code in statuses, (response.status_code, response.content[:300])
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    body = response.json()
    assert set(body) == ERROR_KEYS, body
    assert isinstance(body["detail"], str) and body["detail"] and isinstance(body["fields"], dict)
    if error is not None:
        assert body["error"] == error, body
    return body


# ------------------------------------------------------------------------------------------------
# Partner API: keys, scopes, suspension, other partners' objects
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", PARTNER_ENDPOINTS, ids=str)
def test_every_partner_endpoint_refuses_missing_and_unusable_keys(world, endpoint):
    url = endpoint.url(**world.own)
    client = Client()
    assert_error(call(client, endpoint, url), 401, "not_authenticated")
    for kind in ("revoked", "expired"):
        refused = call(client, endpoint, url, **auth(endpoint, world.keys[kind]))
        assert_error(refused, 401, "not_authenticated")
    made_up = "tid_abcdefgh_" + "x" * 40
    assert_error(call(client, endpoint, url, **auth(endpoint, made_up)), 401, "not_authenticated")
    suspended = call(client, endpoint, url, **auth(endpoint, world.keys["suspended"]))
    assert_error(suspended, 403, "forbidden")


@pytest.mark.parametrize("endpoint", PARTNER_ENDPOINTS, ids=str)
def test_every_partner_endpoint_needs_its_scope(world, endpoint):
    required = endpoint.view.required_scope
    assert required in SCOPES, endpoint
    wrong = next(s for s in SCOPES if s != required)
    url = endpoint.url(**world.own)
    refused = call(Client(), endpoint, url, **auth(endpoint, world.keys[wrong]))
    assert required in assert_error(refused, 403, "forbidden")["detail"]
    allowed = call(Client(), endpoint, url, **auth(endpoint, world.keys[required]))
    assert allowed.status_code not in (401, 403) and allowed.status_code < 500, allowed.content


def test_the_stopncii_keys_must_be_one_partners(world):
    fetch = next(e for e in PARTNER_ENDPOINTS if e.compat and e.method == "GET")
    mixed = {
        "HTTP_OCP_APIM_SUBSCRIPTION_KEY": world.keys["full"],
        "HTTP_X_FUNCTIONS_KEY": world.keys["other"],
    }
    assert_error(Client().get(fetch.url(), **mixed), 401, "not_authenticated")
    half = {"HTTP_X_FUNCTIONS_KEY": world.keys["full"]}
    assert_error(Client().get(fetch.url(), **half), 401, "not_authenticated")


@pytest.mark.parametrize("endpoint", [e for e in PARTNER_ENDPOINTS if e.params], ids=str)
def test_another_partners_object_is_the_same_404_as_a_missing_one(world, endpoint):
    headers = auth(endpoint, world.keys["full"])
    body = {"action": "removed"} if endpoint.has_body else None
    own = call(Client(), endpoint, endpoint.url(**world.own), body, **headers)
    assert own.status_code in (200, 201), (own.status_code, own.content[:300])
    theirs = call(Client(), endpoint, endpoint.url(**world.others), body, **headers)
    missing = call(Client(), endpoint, endpoint.url(**world.missing), body, **headers)
    assert_error(theirs, 404, "not_found")
    assert (theirs.status_code, theirs.content) == (missing.status_code, missing.content)


# ------------------------------------------------------------------------------------------------
# CSRF on the reporter site
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
@pytest.mark.parametrize("route", sorted({e.route for e in PUBLIC_API}))
def test_every_reporter_api_endpoint_needs_the_csrf_token(db, route, method):
    strict = Client(enforce_csrf_checks=True)
    strict.get("/report/")  # a visitor's cookie, but no token in the request
    response = getattr(strict, method)(route, "{}", content_type="application/json")
    assert_error(response, 403, "forbidden")


@pytest.mark.parametrize("path", [*SITE_PAGES, "/i18n/setlang/", "/admin/login/"])
def test_every_site_form_refuses_a_post_without_the_csrf_token(db, path):
    strict = Client(enforce_csrf_checks=True)
    strict.get("/")
    response = strict.post(path, {"language": "es", "next": "/"})
    assert response.status_code == 403, (path, response.status_code)


def test_the_language_form_works_with_the_token(db):
    """The control for the test above: the 403 is CSRF's, not the form's."""
    strict = Client(enforce_csrf_checks=True)
    token = _mask_cipher_secret(_get_new_csrf_string())
    strict.cookies["csrftoken"] = token
    response = strict.post(
        "/i18n/setlang/", {"language": "es", "next": "/", "csrfmiddlewaretoken": token}
    )
    assert response.status_code == 302


# ------------------------------------------------------------------------------------------------
# PIN guessing and case-number enumeration
# ------------------------------------------------------------------------------------------------

STATUS = "/api/public/cases/status"


def post_json(client: Client, url: str, body: Any, **extra: Any):
    return client.post(url, json.dumps(body), content_type="application/json", **extra)


@pytest.fixture
def submitted(db, default_list, image_item, monkeypatch) -> dict:
    monkeypatch.setattr(CaseLookupThrottle, "rate", "100000/hour", raising=False)
    monkeypatch.setattr(ReportSubmitThrottle, "rate", "100000/hour", raising=False)
    body = {"reporter": "self", "under_18_when_made": True, "items": [image_item]}
    response = post_json(Client(), "/api/public/reports", body)
    assert response.status_code == 201, response.content
    return response.json()


def test_one_client_cannot_lock_the_case_for_anyone_else(submitted, settings):
    """One place guessing without end is locked out after TID_PIN_MAX_FAILURES, and its locked
    attempts count for nothing, so it never reaches the case-wide lock."""
    guesser = Client(REMOTE_ADDR="10.66.0.1")
    wrong = {**submitted, "pin": "12121212"}
    answers = [
        post_json(guesser, STATUS, wrong) for _ in range(3 * settings.TID_PIN_CASE_MAX_FAILURES)
    ]
    before_the_lock = answers[: settings.TID_PIN_MAX_FAILURES]
    assert [r.status_code for r in before_the_lock] == [404] * settings.TID_PIN_MAX_FAILURES
    assert {r.status_code for r in answers[settings.TID_PIN_MAX_FAILURES :]} == {429}
    case = Case.objects.get(case_number=submitted["case_number"])
    assert case.pin_locked_until is None
    assert case.pin_failures == settings.TID_PIN_MAX_FAILURES
    assert post_json(Client(REMOTE_ADDR="10.66.0.2"), STATUS, submitted).status_code == 200


def test_a_clients_lock_expires_and_then_the_right_pin_works(submitted, settings):
    settings.TID_PIN_LOCKOUT_SECONDS = 1
    guesser = Client(REMOTE_ADDR="10.66.1.1")
    for _ in range(settings.TID_PIN_MAX_FAILURES):
        post_json(guesser, STATUS, {**submitted, "pin": "34343434"})
    assert_error(post_json(guesser, STATUS, submitted), 429, "locked")
    time.sleep(1.2)
    assert post_json(guesser, STATUS, submitted).status_code == 200


def test_one_place_guessing_for_hours_never_locks_the_case(submitted, settings):
    """The case counts wrong PINs within one lockout window, and one client is locked out for a
    whole window after TID_PIN_MAX_FAILURES: however long one place goes on (here six windows,
    three times the case-wide limit in wrong PINs), it never fills a window, so it never locks
    the case. (Before the window, the counter ran until the next right PIN.)"""
    settings.TID_PIN_LOCKOUT_SECONDS = 1
    settings.TID_PIN_MAX_FAILURES = 2
    settings.TID_PIN_CASE_MAX_FAILURES = 4
    guesser = Client(REMOTE_ADDR="10.66.4.1")
    wrong = {**submitted, "pin": "78787878"}
    for _window in range(6):
        for _ in range(settings.TID_PIN_MAX_FAILURES):
            assert post_json(guesser, STATUS, wrong).status_code == 404  # never "locked"
        time.sleep(1.05)  # the guesser's own lock is over: it goes again
    assert Case.objects.get(case_number=submitted["case_number"]).pin_locked_until is None
    assert post_json(Client(REMOTE_ADDR="10.66.4.2"), STATUS, submitted).status_code == 200


def test_the_case_wide_lock_expires_on_its_own(submitted, settings):
    """In real time (tests/cases/test_public_api.py moves the clock by a database update)."""
    settings.TID_PIN_LOCKOUT_SECONDS = 1
    settings.TID_PIN_CASE_MAX_FAILURES = 3
    for n in range(3):
        post_json(Client(REMOTE_ADDR=f"10.66.2.{n}"), STATUS, {**submitted, "pin": "56565656"})
    owner = Client(REMOTE_ADDR="10.66.3.1")
    assert_error(post_json(owner, STATUS, submitted), 429, "locked")
    time.sleep(1.2)
    assert post_json(owner, STATUS, submitted).status_code == 200


@pytest.mark.parametrize("route", sorted({e.route for e in PUBLIC_API if "/cases/" in e.route}))
def test_a_wrong_pin_and_an_unknown_case_answer_byte_for_byte_alike(submitted, image_item, route):
    extra = {"items": [image_item]} if route.endswith("/items") else {}
    probes = [
        {**submitted, "pin": "00000000"},  # the case exists, the PIN is wrong
        {"case_number": "TID-0000-0000", "pin": submitted["pin"]},  # no such case
        {"case_number": "TID-ZZZZ-ZZZ", "pin": "00000000"},  # not even a case number's shape
    ]
    answers = [
        post_json(Client(REMOTE_ADDR=f"10.66.4.{n}"), route, {**probe, **extra})
        for n, probe in enumerate(probes)
    ]
    assert_error(answers[0], 404, "not_found")
    first = answers[0]
    for other in answers[1:]:
        assert (other.status_code, other.content) == (first.status_code, first.content)
        assert other["Content-Type"] == first["Content-Type"]


# ------------------------------------------------------------------------------------------------
# Bad bodies on every JSON endpoint
# ------------------------------------------------------------------------------------------------


def _example_bodies() -> dict[tuple[str, str], Any]:
    """(METHOD, OpenAPI path) -> the first request example the partner API documents."""
    schema = SchemaGenerator().get_schema(request=None, public=True)
    bodies = {}
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            content = operation.get("requestBody", {}).get("content", {})
            examples = content.get("application/json", {}).get("examples", {})
            if examples:
                bodies[(method.upper(), path)] = next(iter(examples.values()))["value"]
    return bodies


def _openapi_path(route: str) -> str:
    return _PARAM.sub(lambda m: "{" + m.group(1) + "}", route)


@pytest.fixture
def bodies(world, submitted, image_item) -> dict[Endpoint, tuple[str, dict, Any]]:
    """Every JSON endpoint -> (url, headers, a body it takes)."""
    examples = _example_bodies()
    access = {"case_number": submitted["case_number"], "pin": submitted["pin"]}
    public = {
        "/api/public/reports": {
            "reporter": "self",
            "under_18_when_made": True,
            "items": [image_item],
        },
        "/api/public/cases/status": access,
        "/api/public/cases/items": {**access, "items": [image(7)]},
        "/api/public/cases/withdraw": access,
    }
    # The documented examples name hashes and times of their own; these point them at what is
    # stored here, so that every body is accepted as it is and its mutations reach the writes.
    pdq_value = HashEntry.objects.get(hash_list__slug="take-it-down", hash_type="pdq").value
    stored_data = {
        ("POST", "/api/v1/matches"): lambda _ex: {"matches": [_plain(match_item(5))]},
        ("PATCH", "/api/v1/matches/{report_id}"): lambda ex: {
            **ex,
            "action_at": timezone.now().isoformat(),
        },
        ("POST", "/api/compat/stopncii/v1/SubmitFeedback"): lambda ex: {
            **ex,
            "count": 1,
            "hashFeedbacks": [{**ex["hashFeedbacks"][0], "hashValue": pdq_value}],
        },
    }
    out = {}
    for endpoint in JSON_BODY_ENDPOINTS:
        if endpoint.route in public:
            out[endpoint] = (endpoint.route, {}, public[endpoint.route])
        else:
            operation = (endpoint.method, _openapi_path(endpoint.route))
            example = stored_data.get(operation, lambda ex: ex)(examples[operation])
            headers = auth(endpoint, world.keys["full"])
            out[endpoint] = (endpoint.url(**world.own), headers, example)
    return out


def _plain(value: Any) -> Any:
    """``value`` as JSON has it (datetimes as text)."""
    return json.loads(json.dumps(value, cls=DjangoJSONEncoder))


# Not JSON, or JSON no endpoint takes: every one is a 400 (or 413/415), never a 2xx or a 5xx.
RAW_BODIES = {
    "nested-10000": b"[" * 10_000 + b"]" * 10_000,
    "nested-objects-10000": b'{"a":' * 10_000 + b"1" + b"}" * 10_000,
    "array": b"[]",
    "string": b'"matches"',
    "null": b"null",
    "number": b"1",
    "huge-integer": str(2**70).encode(),
    "nan": b'{"items": NaN}',
    "infinity": b'{"items": [Infinity, -Infinity]}',
    "invalid-utf8": b'{"case_number": "\xff\xfe\xc3("}',
    "bom": "\ufeff{}".encode(),
    "utf16": '{"a": 1}'.encode("utf-16"),
    "truncated": b'{"matches": [',
    "empty": b"",
    "trailing-garbage": b"{} {}",
}


def _mutations(value: Any, path: tuple = ()) -> Iterator[tuple[tuple, Any]]:
    """Every place in a JSON value, with the wrong types and extremes that could go there."""
    for bad in (None, [], {}, "", "x", 2**70, -(2**70), 1e308, 0.5, True, "\x00", "9" * 400):
        yield path, bad
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _mutations(child, (*path, key))
    elif isinstance(value, list) and value:
        yield from _mutations(value[0], (*path, 0))


def _replace(value: Any, path: tuple, new: Any) -> Any:
    if not path:
        return new
    head, *rest = path
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[head] = _replace(copy[head], tuple(rest), new)
    return copy


@pytest.mark.parametrize("endpoint", JSON_BODY_ENDPOINTS, ids=str)
def test_malformed_json_is_a_400_never_a_500(bodies, endpoint):
    url, headers, _body = bodies[endpoint]
    for name, raw in RAW_BODIES.items():
        response = call(Client(), endpoint, url, raw, **headers)
        assert response.status_code in (400, 413, 415), (name, response.status_code)
        assert_error(response, response.status_code)


@pytest.mark.parametrize("endpoint", JSON_BODY_ENDPOINTS, ids=str)
def test_wrongly_typed_values_anywhere_in_the_body_are_never_a_500(bodies, endpoint, settings):
    settings.TID_PIN_MAX_FAILURES = 10_000  # wrong PINs are among the mutations
    settings.TID_PIN_CASE_MAX_FAILURES = 10_000
    url, headers, body = bodies[endpoint]
    accepted = call(Client(), endpoint, url, body, **headers)
    assert accepted.status_code in (200, 201), accepted.content[:300]
    statuses = set()
    for path, bad in _mutations(body):
        response = call(Client(), endpoint, url, _replace(body, path, bad), **headers)
        statuses.add(response.status_code)
        assert response.status_code < 500, (path, bad, response.content[:300])
        if response.status_code >= 400:
            assert_error(response, response.status_code)
    assert 400 in statuses


def _stored() -> dict[str, int]:
    return {
        model._meta.label: model._default_manager.count()
        for app in ("cases", "hashlists", "partners")
        for model in apps.get_app_config(app).get_models()
    }


@pytest.mark.parametrize("endpoint", JSON_BODY_ENDPOINTS, ids=str)
def test_multipart_and_form_uploads_are_a_415_and_store_nothing(bodies, endpoint, tmp_path):
    url, headers, _body = bodies[endpoint]
    before = _stored()
    upload = tmp_path / "photo.jpg"
    upload.write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 2048)
    client = Client()
    with upload.open("rb") as handle:
        data = encode_multipart(BOUNDARY, {"file": handle, "reporter": "self"})
    multipart_type = f"multipart/form-data; boundary={BOUNDARY}"
    multipart = call(client, endpoint, url, data, content_type=multipart_type, **headers)
    assert_error(multipart, 415, "unsupported_media_type")
    form = call(
        client,
        endpoint,
        url,
        "matches=x&items=y",
        content_type="application/x-www-form-urlencoded",
        **headers,
    )
    assert_error(form, 415, "unsupported_media_type")
    assert _stored() == before


@pytest.mark.parametrize("endpoint", JSON_BODY_ENDPOINTS, ids=str)
def test_a_body_over_the_limit_is_a_413(bodies, endpoint):
    url, headers, body = bodies[endpoint]
    limit = getattr(endpoint.view, "max_body_bytes", django_settings.DATA_UPLOAD_MAX_MEMORY_SIZE)
    text = json.dumps(body)
    padded = text[:-1] + " " * (limit - len(text) + 1) + "}"
    before = _stored()
    assert_error(call(Client(), endpoint, url, padded, **headers), 413, "too_large")
    assert _stored() == before


# ------------------------------------------------------------------------------------------------
# Security headers on every page
# ------------------------------------------------------------------------------------------------


def assert_security_headers(response, where: str) -> None:
    csp = response.get("Content-Security-Policy", "")
    directives = dict(
        (part.strip().split(" ", 1) + [""])[:2] for part in csp.split(";") if part.strip()
    )
    assert directives.get("default-src") == "'self'", (where, csp)
    assert directives.get("frame-ancestors") == "'none'", (where, csp)
    assert "unsafe-eval" not in csp, (where, csp)
    assert "unsafe-inline" not in directives.get("script-src", "'self'"), (where, csp)
    assert response.get("X-Frame-Options") == "DENY", where
    assert response.get("X-Content-Type-Options") == "nosniff", where
    assert response.get("Referrer-Policy") in ("same-origin", "no-referrer"), where


def test_every_page_and_every_api_answer_carries_the_security_headers(world):
    anonymous = Client()
    for path in [*SITE_PAGES, "/admin/login/", "/no-such-page/", "/api/v1/no-such-thing"]:
        assert_security_headers(anonymous.get(path), path)
    for endpoint in PARTNER_SURFACE + PUBLIC_API:
        url = endpoint.url(**world.own)
        assert_security_headers(call(anonymous, endpoint, url), f"{endpoint} without a key")
        keyed = call(Client(), endpoint, url, **auth(endpoint, world.keys["full"]))
        assert_security_headers(keyed, f"{endpoint} with a key")
    refused = Client(enforce_csrf_checks=True).post(
        "/api/public/reports", "{}", content_type="application/json"
    )
    assert_security_headers(refused, "a CSRF refusal")


def test_production_sends_hsts():
    """Under the production settings, in a process of its own (as tests/test_settings.py starts
    them): every HTTPS answer, the API's errors included, tells browsers to stay on HTTPS."""
    out = run_in_production(
        "from django.test import Client; c = Client(); "
        "print(*(c.get(p, secure=True, HTTP_HOST='tid.example').get('Strict-Transport-Security') "
        "for p in ('/api/v1/no-such-thing', '/api/v1/lists/')), sep='|')"
    )
    assert out.returncode == 0, out.stderr[-2000:]
    for header in out.stdout.strip().split("|"):
        assert "max-age=63072000" in header and "includeSubDomains" in header, out.stdout


# ------------------------------------------------------------------------------------------------
# Parsers of hashes and case numbers: for any input, the canonical value or the project's error
# ------------------------------------------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=80),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
HEX = "0123456789abcdef"


def _hex_like(n: int) -> st.SearchStrategy[str]:
    """Text that is often nearly a hash: the right length, hex, upper case, padded."""
    return st.one_of(
        st.text(max_size=n + 4),
        st.text(alphabet=HEX + "ABCDEF \t\n-x", min_size=n - 1, max_size=n + 1),
        st.text(alphabet=HEX, min_size=n, max_size=n).map(str.upper),
        st.text(alphabet=HEX, min_size=n, max_size=n).map(lambda s: f" {s}"),
    )


@pytest.mark.parametrize("hash_type", sorted(formats.HEX_LENGTHS))
def test_hex_hash_validators_take_only_canonical_lowercase_hex(hash_type):
    n = formats.HEX_LENGTHS[hash_type]

    @hypothesis_settings(max_examples=300, deadline=None)
    @given(value=_hex_like(n) | JSON_VALUES)
    def refuses_or_returns_canonical(value):
        try:
            result = formats.validate_hex(value, hash_type)
        except HashFormatError:
            is_canonical = isinstance(value, str) and re.fullmatch(f"[0-9a-f]{{{n}}}", value)
            assert not is_canonical, value
        else:
            assert result == value and re.fullmatch(f"[0-9a-f]{{{n}}}", result)

    @hypothesis_settings(max_examples=100, deadline=None)
    @given(value=st.text(alphabet=HEX, min_size=n, max_size=n))
    def canonical_round_trips(value):
        assert formats.validate_hex(value, hash_type) == value
        upper = value.upper()
        if upper != value:
            with pytest.raises(HashFormatError):
                formats.validate_hex(upper, hash_type)
        for padded in (f" {value}", f"{value}\n", f"{value[:-1]} "):
            with pytest.raises(HashFormatError):
                formats.validate_hex(padded, hash_type)

    refuses_or_returns_canonical()
    canonical_round_trips()


@hypothesis_settings(max_examples=300, deadline=None)
@given(value=JSON_VALUES | st.integers(-(2**80), 2**80))
def test_the_quality_validator_takes_only_whole_numbers_from_0_to_100(value):
    try:
        result = formats.validate_quality(value)
    except HashFormatError:
        assert isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100
    else:
        assert result == value and type(result) is int and 0 <= result <= 100


FRAMES = st.lists(
    st.fixed_dictionaries(
        {
            "t": st.integers(0, 10) | st.floats(allow_nan=True, allow_infinity=True) | JSON_VALUES,
            "pdq": _hex_like(64) | st.text(alphabet=HEX, min_size=64, max_size=64),
            "q": st.integers(-5, 105) | JSON_VALUES,
        },
        optional={"extra": JSON_VALUES},
    ),
    max_size=5,
)


@hypothesis_settings(max_examples=300, deadline=None)
@given(frames=FRAMES | JSON_VALUES)
def test_the_vpdq_validator_returns_canonical_frames_or_refuses(frames):
    try:
        result = formats.validate_vpdq(frames)
    except HashFormatError:
        return
    assert result == frames and result
    times = [f["t"] for f in result]
    assert times == sorted(set(times)) and all(math.isfinite(t) and t >= 0 for t in times)
    for frame in result:
        assert formats.validate_hex(frame["pdq"], "pdq") == frame["pdq"]
        assert formats.validate_quality(frame["q"]) == frame["q"]
    assert formats.validate_vpdq(result) == result  # canonical input round-trips


@hypothesis_settings(max_examples=300, deadline=None)
@given(
    item=JSON_VALUES
    | st.fixed_dictionaries(
        {},
        optional={
            "media_type": st.sampled_from(["image", "video", "audio"]) | JSON_VALUES,
            "md5": _hex_like(32),
            "pdq": _hex_like(64),
            "pdq_quality": st.integers(-1, 101) | JSON_VALUES,
            "phash": _hex_like(16),
            "vpdq": FRAMES,
        },
    )
)
def test_a_reported_item_is_cleaned_or_refused_with_a_validation_error(item):
    try:
        cleaned = media_item_clean(item)
    except ValidationError:
        return
    for hash_type in ("md5", "pdq", "phash"):
        if cleaned.get(hash_type) is not None:
            assert formats.validate_hex(cleaned[hash_type], hash_type) == item[hash_type]


CASE_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
CASE_NUMBERS = st.tuples(
    st.text(alphabet=CASE_ALPHABET, min_size=4, max_size=4),
    st.text(alphabet=CASE_ALPHABET, min_size=4, max_size=4),
).map(lambda parts: f"TID-{parts[0]}-{parts[1]}")


@hypothesis_settings(max_examples=500, deadline=None)
@given(raw=st.text(max_size=40) | JSON_VALUES | CASE_NUMBERS.map(lambda s: s.replace("-", "")))
def test_the_case_number_parser_returns_a_case_number_or_nothing(raw):
    """Reporters may type a case number loosely (case, spaces, O for 0), so the parser is
    forgiving by design; but what comes out is a well-formed case number or "" (no match)."""
    result = case_number_normalise(raw)
    assert result == "" or re.fullmatch(CASE_NUMBER_PATTERN, result), (raw, result)
    assert case_number_normalise(result) == result


@hypothesis_settings(max_examples=200, deadline=None)
@given(number=CASE_NUMBERS)
def test_a_case_number_round_trips_however_it_is_typed(number):
    assert re.fullmatch(CASE_NUMBER_PATTERN, number)
    assert case_number_normalise(number) == number
    assert case_number_normalise(number.lower().replace("-", " ")) == number
    assert case_number_normalise(f"  {number[4:]}  ") == number
