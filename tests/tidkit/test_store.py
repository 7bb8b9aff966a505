"""tidkit.store.LocalList: any sequence of adds, removes, saves and loads leaves exactly the
entries a plain dictionary would hold, and matching finds what brute force finds."""

import random
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers import flip
from tidkit import formats
from tidkit.store import Entry, ListDataError, LocalList

TYPES = ["md5", "pdq", "phash", "vpdq"]


def make_entry(rng: random.Random, hash_type: str) -> Entry:
    width = {"md5": 32, "pdq": 64, "phash": 16, "vpdq": 64}[hash_type]
    frames = None
    if hash_type == "vpdq":
        frames = tuple({"t": t, "pdq": f"{rng.getrandbits(256):064x}", "q": 90} for t in range(3))
    return Entry(
        str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        hash_type,
        # pHash values with 16 to 48 bits set: publishable, so they take part in matching.
        f"{rng.getrandbits(32):08x}f0f00f0f" if hash_type == "phash" else
        f"{rng.getrandbits(width * 4):0{width}x}",
        "video" if hash_type == "vpdq" else "image",
        90 if hash_type in ("pdq", "vpdq") else None,
        frames,
    )  # fmt: skip


def brute_force(model: dict[str, Entry], hashes: dict) -> set[tuple[str, str, int]]:
    found = set()
    for entry in model.values():
        if entry.hash_type == "md5" and entry.value == hashes["md5"]:
            found.add((entry.id, "md5", 0))
        elif entry.hash_type in ("pdq", "phash"):
            distance = formats.hamming_distance(entry.value, hashes[entry.hash_type])
            if distance <= {"pdq": 31, "phash": 8}[entry.hash_type]:
                found.add((entry.id, entry.hash_type, distance))
    return found


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10**6), steps=st.integers(1, 60))
def test_any_history_equals_a_dictionary_of_entries(seed, steps, tmp_path_factory):
    rng = random.Random(seed)
    local = LocalList.from_entries(
        [make_entry(rng, rng.choice(TYPES)) for _ in range(rng.randint(0, 20))]
    )
    model = {e.id: e for e in local.entries()}
    numbers = {i: local.number_of(i) for i in model}
    for _ in range(steps):
        action = rng.random()
        if action < 0.45:
            entry = make_entry(rng, rng.choice(TYPES))
            numbers[entry.id] = local.add(entry)
            model[entry.id] = entry
        elif action < 0.6 and model:
            entry = model[rng.choice(sorted(model))]
            assert local.add(entry) == numbers[entry.id]  # a repeat keeps its number
        elif action < 0.85 and model:
            gone = rng.choice(sorted(model))
            assert local.remove(gone)
            del model[gone]
        elif action < 0.9:
            assert not local.remove(str(uuid.UUID(int=rng.getrandbits(128), version=4)))
        else:
            directory = tmp_path_factory.mktemp("list")
            local.save(directory)
            local = LocalList.load(directory, next_number=local.next_number)
        assert len(local) == len(model)

    assert {e.id: e for e in local.entries()} == model
    assert all(local.get(i) == e and i in local for i, e in model.items())
    counts = {t: sum(e.hash_type == t for e in model.values()) for t in TYPES}
    assert local.counts() == {**counts, "total": len(model)}
    for entry in list(model.values())[:10]:
        if entry.hash_type == "vpdq":
            video = {"media_type": "video", "md5": "0" * 32, "vpdq": list(entry.frames)}
            assert {(m.entry_id, m.hash_type) for m in local.match(video)} == {(entry.id, "vpdq")}
            continue
        probe = make_entry(rng, "md5")
        hashes = {
            "media_type": "image",
            "md5": entry.value if entry.hash_type == "md5" else probe.value,
            "pdq": flip(entry.value, 20, rng) if entry.hash_type == "pdq" else "0" * 64,
            "pdq_quality": 90,
            "phash": flip(entry.value, 5, rng) if entry.hash_type == "phash" else "00ff" * 4,
        }
        found = {(m.entry_id, m.hash_type, m.distance) for m in local.match(hashes)}
        assert found == brute_force(model, hashes)


def test_a_snapshot_listing_an_entry_twice_is_refused():
    entry = make_entry(random.Random(1), "pdq")
    with pytest.raises(ListDataError, match="more than once"):
        LocalList.from_entries([entry, entry])


def test_stricter_thresholds_only(tmp_path):
    rng = random.Random(4)
    entry = make_entry(rng, "pdq")
    local = LocalList.from_entries([entry])
    near = {"media_type": "image", "md5": "0" * 32, "pdq": flip(entry.value, 20, rng),
            "pdq_quality": 90, "phash": "00ff00ff00ff00ff"}  # fmt: skip

    assert [m.distance for m in local.match(near)] == [20]
    assert local.match(near, pdq_distance=10) == []
    with pytest.raises(ValueError, match="pdq_distance is 0 to 31"):
        local.match(near, pdq_distance=40)
    assert local.match({**near, "pdq_quality": 30}) == []  # a featureless query: no near match


def test_a_memory_cap_packs_the_pdq_index_and_is_kept_or_changed_on_load(tmp_path):
    """A list capped at twice its PDQ hashes' bytes matches exactly as an uncapped one; loading
    it with the same cap maps its index as saved, with another cap builds it again."""
    rng = random.Random(11)
    entries = [make_entry(rng, "pdq") for _ in range(70_000)]
    entries += [make_entry(rng, t) for t in ("md5", "phash", "vpdq") for _ in range(20)]
    capped = LocalList.from_entries(entries, memory=2)
    plain = LocalList.from_entries(entries)
    pdq_index = capped._indexes["pdq"]
    assert capped.memory == 2 and plain.memory is None
    assert [segment.kind for segment in pdq_index._segments] == ["packed"]
    assert pdq_index.nbytes < 2 * 70_000 * 32 < plain._indexes["pdq"].nbytes
    assert capped._indexes["phash"].memory is None  # (capped, a pHash index would scan)

    capped.save(tmp_path)
    same = LocalList.load(tmp_path, memory=2)
    assert same._indexes["pdq"]._segments[0].kind == "packed"
    assert same._indexes["pdq"]._segments[0].quick.base is not None  # mapped from the file
    uncapped = LocalList.load(tmp_path)
    assert uncapped.memory is None and uncapped._indexes["pdq"]._segments[0].kind == "plain"

    for entry in entries[:70_000:7_000] + entries[70_000:70_040:10]:  # PDQ, MD5 and pHash
        near = {
            "media_type": "image",
            "md5": entry.value if entry.hash_type == "md5" else "0" * 32,
            "pdq": flip(entry.value, 25, rng) if entry.hash_type == "pdq" else "0" * 64,
            "pdq_quality": 90,
            "phash": flip(entry.value, 6, rng) if entry.hash_type == "phash" else "00ff" * 4,
        }
        expected = plain.match(near)
        assert expected and all(local.match(near) == expected for local in (same, uncapped))
