"""tidkit.index.HammingIndex answers exactly what brute force answers."""

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers import flip
from tidkit import HashFormatError
from tidkit.formats import hamming_distance
from tidkit.index import HammingIndex


def brute_force(pairs, query, radius):
    hits = [(i, hamming_distance(h, query)) for i, h in pairs.items()]
    return sorted(((i, d) for i, d in hits if d <= radius), key=lambda x: (x[1], x[0]))


def family_hashes(seed, bits, families, members):
    """Clustered hashes: families of near-duplicates around random centres, as real lists are."""
    rng = random.Random(seed)
    width = bits // 4
    out = []
    for _ in range(families):
        centre = f"{rng.getrandbits(bits):0{width}x}"
        out += [flip(centre, rng.randint(0, bits // 8), rng) for _ in range(members)]
    return out, rng


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10**6), bits=st.sampled_from([64, 256]))
def test_radius_queries_equal_brute_force_on_clustered_sets(seed, bits):
    hashes, rng = family_hashes(seed, bits, families=20, members=15)
    pairs = dict(enumerate(hashes))
    index = HammingIndex(bits=bits)
    index.add(list(pairs), list(pairs.values()))
    radius = 31 if bits == 256 else 8
    for _ in range(10):
        query = flip(rng.choice(hashes), rng.randint(0, radius + 4), rng)
        assert index.query(query, radius) == brute_force(pairs, query, radius)


def test_add_remove_and_replace_without_rebuild():
    hashes, rng = family_hashes(1, 256, families=10, members=30)
    pairs = dict(enumerate(hashes))
    index = HammingIndex()
    index.add(list(pairs), hashes)
    removed = rng.sample(list(pairs), 200)
    index.remove(removed)
    for i in removed:
        del pairs[i]
    index.add([5000, 0], [hashes[3], hashes[4]])  # new id, and a replacement of id 0
    pairs[5000], pairs[0] = hashes[3], hashes[4]
    assert len(index) == len(pairs) and 0 in index and removed[0] not in index
    for query in rng.sample(hashes, 20):
        assert index.query(query, 31) == brute_force(pairs, query, 31)


def test_save_and_load_round_trip(tmp_path):
    hashes, rng = family_hashes(2, 64, families=5, members=10)
    index = HammingIndex(bits=64)
    index.add(list(range(len(hashes))), hashes)
    index.remove([0, 1, 2])
    index.save(tmp_path / "phash.npz")
    loaded = HammingIndex.load(tmp_path / "phash.npz")
    assert loaded.bits == 64 and len(loaded) == len(index)
    for query in hashes:
        assert loaded.query(query, 8) == index.query(query, 8)


@pytest.mark.parametrize("bad", ["ab" * 31, "zz" * 32, "ab " * 21 + "a", None])
def test_malformed_hashes_are_refused(bad):
    index = HammingIndex()
    with pytest.raises(HashFormatError):
        index.add([1], [bad])
    with pytest.raises(HashFormatError):
        index.query(bad, 31)


def test_empty_index_answers_nothing():
    assert HammingIndex().query("0" * 64, 31) == []
