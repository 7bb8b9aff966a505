"""The StopNCII-compatible API, driven by python-threatexchange's own StopNCII client (and its
CLI) over real HTTP against a live server, with cases accepted and withdrawn through the
project's services so that the change feed behind FetchHashes is the real one."""

import json
import os
import random
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
from django.test import Client
from django.utils import timezone
from threatexchange.exchanges.clients.stopncii.api import (
    StopNCIIAPI,
    StopNCIICaseStatus,
    StopNCIICSPFeedback,
    StopNCIICSPFeedbackValue,
    StopNCIIEndpoint,
    StopNCIISignalType,
)

from cases.services import case_withdraw
from hashlists.models import HashEntry, HashList, ListChange
from hashlists.services import list_changes_sequence
from partners.matches import match_reports_submit
from partners.models import MatchReport, Partner
from partners.services import api_key_create, api_key_revoke, partner_create
from tests.helpers import accepted_case

BASE = "/api/compat/stopncii/v1"
PDQ, MD5 = StopNCIISignalType.ImagePDQ, StopNCIISignalType.VideoMD5
ACTIVE, WITHDRAWN = StopNCIICaseStatus.Active, StopNCIICaseStatus.Withdrawn
_rng = random.Random(6)


def image() -> dict:
    """A distinct, publishable image: a random PDQ (good quality), MD5 and pHash."""
    return {
        "media_type": "image",
        "md5": f"{_rng.getrandbits(128):032x}",
        "pdq": f"{_rng.getrandbits(256):064x}",
        "pdq_quality": 90,
        "phash": f"{_rng.getrandbits(16):04x}f0f0f00f0f0f",
    }


def video() -> dict:
    return {
        "media_type": "video",
        "md5": f"{_rng.getrandbits(128):032x}",
        "vpdq": [{"t": t, "pdq": f"{_rng.getrandbits(256):064x}", "q": 90} for t in range(3)],
    }


def key_of(item: dict) -> tuple[StopNCIISignalType, str]:
    """The record FetchHashes gives for a reported file: images by PDQ, videos by MD5."""
    return (PDQ, item["pdq"]) if item["media_type"] == "image" else (MD5, item["md5"])


def entry_id(item: dict, hash_list: HashList) -> str:
    hash_type = "pdq" if item["media_type"] == "image" else "md5"
    value = item["pdq"] if item["media_type"] == "image" else item["md5"]
    return str(
        HashEntry.objects.get(hash_list=hash_list, hash_type=hash_type, value=value).public_id
    )


def next_second() -> None:
    """Sleep into the next whole second, so that what follows is sequenced in a later second."""
    time.sleep(1.02 - time.time() % 1)


def stopncii_client(live_server, function_key: str, subscription_key: str | None = None):
    return StopNCIIAPI(
        subscription_key=function_key if subscription_key is None else subscription_key,
        fetch_function_key=function_key,
        additional_function_keys={StopNCIIEndpoint.SubmitFeedback: function_key},
        base_url_override=live_server.url + BASE,
    )


def fetch_pages(api: StopNCIIAPI, *, start: int = StopNCIIAPI.DEFAULT_START_TIME, size: int = 800):
    pages, token = [], ""
    while True:
        page = api.fetch_hashes(page_size=size, start_timestamp=start, next_page=token)
        pages.append(page)
        if not page.hasMoreRecords:
            return pages
        token = page.nextPageToken


def records(pages) -> dict:
    """What the client keeps: the last record of each (signal type, hash)."""
    return {(r.signalType, r.hashValue): r for page in pages for r in page.hashRecords}


@pytest.fixture
def key(partner):
    return api_key_create(partner=partner, name="hma", scopes=["lists:read", "matches:write"])[1]


@pytest.fixture
def api(live_server, key):
    return stopncii_client(live_server, key)


def test_a_full_fetch_pages_through_every_hash_once_with_opaque_entry_ids(
    api, live_server, key, default_list, staff_user
):
    items = [image() for _ in range(5)] + [video() for _ in range(2)]
    cases = [accepted_case(staff_user, [item])[0] for item in items]

    pages = fetch_pages(api, size=3)

    assert [page.count for page in pages] == [3, 3, 1]
    assert [page.hasMoreRecords for page in pages] == [True, True, False]
    assert pages[-1].nextPageToken is None and all(p.nextPageToken for p in pages[:-1])
    delivered = [(r.signalType, r.hashValue) for page in pages for r in page.hashRecords]
    assert sorted(delivered, key=str) == sorted(map(key_of, items), key=str)  # each exactly once
    for page in pages:  # in feed order, and each checkpoint is the second of its last record
        assert page.nextSetTimestamp == page.hashRecords[-1].lastModtimestamp
    stamps = [r.lastModtimestamp for page in pages for r in page.hashRecords]
    assert stamps == sorted(stamps)
    for item in items:
        record = records(pages)[key_of(item)]
        assert record.hashStatus == ACTIVE and record.CSPFeedbacks == []
        assert record.caseNumbers == {entry_id(item, default_list): ACTIVE}
    # The client's own loop (its default page size) sees the same; no case number travels.
    assert records(api.fetch_hashes_iter()).keys() == records(pages).keys()
    raw = requests.get(
        live_server.url + BASE + "/FetchHashes",
        headers={"x-functions-key": key, "Ocp-Apim-Subscription-Key": key},
        timeout=10,
    ).text
    assert not any(case.case_number in raw for case in cases)


def test_an_incremental_fetch_returns_what_changed_since_the_checkpoint_with_withdrawals(
    api, default_list, staff_user
):
    early = [image(), image()]
    early_cases = [accepted_case(staff_user, [item])[0] for item in early]
    next_second()
    boundary = image()
    accepted_case(staff_user, [boundary])
    checkpoint = fetch_pages(api)[-1].nextSetTimestamp
    next_second()
    later = [image(), video()]
    for item in later:
        accepted_case(staff_user, [item])
    case_withdraw(case=early_cases[0])
    list_changes_sequence()

    pages = list(api.fetch_hashes_iter(start_timestamp=checkpoint))

    got = records(pages)
    # The boundary second is sent again (harmless: records replace each other); the unchanged
    # early hash is not sent at all.
    assert set(got) - {key_of(boundary)} == {key_of(early[0]), *map(key_of, later)}
    withdrawn = got[key_of(early[0])]
    assert withdrawn.hashStatus == WITHDRAWN
    assert withdrawn.caseNumbers == {entry_id(early[0], default_list): WITHDRAWN}
    assert all(got[key_of(item)].hashStatus == ACTIVE for item in later)
    assert pages[-1].nextSetTimestamp >= checkpoint


def test_a_change_sequenced_in_the_checkpoint_second_after_the_fetch_is_not_skipped(
    api, default_list, staff_user
):
    """Changes can share a second with the last record of a fetch and still be sequenced after
    it; the client keeps whole seconds, so the checkpoint must not move past that second."""
    first = [image() for _ in range(3)]
    for item in first:
        accepted_case(staff_user, [item])
    second = datetime(2026, 1, 1, tzinfo=UTC)
    ListChange.objects.update(sequenced_at=second + timedelta(milliseconds=500))

    pages = fetch_pages(api, size=2)  # a page boundary inside the second, too
    assert sorted(records(pages), key=str) == sorted(map(key_of, first), key=str)
    checkpoint = pages[-1].nextSetTimestamp
    assert checkpoint == int(second.timestamp())

    late = image()
    accepted_case(staff_user, [late])
    ListChange.objects.filter(seq__gt=3).update(sequenced_at=second + timedelta(milliseconds=900))

    assert key_of(late) in records(fetch_pages(api, start=checkpoint))


def test_feedback_through_the_client_is_recorded_as_match_outcomes_the_reporter_sees(
    api, live_server, partner, default_list, staff_user
):
    blocked, not_relevant, pending = image(), image(), video()
    (blocked_case, blocked_pin), (other_case, other_pin), _ = (
        accepted_case(staff_user, [item]) for item in (blocked, not_relevant, pending)
    )

    api.submit_feedbacks(
        {
            key_of(blocked): StopNCIICSPFeedback(StopNCIICSPFeedbackValue.Blocked),
            key_of(not_relevant): StopNCIICSPFeedback(
                StopNCIICSPFeedbackValue.NotBlocked, {"not_relevant"}
            ),
            key_of(pending): StopNCIICSPFeedback(StopNCIICSPFeedbackValue.PendingReview),
        }
    )

    def outcomes():
        return {
            r.entry.value: (r.action, r.hash_type, r.distance)
            for r in MatchReport.objects.filter(partner=partner).select_related("entry")
        }

    assert outcomes() == {
        blocked["pdq"]: ("removed", "pdq", 0),
        not_relevant["pdq"]: ("not_relevant", "pdq", 0),
        pending["md5"]: ("pending_review", "md5", 0),
    }
    status = {
        number: Client()
        .post(
            "/api/public/cases/status",
            json.dumps({"case_number": number, "pin": pin}),
            content_type="application/json",
        )
        .json()
        for number, pin in (
            (blocked_case.case_number, blocked_pin),
            (other_case.case_number, other_pin),
        )
    }
    assert status[blocked_case.case_number]["platforms_matched"] == 1
    assert status[blocked_case.case_number]["platforms_removed"] == 1
    assert status[other_case.case_number]["platforms_removed"] == 0

    # Feedback again: the newest outcome stands on the same report; never back to pending.
    api.submit_feedback(MD5, pending["md5"], StopNCIICSPFeedbackValue.Blocked)
    api.submit_feedback(PDQ, blocked["pdq"], StopNCIICSPFeedbackValue.PendingReview)
    api.submit_feedback(PDQ, blocked["pdq"], StopNCIICSPFeedbackValue.Blocked)
    assert outcomes() == {
        blocked["pdq"]: ("removed", "pdq", 0),
        not_relevant["pdq"]: ("not_relevant", "pdq", 0),
        pending["md5"]: ("removed", "md5", 0),
    }

    # Each platform reads back its own feedback, never another's.
    rival = partner_create(name="Rival Platform", readable_lists=[default_list])
    match_reports_submit(
        partner=rival,
        items=[
            {
                "client_ref": "r1",
                "hash_type": "pdq",
                "value": not_relevant["pdq"],
                "distance": 3,
                "matched_at": timezone.now(),
                "action": "removed",
            }
        ],
    )
    got = records(fetch_pages(api))
    own = {k: [(f.feedbackValue, f.tags, f.source) for f in r.CSPFeedbacks] for k, r in got.items()}
    assert own == {
        key_of(blocked): [(StopNCIICSPFeedbackValue.Blocked, set(), partner.name)],
        key_of(not_relevant): [
            (StopNCIICSPFeedbackValue.NotBlocked, {"not_relevant"}, partner.name)
        ],
        key_of(pending): [(StopNCIICSPFeedbackValue.Blocked, set(), partner.name)],
    }
    rival_key = api_key_create(partner=rival, name="k", scopes=["lists:read"])[1]
    rival_view = records(fetch_pages(stopncii_client(live_server, rival_key)))
    assert [f.source for f in rival_view[key_of(not_relevant)].CSPFeedbacks] == [rival.name]
    assert rival_view[key_of(blocked)].CSPFeedbacks == []


@pytest.mark.parametrize(
    ("first", "tags", "then", "outcomes"),
    [
        ("None", set(), "Blocked", ["pending_review", "removed"]),
        ("QualityUnknown", set(), "Unknown", ["pending_review", "pending_review"]),
        ("Blocked", {"restricted"}, "None", ["restricted", "restricted"]),
        ("NotBlocked", set(), "Blocked", ["no_action", "removed"]),
        ("Blocked", set(), "NotBlocked", ["removed", "no_action"]),
    ],
)
def test_feedback_values_map_to_outcomes_and_later_feedback_updates_the_same_report(
    api, partner, default_list, staff_user, first, tags, then, outcomes
):
    listed = image()
    accepted_case(staff_user, [listed])
    seen = []
    for value, value_tags in ((first, tags), (then, set())):
        api.submit_feedback(PDQ, listed["pdq"], StopNCIICSPFeedbackValue(value), value_tags)
        seen.append(MatchReport.objects.get(partner=partner).action)
    assert seen == outcomes


def test_a_feedback_batch_with_one_unknown_hash_stores_nothing(
    api, partner, default_list, staff_user
):
    listed = image()
    accepted_case(staff_user, [listed])
    with pytest.raises(requests.HTTPError) as raised:
        api.submit_feedbacks(
            {
                key_of(listed): StopNCIICSPFeedback(StopNCIICSPFeedbackValue.Blocked),
                (PDQ, "ab" * 32): StopNCIICSPFeedback(StopNCIICSPFeedbackValue.Blocked),
            }
        )
    response = raised.value.response
    assert response.status_code == 400
    assert list(response.json()["fields"]) == ["hashFeedbacks.1.hashValue"]
    assert not MatchReport.objects.exists()


@pytest.mark.parametrize(
    ("value", "field"),
    [("Withdrawn", "hashFeedbacks.0.feedbackValue"), ("Deleted", "hashFeedbacks.0.feedbackValue")],
)
def test_hash_statuses_are_refused_as_feedback(api, default_list, staff_user, value, field):
    listed = image()
    accepted_case(staff_user, [listed])
    with pytest.raises(requests.HTTPError) as raised:
        api.submit_feedback(PDQ, listed["pdq"], StopNCIICSPFeedbackValue(value))
    assert raised.value.response.status_code == 400
    assert list(raised.value.response.json()["fields"]) == [field]
    assert not MatchReport.objects.exists()


def keys_for(live_server, partner, scenario):
    """An API client whose keys are wrong in the way ``scenario`` says."""
    both = api_key_create(partner=partner, name="both", scopes=["lists:read", "matches:write"])[1]
    if scenario == "unknown key":
        return stopncii_client(live_server, "tid_unknownprefx_" + "x" * 40)
    if scenario == "no subscription key":
        return stopncii_client(live_server, both, subscription_key="")
    if scenario == "keys of two partners":
        other = partner_create(name="Other", readable_lists=list(partner.readable_lists.all()))
        other_key = api_key_create(partner=other, name="o", scopes=["lists:read"])[1]
        return stopncii_client(live_server, both, subscription_key=other_key)
    if scenario == "revoked key":
        api_key_revoke(key=partner.api_keys.get(name="both"))
        return stopncii_client(live_server, both)
    if scenario == "suspended partner":
        Partner.objects.filter(pk=partner.pk).update(status=Partner.Status.SUSPENDED)
        return stopncii_client(live_server, both)
    scope = {"read-only key": "lists:read", "write-only key": "matches:write"}[scenario]
    return stopncii_client(
        live_server, api_key_create(partner=partner, name="s", scopes=[scope])[1]
    )


@pytest.mark.parametrize(
    ("scenario", "fetch_status", "feedback_status"),
    [
        ("unknown key", 401, 401),
        ("no subscription key", 401, 401),
        ("keys of two partners", 401, 401),
        ("revoked key", 401, 401),
        ("suspended partner", 403, 403),
        ("read-only key", None, 403),
        ("write-only key", 403, None),
    ],
)
def test_the_client_raises_on_keys_that_are_wrong(
    live_server, partner, default_list, staff_user, scenario, fetch_status, feedback_status
):
    listed = image()
    accepted_case(staff_user, [listed])
    api = keys_for(live_server, partner, scenario)
    for call, status in (
        (lambda: api.fetch_hashes(), fetch_status),
        (
            lambda: api.submit_feedback(PDQ, listed["pdq"], StopNCIICSPFeedbackValue.Blocked),
            feedback_status,
        ),
    ):
        if status is None:
            call()  # the scope this key has works
            continue
        with pytest.raises(requests.HTTPError) as raised:
            call()
        assert raised.value.response.status_code == status
        assert (
            raised.value.response.json()["error"]
            == {401: "not_authenticated", 403: "forbidden"}[status]
        )
    assert MatchReport.objects.count() == (1 if feedback_status is None else 0)


def test_page_tokens_cannot_be_altered_or_used_by_another_partner(
    api, live_server, default_list, staff_user
):
    for _ in range(3):
        accepted_case(staff_user, [image()])
    token = api.fetch_hashes(page_size=1).nextPageToken
    other = partner_create(name="Other", readable_lists=[default_list])
    other_api = stopncii_client(
        live_server, api_key_create(partner=other, name="o", scopes=["lists:read"])[1]
    )
    for client, bad in ((api, token[:-3] + "abc"), (api, "not-a-token"), (other_api, token)):
        with pytest.raises(requests.HTTPError) as raised:
            client.fetch_hashes(page_size=1, next_page=bad)
        assert raised.value.response.status_code == 400
        assert list(raised.value.response.json()["fields"]) == ["nextPageToken"]


def test_a_start_in_the_last_second_time_can_hold_is_an_empty_page(api, default_list, staff_user):
    """Found by schemathesis: the next second after 9999-12-31T23:59:59 does not exist."""
    accepted_case(staff_user, [image()])
    page = api.fetch_hashes(start_timestamp=253_402_300_799)
    assert page.count == 0 and page.hashRecords == [] and not page.hasMoreRecords


@pytest.mark.parametrize("size", [0, 10_001])
def test_page_sizes_out_of_bounds_are_a_400_naming_the_field(api, default_list, size):
    with pytest.raises(requests.HTTPError) as raised:
        api.fetch_hashes(page_size=size)
    assert raised.value.response.status_code == 400
    assert list(raised.value.response.json()["fields"]) == ["pageSize"]


def test_only_granted_published_lists_are_served_and_a_shared_hash_is_one_record(
    api, partner, default_list, staff_user
):
    regional = HashList.objects.create(slug="regional", name="Regional", published=True)
    hidden = HashList.objects.create(slug="hidden", name="Not granted", published=True)
    draft = HashList.objects.create(slug="draft", name="Granted, unpublished", published=False)
    partner.readable_lists.add(regional, draft)
    shared, own, secret, unpublished = image(), image(), image(), image()
    accepted_case(staff_user, [shared])
    regional_case, _pin = accepted_case(staff_user, [shared, own], hash_list=regional)
    accepted_case(staff_user, [secret], hash_list=hidden)
    accepted_case(staff_user, [unpublished], hash_list=draft)

    got = records(fetch_pages(api, size=1))
    assert set(got) == {key_of(shared), key_of(own)}
    assert got[key_of(shared)].caseNumbers == {
        entry_id(shared, default_list): ACTIVE,
        entry_id(shared, regional): ACTIVE,
    }

    # Withdrawn from one list, the hash stays Active: the other list still has it.
    checkpoint = fetch_pages(api)[-1].nextSetTimestamp
    case_withdraw(case=regional_case)
    list_changes_sequence()
    pages = fetch_pages(api, start=checkpoint, size=1)
    delivered = [(r.signalType, r.hashValue) for page in pages for r in page.hashRecords]
    assert sorted(delivered, key=str) == sorted(map(key_of, [shared, own]), key=str)  # once each
    got = records(pages)
    assert got[key_of(shared)].hashStatus == ACTIVE
    assert got[key_of(shared)].caseNumbers == {
        entry_id(shared, default_list): ACTIVE,
        entry_id(shared, regional): WITHDRAWN,
    }
    assert got[key_of(own)].hashStatus == WITHDRAWN


def test_a_fetch_from_the_start_leaves_out_hashes_withdrawn_before_it_began(
    api, default_list, staff_user
):
    """A client starting empty has nothing to delete; python-threatexchange's exchange layer
    would import a Withdrawn record as a live signal. A hash withdrawn while the fetch runs is
    sent, since an earlier page may have given it as Active."""
    gone, kept, going = image(), image(), image()
    gone_case, _pin = accepted_case(staff_user, [gone])
    accepted_case(staff_user, [kept])
    going_case, _pin = accepted_case(staff_user, [going])
    case_withdraw(case=gone_case)
    list_changes_sequence()

    first = api.fetch_hashes(page_size=1)
    assert [(r.signalType, r.hashValue) for r in first.hashRecords] == [key_of(kept)]
    case_withdraw(case=going_case)  # its record was not sent yet: it moves to the end
    list_changes_sequence()
    pages = [first, *fetch_pages_from(api, first.nextPageToken, size=1)]

    got = records(pages)
    assert set(got) == {key_of(kept), key_of(going)}
    assert got[key_of(going)].hashStatus == WITHDRAWN
    # An incremental fetch from before the withdrawal does send it.
    assert records(fetch_pages(api, start=first.nextSetTimestamp))[key_of(gone)].hashStatus == (
        WITHDRAWN
    )


def fetch_pages_from(api, token, *, size):
    pages = []
    while token:
        page = api.fetch_hashes(page_size=size, next_page=token)
        pages.append(page)
        token = page.nextPageToken if page.hasMoreRecords else ""
    return pages


def test_the_threatexchange_cli_fetches_and_matches_our_list(
    live_server, key, default_list, staff_user, tmp_path
):
    """``threatexchange fetch`` through its StopNCII exchange, configured with our base URL,
    then ``threatexchange match``: the way Hasher-Matcher-Actioner consumes the API. Several
    hashes, as its PDQ index cannot be saved and loaded holding one."""
    items = [image() for _ in range(4)] + [video()]
    for item in items:
        accepted_case(staff_user, [item])
    withdrawn = image()
    case_withdraw(case=accepted_case(staff_user, [withdrawn])[0])
    list_changes_sequence()
    env = {
        **os.environ,
        "HOME": str(tmp_path),
        "TX_STOPNCII_KEYS": f"{key},{key},{live_server.url}{BASE}",
    }
    cli = [str(Path(sys.executable).with_name("threatexchange"))]

    def run(*args):
        done = subprocess.run(
            [*cli, *args], env=env, capture_output=True, text=True, timeout=120, check=False
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    run("config", "collab", "edit", "stop_ncii", "--create", "tid")
    run("fetch")
    signals = run("dataset", "-P", "-S")
    for item in items:
        assert (item["pdq"] if item["media_type"] == "image" else item["md5"]) in signals
    assert withdrawn["pdq"] not in signals  # not imported as a live signal on the first fetch
    matched = run("match", "--hashes", "photo", "--", items[0]["pdq"])
    assert "tid" in matched and "pdq" in matched

    # Fetching again from its checkpoint brings what was accepted since.
    next_second()
    newer = image()
    accepted_case(staff_user, [newer])
    run("fetch")
    assert newer["pdq"] in run("dataset", "-P", "-S")
