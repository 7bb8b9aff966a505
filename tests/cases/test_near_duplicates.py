"""Near-duplicates across cases: exact (equal to brute force), and misuse shows up as a flag."""

import random

import pytest

from cases import services
from cases.models import Case, MediaItem
from cases.near_duplicates import case_near_duplicates
from hashlists.models import HashEntry
from tests.helpers import flip
from tidkit import formats


def image(rng, pdq=None, phash=None, md5=None):
    return {
        "media_type": "image",
        "md5": md5 or f"{rng.getrandbits(128):032x}",
        "pdq": pdq or f"{rng.getrandbits(256):064x}",
        "pdq_quality": 90,
        "phash": phash or f"{rng.getrandbits(64):016x}",
    }


def report(items):
    return services.case_create(reporter="self", under_18_when_made=True, items=items)[0]


def brute_force_cases(case):
    """Other cases with a file at MD5 0, PDQ <= 31 or pHash <= 8 from one of this case's."""
    mine = list(case.items.filter(media_type="image"))
    hits = set()
    for other in MediaItem.objects.exclude(case=case).filter(media_type="image"):
        for item in mine:
            if (
                other.md5 == item.md5
                or formats.hamming_distance(other.pdq, item.pdq) <= 31
                or formats.hamming_distance(other.phash, item.phash) <= 8
            ):
                hits.add(other.case_id)
    return hits


def test_case_hits_equal_brute_force(db, default_list):
    rng = random.Random(7)
    bases = [image(rng) for _ in range(6)]
    cases = []
    for n in range(25):
        base = rng.choice(bases)
        items = [
            image(
                rng,
                pdq=flip(base["pdq"], rng.randint(0, 45), rng),
                phash=flip(base["phash"], rng.randint(0, 12), rng),
            ),
            image(rng),
        ]
        if n % 7 == 0:
            items.append(image(rng, md5=base["md5"]))
        cases.append(report(items))
    for case in cases:
        found = {hit.case.pk for hit in case_near_duplicates(case=case).cases}
        assert found == brute_force_cases(case), case.case_number


def test_entries_within_threshold_are_listed_with_distances(
    db, default_list, image_item, staff_user
):
    listed = report([image_item])
    services.case_accept(case=listed, staff=staff_user)
    rng = random.Random(3)
    near = report([image(rng, pdq=flip(image_item["pdq"], 20, rng), phash=image_item["phash"])])
    found = case_near_duplicates(case=near)
    kinds = {(h.entry.hash_type, h.distance) for h in found.entries}
    assert ("pdq", 20) in kinds and ("phash", 0) in kinds
    assert [h.case for h in found.cases] == [listed]
    pdq_entry = HashEntry.objects.get(hash_type="pdq")
    far = report([image(rng, pdq=flip(image_item["pdq"], 40, rng))])
    assert pdq_entry not in [h.entry for h in case_near_duplicates(case=far).entries]


def test_videos_match_under_the_vpdq_rule(db, default_list):
    rng = random.Random(5)
    frames = [{"t": t, "pdq": f"{rng.getrandbits(256):064x}", "q": 90} for t in range(10)]
    original = report([{"media_type": "video", "md5": "1" * 32, "vpdq": frames}])
    reencoded = [{**f, "pdq": flip(f["pdq"], 10, rng)} for f in frames[:9]]
    copy = report([{"media_type": "video", "md5": "2" * 32, "vpdq": reencoded}])
    unrelated = [{**f, "pdq": f"{rng.getrandbits(256):064x}"} for f in frames]
    other = report([{"media_type": "video", "md5": "3" * 32, "vpdq": unrelated}])
    assert [h.case for h in case_near_duplicates(case=copy).cases] == [original]
    assert case_near_duplicates(case=other).cases == []


@pytest.mark.django_db(transaction=True)
def test_new_reports_are_checked_on_commit_and_misuse_is_flagged(default_list, image_item):
    rng = random.Random(11)
    victims = [report([image(rng)]) for _ in range(6)]
    # Someone reports a hash close to each of six unrelated cases at once.
    probes = [image(rng, pdq=flip(v.items.get().pdq, 5, rng)) for v in victims]
    suspicious = report(probes)  # the refresh task runs eagerly after the commit
    suspicious.refresh_from_db()
    assert suspicious.near_duplicate_cases == 6 and suspicious.misuse_suspected
    first = Case.objects.get(pk=victims[0].pk)
    assert first.near_duplicate_cases == 1 and not first.misuse_suspected
    services.case_near_duplicates_refresh(case=suspicious)  # idempotent
    suspicious.refresh_from_db()
    assert suspicious.near_duplicate_cases == 6
