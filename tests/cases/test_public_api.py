"""The reporter site's public JSON API (DESIGN.md section 6), through HTTP."""

import json

import pytest
from django.test import Client
from django.utils import timezone

from cases.api import views
from cases.models import Case, MediaItem
from cases.services import case_accept, case_create
from hashlists.models import HashEntry, ListChange
from partners.models import MatchReport
from partners.services import partner_create
from tidportal.api import ReportSubmitThrottle

REPORT = "/api/public/reports"
STATUS = "/api/public/cases/status"
ITEMS = "/api/public/cases/items"
WITHDRAW = "/api/public/cases/withdraw"


def post(client, url, body, **extra):
    return client.post(url, json.dumps(body), content_type="application/json", **extra)


def report(items, **changes):
    return {"reporter": "self", "under_18_when_made": True, "items": items, **changes}


def video(md5="1" * 32, frames=3, q=90):
    return {
        "media_type": "video",
        "md5": md5,
        "vpdq": [{"t": t, "pdq": f"{t + 1:064x}", "q": q} for t in range(frames)],
    }


@pytest.fixture
def submitted(client, db, default_list, image_item):
    response = post(client, REPORT, report([image_item, video()]))
    assert response.status_code == 201, response.content
    return response.json()


def test_a_report_is_stored_and_answered_with_case_number_and_pin(submitted, image_item):
    assert set(submitted) == {"case_number", "pin"}
    case = Case.objects.get(case_number=submitted["case_number"])
    assert case.items.count() == 2 and case.status == "received"
    assert submitted["pin"] not in case.pin_hash
    assert case.items.get(media_type="image").pdq == image_item["pdq"]


def test_the_receipt_is_never_cached(client, db, default_list, image_item):
    response = post(client, REPORT, report([image_item]))
    assert response["Cache-Control"] == "no-store"


def test_status_shows_status_timeline_and_counts(client, submitted):
    response = post(client, STATUS, submitted)
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "received" and body["images"] == 1 and body["videos"] == 1
    assert [e["event"] for e in body["timeline"]] == ["received"]
    assert body["platforms_matched"] == body["platforms_removed"] == 0
    assert body["can_add_items"] and body["can_withdraw"]


def test_the_case_number_may_be_typed_loosely(client, submitted):
    loose = submitted["case_number"].lower().replace("-", " ").replace("0", "o")
    assert post(client, STATUS, {"case_number": loose, "pin": submitted["pin"]}).status_code == 200


def test_wrong_pin_and_unknown_case_get_the_same_404(client, submitted):
    wrong = post(client, STATUS, {**submitted, "pin": "00000000"})
    unknown = post(client, STATUS, {"case_number": "TID-0000-0000", "pin": submitted["pin"]})
    assert wrong.status_code == unknown.status_code == 404
    assert wrong.json() == unknown.json()
    assert wrong.json()["error"] == "not_found"


def test_repeated_wrong_pins_lock_that_client_out_but_not_the_owner_elsewhere(client, submitted):
    for _ in range(5):
        assert post(client, STATUS, {**submitted, "pin": "11111111"}).status_code == 404
    locked = post(client, STATUS, submitted)  # even the right PIN, from the guessing client
    assert locked.status_code == 429
    assert locked.json()["error"] == "locked" and int(locked["Retry-After"]) > 0
    elsewhere = post(Client(), STATUS, submitted, REMOTE_ADDR="10.9.8.7")
    assert elsewhere.status_code == 200


def test_distributed_guessing_locks_the_case_for_a_while(client, submitted, settings):
    for n in range(settings.TID_PIN_CASE_MAX_FAILURES):
        post(Client(), STATUS, {**submitted, "pin": "22222222"}, REMOTE_ADDR=f"10.0.{n}.1")
    response = post(Client(), STATUS, submitted, REMOTE_ADDR="10.1.1.1")
    assert response.status_code == 429
    case = Case.objects.get(case_number=submitted["case_number"])
    assert case.pin_locked_until > timezone.now()
    Case.objects.filter(pk=case.pk).update(pin_locked_until=timezone.now())  # time passes
    assert post(Client(), STATUS, submitted, REMOTE_ADDR="10.1.1.1").status_code == 200


def test_a_right_pin_resets_the_case_counter(client, submitted):
    post(Client(), STATUS, {**submitted, "pin": "33333333"}, REMOTE_ADDR="10.0.0.2")
    assert Case.objects.get(case_number=submitted["case_number"]).pin_failures == 1
    assert post(client, STATUS, submitted).status_code == 200
    assert Case.objects.get(case_number=submitted["case_number"]).pin_failures == 0


def test_withdrawing_is_confirmed_in_the_status_and_repeatable(client, submitted):
    first = post(client, WITHDRAW, submitted)
    assert first.status_code == 200 and first.json()["status"] == "withdrawn"
    assert [e["event"] for e in first.json()["timeline"]] == ["received", "withdrawn"]
    assert not first.json()["can_withdraw"] and not first.json()["can_add_items"]
    assert post(client, WITHDRAW, submitted).status_code == 200


def test_withdrawing_an_accepted_case_removes_only_the_entries_it_alone_backed(
    client, db, default_list, image_item, staff_user, django_capture_on_commit_callbacks
):
    shared = {**image_item}
    own = video()
    with django_capture_on_commit_callbacks(execute=True):
        mine, pin = case_create(reporter="self", under_18_when_made=True, items=[shared, own])
        theirs, _ = case_create(reporter="parent", under_18_when_made=True, items=[shared])
        case_accept(case=mine, staff=staff_user)
        case_accept(case=theirs, staff=staff_user)
    active = set(HashEntry.objects.filter(status="active").values_list("hash_type", "value"))
    assert ("md5", own["md5"]) in active and ("md5", shared["md5"]) in active
    with django_capture_on_commit_callbacks(execute=True):
        response = post(client, WITHDRAW, {"case_number": mine.case_number, "pin": pin})
    assert response.status_code == 200
    removed = HashEntry.objects.filter(status="removed")
    assert set(removed.values_list("hash_type", flat=True)) == {"md5", "vpdq"}
    assert set(removed.values_list("removal_reason", flat=True)) == {"withdrawn"}
    assert HashEntry.objects.get(hash_type="md5", value=shared["md5"]).status == "active"
    ops = list(ListChange.objects.order_by("seq").values_list("op", flat=True))
    assert ops.count("remove") == 2 and None not in ListChange.objects.values_list("seq", flat=True)


def test_adding_files_to_a_case(client, submitted, image_item):
    other = {**image_item, "md5": "a" * 32}
    response = post(client, ITEMS, {**submitted, "items": [other]})
    assert response.status_code == 201 and response.json()["images"] == 2
    again = post(client, ITEMS, {**submitted, "items": [other]})
    assert again.status_code == 400 and "items.0.md5" in again.json()["fields"]
    assert MediaItem.objects.count() == 3


def test_adding_files_to_an_accepted_case_sends_it_back_to_review(
    client, submitted, image_item, staff_user
):
    case = Case.objects.get(case_number=submitted["case_number"])
    case_accept(case=case, staff=staff_user)
    response = post(client, ITEMS, {**submitted, "items": [{**image_item, "md5": "b" * 32}]})
    assert response.json()["status"] == "in_review"
    events = [e["event"] for e in response.json()["timeline"]]
    assert events[:2] == ["received", "active"] and events[-1] == "in_review"


def test_a_withdrawn_case_takes_no_more_files(client, submitted, image_item):
    post(client, WITHDRAW, submitted)
    response = post(client, ITEMS, {**submitted, "items": [{**image_item, "md5": "c" * 32}]})
    assert response.status_code == 400 and "case" in response.json()["fields"]


def test_platform_counts_come_from_partners_match_reports(client, submitted, staff_user):
    case = Case.objects.get(case_number=submitted["case_number"])
    case_accept(case=case, staff=staff_user)
    entry = HashEntry.objects.get(hash_type="pdq")
    now = timezone.now()
    for name, action in [("A", "removed"), ("B", "pending_review"), ("C", "removed")]:
        partner = partner_create(name=name)
        for n in range(2):  # two reports from one partner count once
            MatchReport.objects.create(
                partner=partner,
                entry=entry,
                client_ref=f"{name}{n}",
                hash_type="pdq",
                matched_at=now,
                action=action,
                action_at=now,
            )
    body = post(client, STATUS, submitted).json()
    assert (body["platforms_matched"], body["platforms_removed"]) == (3, 2)


BAD_REPORTS = {
    "uppercase-pdq": lambda i: report([{**i, "pdq": i["pdq"].upper()}]),
    "short-md5": lambda i: report([{**i, "md5": i["md5"][:-1]}]),
    "non-hex-phash": lambda i: report([{**i, "phash": "z" * 16}]),
    "quality-out-of-range": lambda i: report([{**i, "pdq_quality": 101}]),
    "duplicate-files": lambda i: report([i, i]),
    "too-many-items": lambda i: report([{**i, "md5": f"{n:032x}"} for n in range(201)]),
    "no-items": lambda i: report([]),
    "adult": lambda i: report([i], under_18_when_made=False),
    "string-boolean": lambda i: report([i], under_18_when_made="true"),
    "unknown-reporter": lambda i: report([i], reporter="someone"),
    "item-not-object": lambda i: report(["image"]),
    "bad-video-frames": lambda i: report([video(frames=0)]),
    "missing-everything": lambda i: {},
}


@pytest.mark.parametrize("make", BAD_REPORTS.values(), ids=BAD_REPORTS.keys())
def test_bad_reports_get_400_with_field_messages_and_nothing_is_stored(
    client, db, default_list, image_item, make
):
    response = post(client, REPORT, make(image_item))
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "invalid" and body["detail"] and body["fields"]
    assert all(isinstance(m, list) and m for m in body["fields"].values())
    assert Case.objects.count() == 0 and MediaItem.objects.count() == 0


def test_malformed_json_is_a_400(client, db):
    response = client.post(REPORT, "{not json", content_type="application/json")
    assert response.status_code == 400 and response.json()["error"] == "invalid"


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        ({"reporter": "self", "file": b"\xff\xd8\xff" * 100}, None),  # multipart upload
        ("reporter=self&under_18_when_made=true", "application/x-www-form-urlencoded"),
        ("<xml/>", "application/xml"),
    ],
    ids=["multipart", "form", "xml"],
)
def test_anything_but_json_is_refused_with_415(client, db, body, content_type):
    kwargs = {"content_type": content_type} if content_type else {}
    response = client.post(REPORT, body, **kwargs)
    assert response.status_code == 415 and response.json()["error"] == "unsupported_media_type"
    assert Case.objects.count() == 0


def test_a_body_over_the_limit_is_refused_with_413_before_it_is_read(client, db, image_item):
    padding = "x" * views.MAX_BODY_BYTES
    response = post(client, REPORT, report([image_item], padding=padding))
    assert response.status_code == 413 and response.json()["error"] == "too_large"
    assert "MB" in response.json()["detail"] and Case.objects.count() == 0


def test_a_long_video_fits_within_the_body_limit(client, db, default_list):
    frames = 4 * 3600  # a four-hour video at one frame per second
    item = {
        "media_type": "video",
        "md5": "e" * 32,
        "vpdq": [{"t": t, "pdq": f"{t:064x}", "q": 100} for t in range(frames)],
    }
    body = json.dumps(report([item]))
    assert len(body) < views.MAX_BODY_BYTES
    assert client.post(REPORT, body, content_type="application/json").status_code == 201


def test_two_long_videos_fit_too_past_djangos_own_default_limit(client, db, default_list):
    """Django refuses bodies over 2.5 MB by default, with an HTML page; the API's own limit
    (4 MB, answered in JSON) is the one that applies."""
    items = [
        {
            "media_type": "video",
            "md5": f"{n}" * 32,
            "vpdq": [{"t": t, "pdq": f"{t + n:064x}", "q": 100} for t in range(4 * 3600)],
        }
        for n in (1, 2)
    ]
    body = json.dumps(report(items))
    assert 2_621_440 < len(body) < views.MAX_BODY_BYTES
    response = client.post(REPORT, body, content_type="application/json")
    assert response.status_code == 201, response.content[:200]


def test_csrf_is_required_for_the_site_pages_requests(db, default_list, image_item):
    strict = Client(enforce_csrf_checks=True)
    refused = post(strict, REPORT, report([image_item]))
    assert refused.status_code == 403 and refused.json()["error"] == "forbidden"
    strict.get("/")  # the page sets the cookie
    from django.middleware.csrf import _get_new_csrf_string, _mask_cipher_secret

    token = _mask_cipher_secret(_get_new_csrf_string())
    strict.cookies["csrftoken"] = token
    accepted = post(strict, REPORT, report([image_item]), HTTP_X_CSRFTOKEN=token)
    assert accepted.status_code == 201
    assert Case.objects.count() == 1


def test_submissions_are_throttled_per_client_with_retry_after(
    client, db, default_list, image_item, monkeypatch
):
    monkeypatch.setattr(ReportSubmitThrottle, "rate", "2/hour", raising=False)
    for n in range(2):
        assert post(client, REPORT, report([{**image_item, "md5": f"{n:032x}"}])).status_code == 201
    third = post(client, REPORT, report([image_item]))
    assert third.status_code == 429 and third.json()["error"] == "throttled"
    assert int(third["Retry-After"]) > 0
    assert post(Client(), REPORT, report([image_item]), REMOTE_ADDR="10.2.2.2").status_code == 201


def test_errors_speak_the_reporters_language(client, submitted):
    response = post(client, STATUS, {**submitted, "pin": "0"}, HTTP_ACCEPT_LANGUAGE="es")
    assert response.status_code == 404 and response["Content-Language"] == "es"
