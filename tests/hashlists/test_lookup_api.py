"""Hosted lookup, POST /api/v1/lookup: exact answers, kept current from the feed, scoped."""

import random
import threading
import time

import pytest
from django.db import connection
from django.test import Client

from cases.services import case_withdraw
from hashlists import lookup
from hashlists.models import HashEntry, HashList, ListChange
from hashlists.services import hash_entry_remove, list_changes_sequence
from partners.services import api_key_create, partner_create
from tests.helpers import accepted_case, flip
from tidkit import formats

URL = "/api/v1/lookup"


@pytest.fixture(autouse=True)
def _refresh_every_request(settings):
    settings.TID_LOOKUP_REFRESH_SECONDS = 0


def client_for(partner, scopes=("lists:read",)):
    raw = api_key_create(partner=partner, name="lookup", scopes=list(scopes))[1]
    return Client(HTTP_AUTHORIZATION=f"Bearer {raw}")


@pytest.fixture
def api(partner):
    return client_for(partner)


def post(api, hashes, **body):
    return api.post(URL, {"hashes": hashes, **body}, content_type="application/json")


def found(api, hashes, **body):
    response = post(api, hashes, **body)
    assert response.status_code == 200, response.content
    return response.json()


class Hashes:
    """Random valid hashes from one seeded generator."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def pdq(self) -> str:
        return f"{self.rng.getrandbits(256):064x}"

    def phash(self) -> str:
        while True:  # publishable: 8 to 56 bits set, with room for 9 flipped bits either way
            value = f"{self.rng.getrandbits(64):016x}"
            if 17 <= formats.bit_count(value) <= 47:
                return value

    def md5(self) -> str:
        return f"{self.rng.getrandbits(128):032x}"

    def image(self, pdq: str | None = None, phash: str | None = None) -> dict:
        return {
            "media_type": "image",
            "md5": self.md5(),
            "pdq": pdq or self.pdq(),
            "pdq_quality": 90,
            "phash": phash or self.phash(),
        }


def entry(hash_type, value):
    return HashEntry.objects.get(hash_type=hash_type, value=value)


def ids(result):
    return [(m["id"], m["distance"]) for m in result["matches"]]


# ------------------------------------------------------------------------------------------------
# Exact answers
# ------------------------------------------------------------------------------------------------


def expected(hash_type, value, max_distance, hash_list):
    """Brute force over the list's active entries: what the answer must be."""
    hits = []
    for e in HashEntry.objects.filter(hash_list=hash_list, status="active", hash_type=hash_type):
        distance = 0 if e.value == value else formats.hamming_distance(value, e.value)
        if distance <= max_distance:
            hits.append((str(e.public_id), distance))
    return sorted(hits, key=lambda hit: (hit[1], hit[0]))


def test_answers_equal_brute_force_at_the_threshold_edges(api, default_list, staff_user):
    h = Hashes(7)
    pdq_queries = [h.pdq() for _ in range(5)]
    phash_queries = [h.phash() for _ in range(5)]
    items = []
    for n, (pdq, phash) in enumerate(zip(pdq_queries, phash_queries, strict=True)):
        for bits, phash_bits in ((0, 0), (5, 3), (31, 8), (32, 9), (20 + n, 7)):
            items.append(h.image(flip(pdq, bits, n * 10 + bits), flip(phash, phash_bits, n)))
    items += [h.image() for _ in range(40)]  # unrelated
    accepted_case(staff_user, items[:15] + items[30:])
    second, _pin = accepted_case(
        staff_user, items[15:30]
    )  # near-duplicates of the last two queries
    # Taken off the list two ways: a withdrawn case, and a staff removal.
    case_withdraw(case=second)
    hash_entry_remove(entry=entry("pdq", items[1]["pdq"]), staff=staff_user, reason="staff")
    list_changes_sequence()

    queries = [
        {"hash_type": "pdq", "value": v, "ref": f"pdq-{i}"} for i, v in enumerate(pdq_queries)
    ]
    queries += [{"hash_type": "pdq", "value": v, "max_distance": 20} for v in pdq_queries]
    queries += [{"hash_type": "phash", "value": v} for v in phash_queries]
    queries += [{"hash_type": "phash", "value": v, "max_distance": 5} for v in phash_queries]
    queries += [
        {"hash_type": "md5", "value": items[0]["md5"]},  # listed
        {"hash_type": "md5", "value": items[15]["md5"]},  # its case was withdrawn
        {"hash_type": "md5", "value": h.md5()},  # never listed
        {"hash_type": "pdq", "value": h.pdq()},  # nothing near
    ]
    answer = found(api, queries)

    assert answer["lists"] == [
        {"list": "take-it-down", "seq": ListChange.objects.filter(seq__isnull=False).count()}
    ]
    assert len(answer["results"]) == len(queries)
    for query, result in zip(queries, answer["results"], strict=True):
        limit = query.get("max_distance", lookup.MATCH_DISTANCES[query["hash_type"]])
        assert ids(result) == expected(query["hash_type"], query["value"], limit, default_list)
        assert result["ref"] == query.get("ref")
    # The edges, spelled out: 31 and 8 match, 32 and 9 do not.
    pdq_distances = [d for _id, d in ids(answer["results"][0])]
    assert 31 in pdq_distances and 32 not in pdq_distances
    assert [d for _id, d in ids(answer["results"][10])][-1] == 8
    match = answer["results"][0]["matches"][0]
    assert match == {
        "id": str(entry("pdq", pdq_queries[0]).public_id),
        "list": "take-it-down",
        "hash_type": "pdq",
        "distance": 0,
        "quality": 90,
        "media_type": "image",
    }
    assert ids(answer["results"][20]) == [(str(entry("md5", items[0]["md5"]).public_id), 0)]
    assert [ids(answer["results"][i]) for i in (21, 22, 23)] == [[], [], []]


def video(h, count, *, low=()):
    """A video's frames: ``count`` distinct usable frames, plus low-quality ones at ``low``."""
    frames = [{"t": t, "pdq": h.pdq(), "q": 20 if t in low else 90} for t in range(count)]
    return frames


def query_frames(listed, matching, *, extra=0, h, distance=5, quality=90):
    """Frames of a video that matches the listed frames at ``matching`` positions (each at
    ``distance`` bits), with ``extra`` unrelated frames."""
    frames = [flip(listed[i]["pdq"], distance, i) for i in matching]
    frames += [h.pdq() for _ in range(extra)]
    return [{"t": t, "pdq": pdq, "q": quality} for t, pdq in enumerate(frames)]


def test_videos_match_when_80_percent_of_the_listed_frames_are_found(api, staff_user, default_list):
    h = Hashes(11)
    listed = video(h, 12, low=(3, 7))  # 10 usable frames; 2 featureless ones never count
    accepted_case(staff_user, [{"media_type": "video", "md5": h.md5(), "vpdq": listed}])
    usable = [f for f in listed if f["q"] >= 50]
    listed_entry = HashEntry.objects.get(hash_type="vpdq")
    assert len(listed_entry.frames) == 10

    eight = query_frames(usable, range(8), extra=2, h=h)
    seven = query_frames(usable, range(7), h=h)
    # The 8th listed frame exactly, but featureless in the query: ignored, still 7 of 10.
    seven_and_featureless = [*seven, {"t": 7, "pdq": usable[7]["pdq"], "q": 30}]
    seven_and_good = [*seven, {"t": 7, "pdq": usable[7]["pdq"], "q": 60}]
    too_far = query_frames(usable, range(7), h=h) + [
        {"t": 7, "pdq": flip(usable[7]["pdq"], 32, 99), "q": 90}
    ]
    queries = [
        {"hash_type": "vpdq", "frames": eight, "ref": "eight"},
        {"hash_type": "vpdq", "frames": seven},
        {"hash_type": "vpdq", "frames": seven_and_featureless},
        {"hash_type": "vpdq", "frames": seven_and_good},
        {"hash_type": "vpdq", "frames": too_far},
        {"hash_type": "vpdq", "frames": eight, "max_distance": 4},  # frames are 5 bits off
        {"hash_type": "vpdq", "frames": listed},
    ]
    results = found(api, queries)["results"]

    matched = [bool(r["matches"]) for r in results]
    assert matched == [True, False, False, True, False, False, True]
    assert results[0]["ref"] == "eight"
    assert results[0]["matches"] == [
        {
            "id": str(listed_entry.public_id),
            "list": "take-it-down",
            "hash_type": "vpdq",
            "distance": 5,  # each matched frame is 5 bits from its copy
            "quality": 90,
            "media_type": "video",
            "query_match_percent": 80.0,  # 8 of its 10 frames
            "listed_match_percent": 80.0,  # 8 of the listed 10
        }
    ]
    # The percentages are formats' own, whatever the query; the distance is the farthest
    # matched listed frame from its nearest query frame.
    for query, result in zip(queries, results, strict=True):
        if result["matches"]:
            query_pct, listed_pct = formats.vpdq_match_percentages(
                query["frames"], listed_entry.frames
            )
            nearest = [
                min(
                    formats.hamming_distance(f["pdq"], q["pdq"])
                    for q in query["frames"]
                    if q["q"] >= 50
                )
                for f in listed_entry.frames
            ]
            assert result["matches"][0]["query_match_percent"] == round(query_pct, 2)
            assert result["matches"][0]["listed_match_percent"] == round(listed_pct, 2)
            assert result["matches"][0]["distance"] == max(d for d in nearest if d <= 31)
    assert results[3]["matches"][0]["query_match_percent"] == 100.0


# ------------------------------------------------------------------------------------------------
# Kept current from the feed
# ------------------------------------------------------------------------------------------------


def test_removed_entries_are_never_returned(api, default_list, staff_user, settings):
    h = Hashes(3)
    image = h.image()
    accepted_case(staff_user, [image])
    queries = [
        {"hash_type": "pdq", "value": image["pdq"]},
        {"hash_type": "phash", "value": image["phash"]},
        {"hash_type": "md5", "value": image["md5"]},
    ]
    assert all(r["matches"] for r in found(api, queries)["results"])
    # However long a worker waits before catching up with the feed, a removal counts at once.
    settings.TID_LOOKUP_REFRESH_SECONDS = 3600
    hash_entry_remove(entry=entry("pdq", image["pdq"]), staff=staff_user, reason="false_positive")
    assert [bool(r["matches"]) for r in found(api, queries)["results"]] == [False, True, True]
    settings.TID_LOOKUP_REFRESH_SECONDS = 0
    list_changes_sequence()
    assert [bool(r["matches"]) for r in found(api, queries)["results"]] == [False, True, True]
    index = lookup.list_index(hash_list_id=default_list.pk)
    assert entry("pdq", image["pdq"]).pk not in index.pdq  # the feed's removal was applied


def test_newly_accepted_cases_match_within_a_second_without_a_restart(
    api, default_list, staff_user, settings
):
    h = Hashes(4)
    accepted_case(staff_user, [h.image()])
    fresh = h.image()
    query = [{"hash_type": "pdq", "value": flip(fresh["pdq"], 12)}]
    assert found(api, query)["results"][0]["matches"] == []
    settings.TID_LOOKUP_REFRESH_SECONDS = 0.3
    index = lookup.list_index(hash_list_id=default_list.pk)
    before = index.seq

    accepted_case(staff_user, [fresh])  # accepted and sequenced, as the sequencer task does
    started = time.monotonic()
    while not found(api, query)["results"][0]["matches"]:
        assert time.monotonic() - started < 2, "not matchable within 2 s of being sequenced"
        time.sleep(0.05)
    assert lookup.list_index(hash_list_id=default_list.pk) is index  # caught up, not reloaded
    assert index.seq == before + 3  # its md5, pdq and phash


@pytest.mark.parametrize("when", ["before", "after"])
def test_changes_made_while_a_list_loads_are_not_lost(db, default_list, staff_user, when):
    """Loading reads the feed's head, then the active entries, then catches up: an entry added
    or removed between any two of those steps ends up right."""
    h = Hashes(5)
    kept, doomed, added = h.image(), h.image(), h.image()
    accepted_case(staff_user, [kept, doomed])
    index = lookup.ListIndex(default_list.pk)
    read_active = lookup.ListIndex._load_active

    def concurrent_writes() -> None:
        accepted_case(staff_user, [added])
        hash_entry_remove(entry=entry("pdq", doomed["pdq"]), staff=staff_user, reason="staff")
        list_changes_sequence()

    def load_active(self) -> None:
        if when == "before":
            concurrent_writes()
        read_active(self)
        if when == "after":
            concurrent_writes()

    index._load_active = load_active.__get__(index)
    index.refresh(max_age=0)

    assert entry("pdq", kept["pdq"]).pk in index.pdq
    assert entry("pdq", added["pdq"]).pk in index.pdq
    assert entry("pdq", doomed["pdq"]).pk not in index.pdq
    assert index.seq == ListChange.objects.filter(seq__isnull=False).count()


@pytest.mark.django_db(transaction=True)
def test_threads_share_a_process_index_while_cases_are_accepted(default_list, staff_user, partner):
    """gunicorn's threads share their process's index: lookups and catch-ups on several threads
    at once, each with its own database connection, while cases are accepted one after another.
    None fails, and each answer is the list at one moment: the images matched are always the
    first ones accepted."""
    h = Hashes(12)
    images = [h.image() for _ in range(12)]
    queries = [lookup.LookupQuery(hash_type="pdq", max_distance=31, value=i["pdq"]) for i in images]
    answers: list[list[bool]] = []
    errors: list[Exception] = []
    stop = threading.Event()

    def reader() -> None:
        try:
            while not stop.is_set():
                answer = lookup.hashes_lookup_for_partner(partner=partner, queries=queries)
                answers.append([bool(matches) for matches in answer.matches])
        except Exception as exc:  # noqa: BLE001 (reported by the test below)
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for thread in threads:
        thread.start()
    for image in images:
        accepted_case(staff_user, [image])
    stop.set()
    for thread in threads:
        thread.join(30)

    assert errors == []
    assert len(answers) > len(images)
    assert all(seen == sorted(seen, reverse=True) for seen in answers)  # a prefix: True..False
    final = lookup.hashes_lookup_for_partner(partner=partner, queries=queries)
    assert all(final.matches)


def test_an_index_whose_feed_was_replaced_loads_the_list_again(db, default_list, staff_user):
    """A database restored from a backup: the change at the watermark is not the one applied."""
    h = Hashes(6)
    old = h.image()
    accepted_case(staff_user, [old])
    index = lookup.ListIndex(default_list.pk)
    index.refresh(max_age=0)
    assert entry("pdq", old["pdq"]).pk in index.pdq
    ListChange.objects.filter(hash_list=default_list).delete()
    HashEntry.objects.filter(hash_list=default_list).update(
        status="removed", removal_reason="staff"
    )
    new = h.image()
    accepted_case(staff_user, [new])  # seqs 1 to 3 again, on other rows

    index.refresh(max_age=0)
    assert entry("pdq", new["pdq"]).pk in index.pdq
    assert entry("pdq", old["pdq"]).pk not in index.pdq


# ------------------------------------------------------------------------------------------------
# Scope and validation
# ------------------------------------------------------------------------------------------------


def test_partners_only_match_lists_granted_to_them(api, default_list, staff_user):
    h = Hashes(8)
    secret = HashList.objects.create(slug="secret", name="Not granted", published=True)
    hidden = h.image()
    accepted_case(staff_user, [hidden], hash_list=secret)
    public = h.image()
    accepted_case(staff_user, [public])
    queries = [
        {"hash_type": "pdq", "value": hidden["pdq"]},
        {"hash_type": "md5", "value": hidden["md5"]},
        {"hash_type": "phash", "value": hidden["phash"]},
        {"hash_type": "pdq", "value": public["pdq"]},
    ]

    answer = found(api, queries)
    assert [bool(r["matches"]) for r in answer["results"]] == [False, False, False, True]
    assert answer["lists"] == [{"list": "take-it-down", "seq": 3}]
    not_granted = post(api, queries, lists=["secret"])
    missing = post(api, queries, lists=["nope"])
    assert not_granted.status_code == missing.status_code == 404
    assert not_granted.json() == missing.json()
    assert post(api, queries, lists=["take-it-down", "secret"]).status_code == 404
    # The list's entries do match for a partner granted it, and only within the lists asked.
    other = client_for(partner_create(name="Other", readable_lists=[secret, default_list]))
    answer = found(other, queries)
    assert [bool(r["matches"]) for r in answer["results"]] == [True, True, True, True]
    assert {m["list"] for r in answer["results"] for m in r["matches"]} == {
        "secret",
        "take-it-down",
    }
    narrowed = found(other, queries, lists=["secret"])
    assert [bool(r["matches"]) for r in narrowed["results"]] == [True, True, True, False]
    # An unpublished list is not searched, even when granted.
    HashList.objects.filter(pk=secret.pk).update(published=False)
    assert [bool(r["matches"]) for r in found(other, queries)["results"]] == [
        False,
        False,
        False,
        True,
    ]


def test_a_key_without_the_read_scope_gets_403(partner):
    response = post(
        client_for(partner, ["matches:write"]), [{"hash_type": "md5", "value": "0" * 32}]
    )
    assert response.status_code == 403
    assert "lists:read" in response.json()["detail"]


PDQ = "a" * 64
MD5 = "b" * 32
PHASH = "c" * 16


@pytest.mark.parametrize(
    ("hashes", "field"),
    [
        ([{"hash_type": "md5", "value": MD5}] * 1001, "hashes"),
        ([], "hashes"),
        (
            [{"hash_type": "pdq", "value": PDQ}, {"hash_type": "pdq", "value": "zz" * 32}],
            "hashes.1.value",
        ),  # noqa: E501
        ([{"hash_type": "pdq", "value": PDQ.upper()}], "hashes.0.value"),
        ([{"hash_type": "md5", "value": PDQ}], "hashes.0.value"),
        ([{"hash_type": "phash"}], "hashes.0.value"),
        ([{"hash_type": "sha1", "value": MD5}], "hashes.0.hash_type"),
        ([{"value": MD5}], "hashes.0.hash_type"),
        ([{"hash_type": "pdq", "value": PDQ, "max_distance": 32}], "hashes.0.max_distance"),
        ([{"hash_type": "phash", "value": PHASH, "max_distance": 9}], "hashes.0.max_distance"),
        ([{"hash_type": "md5", "value": MD5, "max_distance": 1}], "hashes.0.max_distance"),
        ([{"hash_type": "pdq", "value": PDQ, "max_distance": -1}], "hashes.0.max_distance"),
        ([{"hash_type": "vpdq", "value": PDQ}], "hashes.0.frames"),
        ([{"hash_type": "pdq", "value": PDQ, "frames": []}], "hashes.0.frames"),
        (
            [
                {
                    "hash_type": "vpdq",
                    "frames": [{"t": 1, "pdq": PDQ, "q": 90}, {"t": 0, "pdq": PDQ, "q": 90}],
                }
            ],  # noqa: E501
            "hashes.0.frames",
        ),
        ([{"hash_type": "vpdq", "frames": [{"t": 0, "pdq": PDQ, "q": 101}]}], "hashes.0.frames"),
        ([{"hash_type": "md5", "value": MD5, "ref": "x" * 201}], "hashes.0.ref"),
    ],
)
def test_an_invalid_hash_fails_the_whole_request_naming_it(api, default_list, hashes, field):
    response = post(api, hashes)
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "invalid" and "results" not in body
    assert field in body["fields"], body["fields"]


def test_asking_for_no_list_or_a_bad_slug_is_400(api, default_list):
    for lists, field in (([], "lists"), (["no spaces"], "lists.0"), ("take-it-down", "lists")):
        response = post(api, [{"hash_type": "md5", "value": MD5}], lists=lists)
        assert response.status_code == 400
        assert field in response.json()["fields"]


def test_too_many_video_frames_or_too_large_a_body_is_refused(api, default_list, settings):
    frames = [{"t": t, "pdq": PDQ, "q": 90} for t in range(lookup.MAX_FRAMES // 2 + 1)]
    response = post(api, [{"hash_type": "vpdq", "frames": frames}] * 2)
    assert response.status_code == 400
    assert "hashes" in response.json()["fields"]
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    response = post(api, [{"hash_type": "pdq", "value": PDQ}] * 20)
    assert response.status_code == 413 and response.json()["error"] == "too_large"
