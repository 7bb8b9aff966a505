"""The partner API against its own OpenAPI document, property-based (schemathesis).

Every operation the document lists (so every endpoint added later, with no change here) gets
requests built from its schema: its documented examples, boundary and invalid values (the
coverage phase) and random valid ones, sent over HTTP to a live server on the real PostgreSQL
with a real partner key holding both scopes. Every answer must be no 5xx, a documented status
code, a documented content type, a body that conforms to the documented schema, and documented
headers of the documented types.

The seeded list holds the hashes that the document's own examples use, so that the examples
phase reaches the success paths (a feed page with changes, a snapshot and its download, lookups
and matches that find their entry), not only 400s and 404s.
"""

import os
from datetime import timedelta

import pytest
import schemathesis
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.utils import timezone
from hypothesis import HealthCheck, settings
from pytest_django.live_server_helper import LiveServer
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from cases.services import case_accept, case_create, case_withdraw
from hashlists.models import HashEntry, HashList
from hashlists.services import list_changes_sequence
from hashlists.snapshots import hash_list_snapshot_build
from partners.api.authentication import PartnerKeyThrottle
from partners.matches import match_reports_submit
from partners.models import MatchReport
from partners.services import api_key_create, partner_create

# What the document's examples name (hashlists/api/views.py, partners/api/views.py,
# partners/compat/views.py, hashlists/api/lookup.py): the seeded list holds these hashes, under
# these public ids, and the partner a report with this id. If an example changes, the run still
# passes; it only reaches fewer success paths.
EXAMPLE_PDQ = "f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22"
EXAMPLE_MD5 = "d41d8cd98f00b204e9800998ecf8427e"
EXAMPLE_PDQ_ENTRY = "3f1c2a9e-7b4d-4c1e-9a52-8d6f0b1e2c34"
EXAMPLE_MD5_ENTRY = "0b9d5e61-2f3a-4d8b-8c7e-5a4f3e2d1c0b"
EXAMPLE_REPORT = "6a0f3c8e-51d2-4b7a-9e3f-2c1d0b9a8e7f"

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]


def image(n: int, *, pdq: str | None = None) -> dict:
    """A distinct, publishable image item (good PDQ quality, pHash with enough bits set)."""
    return {
        "media_type": "image",
        "md5": f"{n:032x}",
        "pdq": pdq or f"{n:04x}" + "5a" * 30,
        "pdq_quality": 90,
        "phash": f"{n:04x}f0f0f00f0f0f",
    }


def video(n: int, *, md5: str | None = None) -> dict:
    """A video item: its MD5 and a few vPDQ frames, one a second."""
    return {
        "media_type": "video",
        "md5": md5 or f"{n:032x}",
        "vpdq": [{"t": t, "pdq": f"{n:04x}{t:04x}" + "3c" * 28, "q": 80} for t in range(3)],
    }


def seed(default_list: HashList) -> str:
    """The default list with accepted images and a video, a withdrawn image (a ``remove`` on the
    feed) and a signed snapshot, granted to a partner that has reported one match; returns the
    partner's raw key, which has both scopes."""
    staff = get_user_model().objects.create_superuser("schemathesis-staff", "", None)
    partner = partner_create(name="Schemathesis Platform", readable_lists=[default_list])
    for items in ([image(1, pdq=EXAMPLE_PDQ), image(2)], [video(3, md5=EXAMPLE_MD5)], [image(4)]):
        case, _pin = case_create(reporter="self", under_18_when_made=True, items=items)
        case_accept(case=case, staff=staff)
    case_withdraw(case=case)
    for value, public_id in ((EXAMPLE_PDQ, EXAMPLE_PDQ_ENTRY), (EXAMPLE_MD5, EXAMPLE_MD5_ENTRY)):
        HashEntry.objects.filter(value=value).update(public_id=public_id)
    list_changes_sequence()
    hash_list_snapshot_build(hash_list=default_list)
    match = {
        "client_ref": "schemathesis-1",
        "entry_id": EXAMPLE_PDQ_ENTRY,
        "distance": 0,
        "matched_at": timezone.now() - timedelta(days=400),
        "action": "pending_review",
    }
    match_reports_submit(partner=partner, items=[match])
    MatchReport.objects.filter(partner=partner).update(public_id=EXAMPLE_REPORT)
    _key, raw = api_key_create(
        partner=partner, name="schemathesis", scopes=["lists:read", "matches:write"]
    )
    return raw


@pytest.fixture(scope="module")
def partner_api(django_db_setup, django_db_blocker):
    """A live server on the test database, seeded once for the module: each operation is a test
    of its own, and a transactional test per operation would seed and empty every table a dozen
    times. The seeded data is committed, for the server's thread to see; afterwards the tables
    are emptied and their earlier contents (what the migrations put there) restored, as
    Django's serialized rollback does, so the tests that follow find the database as it was."""
    with django_db_blocker.unblock():
        before = connection.creation.serialize_db_to_string()
        default_list, _ = HashList.objects.get_or_create(
            slug="take-it-down", defaults={"name": "Take It Down", "published": True}
        )
        raw_key = seed(default_list)
    server = LiveServer("localhost")
    try:
        # A run sends several hundred requests with one key; a 429 would be documented and
        # conforming, but would hide the endpoints' real answers.
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(PartnerKeyThrottle, "rate", "1000000/minute", raising=False)
            yield server.url, raw_key
    finally:
        server.stop()
        with django_db_blocker.unblock():
            call_command(
                "flush",
                interactive=False,
                verbosity=0,
                reset_sequences=False,  # the restored rows keep their ids
                inhibit_post_migrate=True,
            )
            connection.creation.deserialize_db_from_string(before)


def served_schema() -> dict:
    """The document as the server serves it. Read when the module is collected, so that each
    operation in it is a test of its own (pytest -k "POST /api/v1/matches" runs one)."""
    # Collection comes before the test environment allows the test client's host name.
    response = Client(HTTP_HOST="localhost").get("/api/v1/schema/", {"format": "json"})
    assert response.status_code == 200, response.content
    return response.json()


schema = schemathesis.openapi.from_dict(served_schema())
# Tests of their own (no transaction of theirs: the data lives in partner_api); the marker makes
# pytest-django create the test database when these tests run alone.
pytestmark = pytest.mark.django_db


@schema.parametrize()
@settings(
    # Ten examples an operation in every run; TID_SCHEMATHESIS_EXAMPLES=200 for a deeper pass.
    max_examples=int(os.environ.get("TID_SCHEMATHESIS_EXAMPLES", "10")),
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
    ],
)
def test_the_partner_api_answers_as_its_schema_documents(case, partner_api):
    base_url, key = partner_api
    headers = {
        "Authorization": f"Bearer {key}",
        # The StopNCII-compatible API takes the keys in StopNCII's two headers.
        "Ocp-Apim-Subscription-Key": key,
        "x-functions-key": key,
    }
    case.call_and_validate(base_url=base_url, headers=headers, checks=CHECKS)
