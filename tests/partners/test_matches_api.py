"""Match reports: POST/PATCH/GET /api/v1/matches, the service behind them, flagging of entries
that distinct partners call not relevant, and what reporters and staff see of it."""

import json
import threading
import time
import uuid
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from cases.services import case_accept, case_create
from hashlists.models import HashEntry, HashList
from hashlists.services import hash_entry_remove
from partners import matches
from partners.api.views import MAX_BATCH_BODY_BYTES
from partners.models import MatchReport
from partners.services import api_key_create, partner_create
from tests.helpers import accepted_case
from tests.helpers import numbered_image as image

URL = "/api/v1/matches"


def video(n, frames=3):
    return {
        "media_type": "video",
        "md5": f"{n:031x}f",
        "vpdq": [{"t": t, "pdq": f"{n:04x}{t:060x}", "q": 90} for t in range(frames)],
    }


@pytest.fixture
def listed(db, default_list, staff_user):
    """Two accepted cases: an image (md5, pdq, phash entries) and a video (md5, vpdq)."""
    image_case, _pin = accepted_case(staff_user, [image(1)])
    video_case, _pin = accepted_case(staff_user, [video(2)])
    return {"image": image_case, "video": video_case}


def entry(hash_type, media_type="image"):
    return HashEntry.objects.get(
        hash_list__slug="take-it-down", hash_type=hash_type, media_type=media_type
    )


def item(n=0, **changes):
    """A valid match item on the image's PDQ entry, by hash."""
    now = timezone.now()
    pdq = entry("pdq")
    return {
        "client_ref": f"ref-{n}",
        "hash_type": "pdq",
        "value": pdq.value,
        "distance": 12,
        "content_ref": f"post/{n}",
        "matched_at": now - timedelta(minutes=5),
        "action": "removed",
        **changes,
    }


def without(mapping, *keys):
    return {k: v for k, v in mapping.items() if k not in keys}


def by_id(entry_, n=0, **changes):
    base = {k: v for k, v in item(n).items() if k not in ("hash_type", "value")}
    return {**base, "entry_id": entry_.public_id, "distance": 0, **changes}


def api_for(partner, scopes=("matches:write",)):
    _key, raw = api_key_create(partner=partner, name="k", scopes=list(scopes))
    return Client(HTTP_AUTHORIZATION=f"Bearer {raw}")


@pytest.fixture
def api(partner):
    return api_for(partner)


@pytest.fixture
def other_partner(db, default_list):
    return partner_create(name="Other Platform", readable_lists=[default_list])


def post(api, items):
    body = items if isinstance(items, dict) else {"matches": items}
    return api.post(URL, body, content_type="application/json")


def patch(api, report_id, body):
    return api.patch(f"{URL}/{report_id}", body, content_type="application/json")


def assert_invalid(response, *fields):
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["error"] == "invalid" and body["detail"]
    assert set(body["fields"]) == set(fields), body["fields"]
    return body["fields"]


def vpdq_item(n=0, **changes):
    base = {k: v for k, v in item(n).items() if k not in ("hash_type", "value")}
    return {
        **base,
        "entry_id": str(entry("vpdq", "video").public_id),
        "distance": 20,
        "listed_match_percent": 92.5,
        "query_match_percent": 60.0,
        **changes,
    }


# ------------------------------------------------------------------------------------------------
# The service, as the StopNCII-compatible feedback calls it
# ------------------------------------------------------------------------------------------------


def test_service_stores_a_batch_and_answers_in_request_order(partner, listed):
    md5 = entry("md5")
    result = matches.match_reports_submit(
        partner=partner, items=[item(0), by_id(md5, 1, action="pending_review")]
    )
    assert [(i.client_ref, i.created) for i in result.items] == [("ref-0", True), ("ref-1", True)]
    stored = {r.client_ref: r for r in MatchReport.objects.all()}
    assert stored["ref-0"].entry == entry("pdq") and stored["ref-0"].distance == 12
    assert stored["ref-1"].entry == md5 and stored["ref-1"].hash_type == "md5"
    assert [i.id for i in result.items] == [stored["ref-0"].public_id, stored["ref-1"].public_id]
    # action_at defaults to the time of the match
    assert stored["ref-1"].action_at == stored["ref-1"].matched_at


def test_service_errors_name_the_item_and_field_and_nothing_is_stored(partner, listed):
    items = [item(0), item(1, distance=32), item(2, action="deleted"), item(0)]
    with pytest.raises(ValidationError) as info:
        matches.match_reports_submit(partner=partner, items=items)
    assert set(info.value.message_dict) == {
        "matches.1.distance",
        "matches.2.action",
        "matches.3.client_ref",
    }
    assert MatchReport.objects.count() == 0


def test_service_error_prefix_is_the_callers(partner, listed):
    with pytest.raises(ValidationError) as info:
        matches.match_reports_submit(
            partner=partner, items=[item(0, matched_at="yesterday")], error_prefix="feedback"
        )
    assert set(info.value.message_dict) == {"feedback.0.matched_at"}


# ------------------------------------------------------------------------------------------------
# POST /api/v1/matches: validation
# ------------------------------------------------------------------------------------------------

LATER = timedelta(hours=1)
BAD_ITEMS = {
    "no-client-ref": (
        lambda: without(item(1), "client_ref"),
        "client_ref",
    ),
    "empty-client-ref": (lambda: item(1, client_ref=""), "client_ref"),
    "long-client-ref": (lambda: item(1, client_ref="r" * 201), "client_ref"),
    "no-entry": (
        lambda: without(item(1), "hash_type", "value"),
        "entry_id",
    ),
    "value-without-type": (
        lambda: without(item(1), "hash_type"),
        "hash_type",
    ),
    "id-and-value": (lambda: item(1, entry_id=str(entry("pdq").public_id)), "entry_id"),
    "bad-entry-id": (lambda: by_id(entry("md5"), 1, entry_id="not-a-uuid"), "entry_id"),
    "unknown-entry-id": (lambda: by_id(entry("md5"), 1, entry_id=str(uuid.uuid4())), "entry_id"),
    "unknown-value": (lambda: item(1, value="0" * 64), "value"),
    "uppercase-value": (lambda: item(1, value=entry("pdq").value.upper()), "value"),
    "short-value": (lambda: item(1, value=entry("pdq").value[:-1]), "value"),
    "unknown-hash-type": (lambda: item(1, hash_type="sha1"), "hash_type"),
    "no-distance": (lambda: without(item(1), "distance"), "distance"),
    "negative-distance": (lambda: item(1, distance=-1), "distance"),
    "string-distance": (lambda: item(1, distance="twelve"), "distance"),
    "pdq-over-31": (lambda: item(1, distance=32), "distance"),
    "md5-not-exact": (lambda: by_id(entry("md5"), 1, distance=1), "distance"),
    "phash-over-8": (
        lambda: item(1, hash_type="phash", value=entry("phash").value, distance=9),
        "distance",
    ),
    "vpdq-frame-over-31": (lambda: vpdq_item(1, distance=32), "distance"),
    "vpdq-without-percent": (
        lambda: without(vpdq_item(1), "listed_match_percent"),
        "listed_match_percent",
    ),
    "vpdq-under-80-percent": (
        lambda: vpdq_item(1, listed_match_percent=79.9),
        "listed_match_percent",
    ),
    "percent-over-100": (lambda: vpdq_item(1, query_match_percent=100.5), "query_match_percent"),
    "percent-on-pdq": (lambda: item(1, listed_match_percent=90), "listed_match_percent"),
    "long-content-ref": (lambda: item(1, content_ref="c" * 501), "content_ref"),
    "no-matched-at": (
        lambda: without(item(1), "matched_at"),
        "matched_at",
    ),
    "bad-matched-at": (lambda: item(1, matched_at="last tuesday"), "matched_at"),
    "future-matched-at": (lambda: item(1, matched_at=timezone.now() + LATER), "matched_at"),
    "no-action": (lambda: without(item(1), "action"), "action"),
    "unknown-action": (lambda: item(1, action="deleted"), "action"),
    "action-before-match": (
        lambda: item(1, action_at=timezone.now() - timedelta(days=1)),
        "action_at",
    ),
    "future-action-at": (lambda: item(1, action_at=timezone.now() + LATER), "action_at"),
}


@pytest.mark.parametrize(("make", "field"), BAD_ITEMS.values(), ids=BAD_ITEMS.keys())
def test_a_bad_item_is_a_400_naming_it_and_nothing_is_stored(api, listed, make, field):
    response = post(api, [item(0), make(), item(2)])
    messages = assert_invalid(response, f"matches.1.{field}")
    assert all(isinstance(m, str) and m for m in messages[f"matches.1.{field}"])
    assert MatchReport.objects.count() == 0


@pytest.mark.parametrize("count", [0, 1001])
def test_a_batch_of_0_or_more_than_1000_is_refused(api, listed, count):
    response = post(api, [item(n) for n in range(count)])
    assert_invalid(response, "matches")
    assert MatchReport.objects.count() == 0


@pytest.mark.parametrize(
    "body", [{}, {"matches": "all"}, {"matches": [["ref"]]}, [{"client_ref": "r"}]]
)
def test_a_body_of_the_wrong_shape_is_a_400(api, listed, body):
    response = api.post(URL, json.dumps(body), content_type="application/json")
    assert response.status_code == 400 and response.json()["fields"]
    assert MatchReport.objects.count() == 0


def test_a_client_ref_repeated_in_one_batch_is_a_400(api, listed):
    response = post(api, [item(0), item(1), item(0)])
    messages = assert_invalid(response, "matches.2.client_ref")
    assert "item 0" in messages["matches.2.client_ref"][0]
    assert MatchReport.objects.count() == 0


def test_every_bad_item_is_named_at_once(api, listed):
    response = post(api, [item(0, distance=40), item(1), item(2, value="f" * 64)])
    assert_invalid(response, "matches.0.distance", "matches.2.value")


def test_an_entry_on_a_list_not_granted_is_refused_like_an_unknown_one(api, listed, staff_user):
    hidden = HashList.objects.create(slug="hidden", name="Not granted", published=True)
    case, _pin = case_create(
        reporter="self", under_18_when_made=True, items=[image(7)], hash_list=hidden
    )
    case_accept(case=case, staff=staff_user)
    secret = HashEntry.objects.get(hash_list=hidden, hash_type="md5")
    response = post(api, [by_id(secret, 0), by_id(entry("md5"), 1, entry_id=str(uuid.uuid4()))])
    fields = assert_invalid(response, "matches.0.entry_id", "matches.1.entry_id")
    assert fields["matches.0.entry_id"] == fields["matches.1.entry_id"]
    by_value = post(api, [item(0, hash_type="md5", value=secret.value, distance=0)])
    assert by_value.json()["fields"]["matches.0.value"] == fields["matches.0.entry_id"]
    assert MatchReport.objects.count() == 0


def test_an_unpublished_list_is_not_readable(api, listed, default_list):
    HashList.objects.filter(pk=default_list.pk).update(published=False)
    assert_invalid(post(api, [item(0)]), "matches.0.value")


def test_a_hash_on_two_of_the_partners_lists_needs_the_entry_id(api, partner, listed, staff_user):
    second = HashList.objects.create(slug="second", name="Second", published=True)
    partner.readable_lists.add(second)
    case, _pin = case_create(
        reporter="self", under_18_when_made=True, items=[image(1)], hash_list=second
    )
    case_accept(case=case, staff=staff_user)
    assert_invalid(post(api, [item(0)]), "matches.0.value")
    there = HashEntry.objects.get(hash_list=second, hash_type="pdq")
    response = post(api, [by_id(there, 0, distance=3)])
    assert response.status_code == 201, response.content
    assert MatchReport.objects.get().entry == there


def test_each_hash_type_within_its_threshold_is_accepted(api, listed):
    items = [
        item(0, distance=31),
        item(1, hash_type="phash", value=entry("phash").value, distance=8),
        item(2, hash_type="md5", value=entry("md5").value, distance=0),
        by_id(entry("md5", "video"), 3),
        vpdq_item(4, listed_match_percent=80),
    ]
    response = post(api, items)
    assert response.status_code == 201, response.content
    stored = {r.client_ref: r for r in MatchReport.objects.select_related("entry")}
    assert {ref: r.hash_type for ref, r in stored.items()} == {
        "ref-0": "pdq",
        "ref-1": "phash",
        "ref-2": "md5",
        "ref-3": "md5",
        "ref-4": "vpdq",
    }
    assert stored["ref-3"].entry.media_type == "video"
    assert (stored["ref-4"].listed_match_percent, stored["ref-4"].query_match_percent) == (80, 60)


def test_a_body_over_the_limit_is_a_413_and_a_full_batch_of_long_items_fits(api, listed):
    now = timezone.now()
    longest = [
        item(
            n,
            client_ref=f"{n:04d}" + "r" * 196,
            content_ref="c" * 500,
            action="not_relevant",
            matched_at=now - timedelta(minutes=1),
            action_at=now - timedelta(seconds=30),
        )
        for n in range(1000)
    ]
    body = json.dumps(
        {
            "matches": [
                {
                    **i,
                    "matched_at": i["matched_at"].isoformat(),
                    "action_at": i["action_at"].isoformat(),
                }
                for i in longest
            ]
        }
    )
    assert len(body) < MAX_BATCH_BODY_BYTES
    response = api.post(URL, body, content_type="application/json")
    assert response.status_code == 201, response.content[:500]
    assert MatchReport.objects.count() == 1000

    padded = body[:-1] + " " * (MAX_BATCH_BODY_BYTES - len(body) + 1) + "}"
    too_large = api.post(URL, padded, content_type="application/json")
    assert too_large.status_code == 413
    assert too_large.json()["error"] == "too_large" and too_large.json()["fields"] == {}


def test_form_data_is_a_415(api, listed):
    response = api.post(URL, {"matches": "x"})
    assert response.status_code == 415 and response.json()["error"] == "unsupported_media_type"


# ------------------------------------------------------------------------------------------------
# POST: idempotency and races
# ------------------------------------------------------------------------------------------------


def test_a_replayed_batch_creates_nothing_and_answers_with_the_same_ids(api, listed):
    batch = [item(0), item(1, action="pending_review"), by_id(entry("md5"), 2)]
    first = post(api, batch)
    assert first.status_code == 201
    assert [r["created"] for r in first.json()["results"]] == [True, True, True]
    again = post(api, batch)
    assert again.status_code == 200
    assert again.json()["created"] == 0 and again.json()["existing"] == 3
    assert [r["id"] for r in again.json()["results"]] == [r["id"] for r in first.json()["results"]]
    assert MatchReport.objects.count() == 3

    mixed = post(api, [item(3), item(1, action="removed")])
    assert mixed.status_code == 201
    results = mixed.json()["results"]
    assert [(r["client_ref"], r["created"]) for r in results] == [("ref-3", True), ("ref-1", False)]
    assert results[1]["id"] == first.json()["results"][1]["id"]
    # A replay does not change the stored report: outcomes change through PATCH.
    assert MatchReport.objects.get(client_ref="ref-1").action == "pending_review"


def test_ids_are_opaque_uuids_not_sequential(api, listed):
    ids = [r["id"] for r in post(api, [item(n) for n in range(3)]).json()["results"]]
    assert all(uuid.UUID(i).version == 4 for i in ids)
    assert {str(pk) for pk in MatchReport.objects.values_list("pk", flat=True)}.isdisjoint(ids)


def test_client_refs_are_per_partner(api, listed, other_partner):
    mine = post(api, [item(0)]).json()["results"][0]
    theirs = post(api_for(other_partner), [item(0)]).json()["results"][0]
    assert mine["created"] and theirs["created"] and mine["id"] != theirs["id"]


def test_the_number_of_queries_does_not_grow_with_the_batch(api, listed):
    values = {t: entry(t).value for t in ("pdq", "phash", "md5")}
    post(api, [item(-1)])  # the key's last_used_at is written once a minute: not counted

    def batch(size, offset):
        return [
            item(offset + n, hash_type=t, value=values[t], distance=0)
            if n % 3
            else by_id(entry("md5"), offset + n)
            for n in range(size)
            for t in ("pdq", "phash", "md5")[n % 3 : n % 3 + 1]
        ]

    counts = []
    for size, offset in ((6, 0), (999, 1000)):
        items = batch(size, offset)
        with CaptureQueriesContext(connection) as queries:
            response = post(api, items)
        assert response.status_code == 201, response.content[:300]
        counts.append(len(queries))
    assert counts[0] == counts[1] <= 12, counts
    assert MatchReport.objects.count() == 1 + 6 + 999


@pytest.mark.django_db(transaction=True)
def test_two_requests_racing_with_the_same_batch_store_it_once(partner, listed):
    batch = [item(n, action="not_relevant" if n % 2 else "removed") for n in range(300)]
    clients = [api_for(partner), api_for(partner)]
    start = threading.Barrier(2)
    answers = [None, None]

    def send(n):
        try:
            start.wait()
            answers[n] = post(clients[n], batch)
        finally:
            connection.close()

    threads = [threading.Thread(target=send, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert [a.status_code in (200, 201) for a in answers] == [True, True], answers
    first, second = (a.json() for a in answers)
    assert [r["id"] for r in first["results"]] == [r["id"] for r in second["results"]]
    assert first["created"] + second["created"] == 300
    assert MatchReport.objects.count() == 300
    assert entry("pdq").flagged_at is None  # one partner, however many reports


def wait_for_waiting_locks(count, timeout=20.0):
    """Until ``count`` lock requests wait in PostgreSQL (other connections blocked on ours)."""
    deadline = time.monotonic() + timeout
    with connection.cursor() as cursor:
        while time.monotonic() < deadline:
            cursor.execute("SELECT count(DISTINCT pid) FROM pg_locks WHERE NOT granted")
            if cursor.fetchone()[0] >= count:
                return True
            time.sleep(0.01)
    return False


@pytest.mark.django_db(transaction=True)
def test_two_partners_reporting_on_the_same_entries_at_once_neither_deadlocks(
    partner, other_partner, listed
):
    """Each batch locks the entries it calls not relevant (to count partners), and at commit its
    reports' foreign keys take key-share locks on every entry they name, including the ones the
    other batch locked. The flagging lock must not block those (FOR NO KEY UPDATE), or the two
    would deadlock. The second to take the shared entry's lock counts the first's report, so
    that entry ends flagged.

    A staff transaction holding the entries makes both batches wait, then lets them go at once,
    so that each holds its own locks before either commits."""
    only_a, only_b, shared = entry("md5"), entry("pdq"), entry("phash")
    batches = [
        [
            by_id(only_a, 0, action="not_relevant"),
            by_id(only_b, 1, action="removed"),
            by_id(shared, 2, action="not_relevant"),
        ],
        [
            by_id(only_b, 0, action="not_relevant"),
            by_id(only_a, 1, action="removed"),
            by_id(shared, 2, action="not_relevant"),
        ],
    ]
    clients = [api_for(partner), api_for(other_partner)]
    answers, released = [None, None], {}
    holding = threading.Event()

    def staff_holding_the_entries():
        try:
            with transaction.atomic():
                ids = [only_a.pk, only_b.pk, shared.pk]
                list(HashEntry.objects.select_for_update().filter(pk__in=ids))
                holding.set()
                released["both_waited"] = wait_for_waiting_locks(2)
        finally:
            connection.close()

    def send(n):
        try:
            answers[n] = post(clients[n], batches[n])
        finally:
            connection.close()

    staff = threading.Thread(target=staff_holding_the_entries)
    staff.start()
    holding.wait(timeout=10)
    senders = [threading.Thread(target=send, args=(n,)) for n in range(2)]
    for t in senders:
        t.start()
    for t in [staff, *senders]:
        t.join(timeout=60)
    assert released["both_waited"]
    assert [a.status_code for a in answers] == [201, 201], [a.content[:300] for a in answers]
    assert MatchReport.objects.count() == 6
    assert list(HashEntry.objects.filter(flagged_at__isnull=False)) == [shared]


@pytest.mark.django_db(transaction=True)
def test_a_client_ref_committed_by_another_request_mid_way_is_answered_not_an_error(
    api, partner, listed
):
    """The request checks for existing refs, then inserts; a concurrent request commits the same
    ref in between. The insert waits for it, skips the row, and answers with its id."""
    inserted, theirs = threading.Event(), {}

    def concurrent_writer():
        try:
            with transaction.atomic():
                report = MatchReport.objects.create(
                    partner=partner,
                    entry=entry("pdq"),
                    client_ref="ref-0",
                    hash_type="pdq",
                    distance=1,
                    matched_at=timezone.now(),
                    action="removed",
                    action_at=timezone.now(),
                )
                theirs["id"] = str(report.public_id)
                inserted.set()
                # Hold until the request waits on our row.
                theirs["waited"] = wait_for_waiting_locks(1)
        finally:
            connection.close()

    writer = threading.Thread(target=concurrent_writer)
    writer.start()
    inserted.wait(timeout=10)
    response = post(api, [item(0), item(1)])
    writer.join(timeout=10)
    assert theirs.get("waited"), "the request never waited on the concurrent row"
    assert response.status_code == 201, response.content
    results = response.json()["results"]
    assert results[0] == {"client_ref": "ref-0", "id": theirs["id"], "created": False}
    assert results[1]["created"] is True
    assert MatchReport.objects.count() == 2


# ------------------------------------------------------------------------------------------------
# PATCH /api/v1/matches/{id}
# ------------------------------------------------------------------------------------------------


@pytest.fixture
def pending(api, listed):
    response = post(api, [item(0, action="pending_review")])
    return response.json()["results"][0]["id"]


def test_a_pending_report_gets_its_outcome_at_now_by_default(api, pending):
    before = timezone.now()
    response = patch(api, pending, {"action": "removed"})
    assert response.status_code == 200, response.content
    assert response.json()["action"] == "removed" and response.json()["id"] == pending
    report = MatchReport.objects.get(public_id=pending)
    assert report.action == "removed" and before <= report.action_at <= timezone.now()


def test_an_outcome_can_be_corrected_and_a_repeat_changes_nothing(api, pending):
    at = timezone.now().replace(microsecond=0) - timedelta(minutes=1)
    assert patch(api, pending, {"action": "restricted", "action_at": at}).status_code == 200
    assert patch(api, pending, {"action": "removed", "action_at": at}).status_code == 200
    report = MatchReport.objects.get(public_id=pending)
    assert (report.action, report.action_at) == ("removed", at)
    repeat = patch(api, pending, {"action": "removed"})
    assert repeat.status_code == 200
    assert MatchReport.objects.get(public_id=pending).action_at == at


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"action": "pending_review"}, "action"),
        ({"action": "deleted"}, "action"),
        ({}, "action"),
        ({"action": "removed", "action_at": "soon"}, "action_at"),
        ({"action": "removed", "action_at": "2000-01-01T00:00:00Z"}, "action_at"),
        (
            {"action": "removed", "action_at": (timezone.now() + timedelta(days=1)).isoformat()},
            "action_at",
        ),
    ],
)
def test_illegal_outcomes_are_a_400_and_change_nothing(api, pending, body, field):
    assert_invalid(patch(api, pending, body), field)
    assert MatchReport.objects.get(public_id=pending).action == "pending_review"


def test_nothing_goes_back_to_pending_review(api, pending):
    patch(api, pending, {"action": "no_action"})
    assert_invalid(patch(api, pending, {"action": "pending_review"}), "action")
    assert MatchReport.objects.get(public_id=pending).action == "no_action"


def test_another_partners_report_is_a_404_like_a_missing_one(pending, other_partner):
    theirs = api_for(other_partner)
    other = patch(theirs, pending, {"action": "removed"})
    missing = patch(theirs, uuid.uuid4(), {"action": "removed"})
    malformed = patch(theirs, "12", {"action": "removed"})
    assert other.status_code == missing.status_code == malformed.status_code == 404
    assert other.json() == missing.json() == malformed.json()
    assert theirs.get(f"{URL}/{pending}").json() == missing.json()
    assert MatchReport.objects.get(public_id=pending).action == "pending_review"


# ------------------------------------------------------------------------------------------------
# GET /api/v1/matches and /api/v1/matches/{id}
# ------------------------------------------------------------------------------------------------


def test_get_one_report(api, pending):
    response = api.get(f"{URL}/{pending}")
    assert response.status_code == 200
    body = response.json()
    pdq = entry("pdq")
    assert body["id"] == pending and body["client_ref"] == "ref-0"
    assert (body["entry_id"], body["list"], body["hash_type"]) == (
        str(pdq.public_id),
        "take-it-down",
        "pdq",
    )
    assert body["distance"] == 12 and body["action"] == "pending_review"
    assert body["listed_match_percent"] is None


def test_the_list_pages_through_the_partners_own_reports_newest_first(api, listed, other_partner):
    now = timezone.now()
    items = [item(n, matched_at=now - timedelta(minutes=n % 4)) for n in range(9)]
    ids = {r["client_ref"]: r["id"] for r in post(api, items).json()["results"]}
    post(api_for(other_partner), [item(100)])
    seen, url, pages = [], f"{URL}?limit=2", 0
    while url:
        page = api.get(url).json()
        seen += page["results"]
        url, pages = page["next"], pages + 1
    assert pages == 5 and len(seen) == 9
    assert {r["id"] for r in seen} == set(ids.values())
    keys = [(r["matched_at"], r["id"]) for r in seen]
    assert keys == sorted(keys, reverse=True)


def test_pages_are_stable_while_new_reports_arrive(api, listed):
    now = timezone.now()
    post(api, [item(n, matched_at=now - timedelta(minutes=10 + n)) for n in range(4)])
    first = api.get(URL, {"limit": 2}).json()
    post(api, [item(50, matched_at=now - timedelta(minutes=1))])  # newer than all
    second = api.get(first["next"]).json()
    assert [r["client_ref"] for r in first["results"] + second["results"]] == [
        "ref-0",
        "ref-1",
        "ref-2",
        "ref-3",
    ]
    assert second["next"] is None and second["next_cursor"] is None


def test_the_list_filters_by_action_and_match_time(api, listed):
    now = timezone.now().replace(microsecond=0)
    post(
        api,
        [
            item(0, matched_at=now - timedelta(hours=3), action="removed"),
            item(1, matched_at=now - timedelta(hours=2), action="pending_review"),
            item(2, matched_at=now - timedelta(hours=1), action="removed"),
        ],
    )

    def refs(**params):
        response = api.get(URL, params)
        assert response.status_code == 200, response.content
        return [r["client_ref"] for r in response.json()["results"]]

    assert refs(action="removed") == ["ref-2", "ref-0"]
    since = (now - timedelta(hours=2)).isoformat()
    assert refs(matched_since=since) == ["ref-2", "ref-1"]  # inclusive
    assert refs(matched_before=since) == ["ref-0"]  # exclusive
    assert refs(matched_since=since, action="removed") == ["ref-2"]
    page = api.get(URL, {"action": "removed", "limit": 1}).json()
    assert "action=removed" in page["next"] and "limit=1" in page["next"]
    assert [r["client_ref"] for r in api.get(page["next"]).json()["results"]] == ["ref-0"]


@pytest.mark.parametrize(
    "params",
    [{"cursor": "garbage"}, {"limit": 0}, {"limit": 1001}, {"action": "x"}, {"matched_since": "x"}],
)
def test_bad_list_parameters_are_a_400(api, listed, params):
    response = api.get(URL, params)
    assert response.status_code == 400 and set(response.json()["fields"]) == set(params)


# ------------------------------------------------------------------------------------------------
# Keys and scopes
# ------------------------------------------------------------------------------------------------


def test_a_read_only_key_cannot_report_or_read_matches(partner, listed, pending):
    reader = api_for(partner, scopes=["lists:read"])
    for response in (
        post(reader, [item(5)]),
        reader.get(URL),
        reader.get(f"{URL}/{pending}"),
        patch(reader, pending, {"action": "removed"}),
    ):
        assert response.status_code == 403
        assert (
            response.json()["error"] == "forbidden" and "matches:write" in response.json()["detail"]
        )
    assert MatchReport.objects.count() == 1


def test_no_key_is_a_401(db):
    response = Client().post(URL, {"matches": []}, content_type="application/json")
    assert response.status_code == 401 and response.json()["error"] == "not_authenticated"


# ------------------------------------------------------------------------------------------------
# Flagging entries that distinct partners call not relevant
# ------------------------------------------------------------------------------------------------


def test_two_distinct_partners_calling_an_entry_not_relevant_flag_it(
    api, listed, other_partner, client, staff_user
):
    pdq = entry("pdq")
    post(api, [item(0, action="not_relevant"), item(1, action="not_relevant")])
    assert entry("pdq").flagged_at is None  # one partner, twice: not flagged
    post(api_for(other_partner), [item(0, action="not_relevant")])
    flagged_at = entry("pdq").flagged_at
    assert flagged_at is not None
    assert HashEntry.objects.filter(flagged_at__isnull=False).get() == pdq

    third = partner_create(name="Third", readable_lists=[pdq.hash_list])
    post(api_for(third), [item(0, action="not_relevant")])
    assert entry("pdq").flagged_at == flagged_at  # set once

    client.force_login(staff_user)
    queue = client.get(
        reverse("admin:hashlists_hashentry_changelist"), {"flagged_at__isnull": "False"}
    )
    assert queue.status_code == 200
    assert str(pdq.public_id) in queue.content.decode()
    assert str(entry("md5").public_id) not in queue.content.decode()


def test_a_later_not_relevant_outcome_flags_the_entry(api, listed, other_partner):
    post(api, [item(0, action="not_relevant")])
    theirs = api_for(other_partner)
    report = post(theirs, [item(0, action="pending_review")]).json()["results"][0]["id"]
    assert entry("pdq").flagged_at is None
    assert patch(theirs, report, {"action": "not_relevant"}).status_code == 200
    assert entry("pdq").flagged_at is not None


def test_other_outcomes_and_removed_entries_do_not_flag(api, listed, other_partner, staff_user):
    post(api, [item(0, action="not_relevant")])
    post(api_for(other_partner), [item(0, action="no_action")])
    assert entry("pdq").flagged_at is None
    hash_entry_remove(entry=entry("md5"), staff=staff_user, reason="staff")
    post(api, [by_id(entry("md5"), 1, action="not_relevant")])
    post(api_for(other_partner), [by_id(entry("md5"), 1, action="not_relevant")])
    assert entry("md5").flagged_at is None  # already off the list: nothing to review


# ------------------------------------------------------------------------------------------------
# What reporters and staff see
# ------------------------------------------------------------------------------------------------


def test_the_reporters_status_counts_platforms_from_reports_sent_through_the_api(
    client, db, default_list, staff_user
):
    case, pin = accepted_case(staff_user, [image(1)])
    pdq = HashEntry.objects.get(hash_type="pdq")
    outcomes = {
        "Removes": "removed",
        "Restricts": "restricted",
        "Reviews": "pending_review",
        "False match": "not_relevant",
        "Leaves up": "no_action",
    }
    for name, action in outcomes.items():
        platform = api_for(partner_create(name=name, readable_lists=[default_list]))
        response = post(platform, [item(0, action=action)])
        assert response.status_code == 201, response.content
        if name == "Reviews":
            report = response.json()["results"][0]["id"]
            assert patch(platform, report, {"action": "removed"}).status_code == 200
        if name == "Removes":  # a second file, a second report: still one platform
            assert post(platform, [by_id(pdq, 1, distance=3)]).status_code == 201

    status = client.post(
        "/api/public/cases/status",
        {"case_number": case.case_number, "pin": pin},
        content_type="application/json",
    )
    assert status.status_code == 200
    body = status.json()
    # Found a copy: all but the platform that said the content is not this one. Removed: the
    # platform that removed at once and the one that removed after review; restricted is not
    # removed.
    assert (body["platforms_matched"], body["platforms_removed"]) == (4, 2)


def test_the_reporters_status_does_not_count_a_platform_whose_matches_were_all_false(
    client, db, default_list, staff_user
):
    case, pin = accepted_case(staff_user, [image(1)])
    platform = api_for(partner_create(name="False match", readable_lists=[default_list]))
    post(platform, [item(0, action="not_relevant")])
    body = client.post(
        "/api/public/cases/status",
        {"case_number": case.case_number, "pin": pin},
        content_type="application/json",
    ).json()
    assert (body["platforms_matched"], body["platforms_removed"]) == (0, 0)


def test_staff_see_matches_per_case_and_per_partner_read_only(
    client, django_user_model, api, listed, other_partner
):
    post(api, [item(0)])
    post(api_for(other_partner), [item(0, action="restricted")])
    root = django_user_model.objects.create_superuser(username="root", password="pw")
    client.force_login(root)
    case_page = client.get(
        reverse("admin:cases_case_change", args=[listed["image"].pk])
    ).content.decode()
    assert "Example Platform" in case_page and "Other Platform" in case_page

    changelist = reverse("admin:partners_matchreport_changelist")
    page = client.get(changelist, {"partner__id__exact": other_partner.pk}).content.decode()
    rows = page.split('id="result_list"')[1].split("</table>")[0]
    assert "Other Platform" in rows and "Example Platform" not in rows
    report = MatchReport.objects.get(partner=other_partner)
    found = client.get(changelist, {"q": str(report.public_id)}).content.decode()
    assert "Other Platform" in found.split('id="result_list"')[1]
    change = client.get(reverse("admin:partners_matchreport_change", args=[report.pk]))
    assert change.status_code == 200
    assert str(report.public_id) in change.content.decode()
    assert 'name="action"' not in change.content.decode()
    assert (
        client.post(
            reverse("admin:partners_matchreport_change", args=[report.pk]), {"action": "removed"}
        ).status_code
        == 403
    )
    assert MatchReport.objects.get(pk=report.pk).action == "restricted"
