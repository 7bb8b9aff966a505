"""tidkit.index.HammingIndex answers exactly what brute force answers, for every radius, on
uniform and clustered hash sets, through adds, removals, replacements, saves and loads, in
every table layout; damaged and outdated files are refused or rebuilt, never read blindly."""

import hashlib
import json
import random
import tempfile
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tidkit import HashFormatError, _hamming
from tidkit.index import HammingIndex, IndexFileError, _levels
from tidkit.store import Entry, LocalList

MAX_RADIUS = {256: 31, 64: 8}  # PDQ and pHash match distances
POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.int32)
SHAPES = ["uniform", "families", "hot chunks"]


def brute_force(model: dict[int, str], queries: list[str]):
    """A function radius -> per query, every (id, distance) within it, by the reference order.
    Distances are counted byte by byte from the hex, independently of the index's code."""
    ids = np.fromiter(model, dtype=np.int64, count=len(model))
    data = np.frombuffer(bytes.fromhex("".join(model.values())), dtype=np.uint8)
    data = data.reshape(len(ids), -1)
    distances = [POPCOUNT[data ^ np.frombuffer(bytes.fromhex(q), np.uint8)].sum(1) for q in queries]

    def within(radius: int) -> list[list[tuple[int, int]]]:
        out = []
        for d in distances:
            hits = np.flatnonzero(d <= radius)
            pairs = zip(ids[hits].tolist(), d[hits].tolist(), strict=True)
            out.append(sorted(pairs, key=lambda p: p[::-1]))
        return out

    return within


def hexes(rows: np.ndarray) -> list[str]:
    text, width = rows.tobytes().hex(), rows.shape[1] * 2
    return [text[i : i + width] for i in range(0, len(text), width)]


def flip_bits(rows: np.ndarray, counts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each row with ``counts[i]`` distinct random bits flipped."""
    bits = rows.shape[1] * 8
    order = rng.random((len(rows), bits)).argsort(axis=1)
    flips = np.zeros((len(rows), bits), dtype=bool)
    np.put_along_axis(flips, order, np.arange(bits) < counts[:, None], axis=1)
    return rows ^ np.packbits(flips, axis=1)


def hash_set(rng: np.random.Generator, bits: int, n: int, shape: str) -> np.ndarray:
    """``n`` hashes: uniform; near-duplicate families (a few bits apart, with exact duplicates)
    as real lists hold; or with hot chunk values (many hashes sharing long runs of bits, such as
    all-zero words, as blank and near-blank images give)."""
    width = bits // 8
    data = rng.integers(0, 256, (n, width), dtype=np.uint8)
    if shape == "families":
        centres = data[: max(1, n // 40)]
        data = centres[rng.integers(0, len(centres), n)]
        data = flip_bits(data, rng.integers(0, MAX_RADIUS[bits] + 8, n), rng)
        data[rng.random(n) < 0.05] = data[0]
    elif shape == "hot chunks":
        hot = rng.random(n) < 0.4
        data[hot, : width // 2] = 0
        data[rng.random(n) < 0.1, width // 2 :] = 0xFF
        data[rng.random(n) < 0.02] = 0
    return data


def spread_flips(rows: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """Each row with ``count`` bits flipped evenly across it (random phase): every chunk of any
    layout then differs a little, the hardest case for a multi-index to find."""
    bits = rows.shape[1] * 8
    flips = np.zeros((len(rows), bits), dtype=bool)
    for row, phase in enumerate(rng.integers(0, bits, len(rows))):
        flips[row, (phase + np.arange(count) * bits // count) % bits] = True
    return rows ^ np.packbits(flips, axis=1)


def queries_near(rng: np.random.Generator, data: np.ndarray, bits: int, count: int) -> list[str]:
    """Hashes at every distance around the radii from hashes of the set (half of them with the
    bits flipped evenly spread), plus unrelated ones, the all-zero hash and hot-chunk ones."""
    radius = MAX_RADIUS[bits]
    picked = data[rng.integers(0, len(data), count)]
    near = flip_bits(picked[::2], rng.integers(0, radius + 6, len(picked[::2])), rng)
    spread = [spread_flips(picked[1::2], d, rng) for d in (radius - 1, radius, radius + 1)]
    far = rng.integers(0, 256, (4, bits // 8), dtype=np.uint8)
    far[1] = 0
    far[2, : bits // 16] = 0
    return hexes(np.concatenate((near, *spread, far)))


def assert_matches_brute_force(index, model, queries, radii) -> None:
    expected = brute_force(model, queries)
    for radius in radii:
        assert index.query_many(queries, radius) == expected(radius), f"radius {radius}"
    assert len(index) == len(model)


@settings(max_examples=12, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    bits=st.sampled_from([64, 256]),
    shape=st.sampled_from(SHAPES),
    batches=st.lists(st.sampled_from([300, 2000, 4500, 9000]), min_size=1, max_size=4),
)
def test_every_radius_equals_brute_force(seed, bits, shape, batches):
    rng = np.random.default_rng(seed)
    data = hash_set(rng, bits, 20000 + sum(batches), shape)
    ids = rng.choice(10**12, len(data), replace=False)  # sparse, unordered ids
    index, model, at = HammingIndex(bits=bits), {}, 0
    for size in [20000, *batches]:  # a large first add, then batches: one to a few segments
        index.add(ids[at : at + size].tolist(), hexes(data[at : at + size]))
        model.update(zip(ids[at : at + size].tolist(), hexes(data[at : at + size]), strict=True))
        at += size
    assert any(segment.widths for segment in index._segments)  # the index is in use, not a scan
    queries = queries_near(rng, data, bits, 24)
    assert_matches_brute_force(index, model, queries, range(MAX_RADIUS[bits] + 1))


@settings(max_examples=10, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    bits=st.sampled_from([64, 256]),
    shape=st.sampled_from(SHAPES),
    steps=st.lists(
        st.sampled_from(["add", "add many", "remove", "remove many", "replace", "save and load"]),
        min_size=4,
        max_size=9,
    ),
)
def test_interleaved_changes_and_reloads_stay_exact(seed, bits, shape, steps):
    changes_and_reloads_stay_exact(seed, bits, shape, steps)


def changes_and_reloads_stay_exact(seed, bits, shape, steps, memory=None) -> None:
    """(With ``memory`` 2.5 and _PACKED_FROM patched, the first add makes a packed segment.)"""
    rng = np.random.default_rng(seed)
    pool = hash_set(rng, bits, 60000, shape)
    index, model, next_row = HammingIndex(bits=bits, memory=memory), {}, 0
    radius = MAX_RADIUS[bits]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "index.bin"
        for step in ["add all", *steps]:
            present = np.fromiter(model, dtype=np.int64, count=len(model))
            if step.startswith("add"):
                size = {"add all": 20000, "add many": 4500}.get(step) or int(rng.integers(1, 600))
                rows = pool[next_row : next_row + size]
                ids = list(range(next_row, next_row + len(rows)))
                next_row += len(rows)
                if len(present):  # re-add some removed or present ids too
                    ids[: len(ids) // 10] = rng.choice(next_row, len(ids) // 10).tolist()
                index.add(ids, hexes(rows))
                model.update(zip(ids, hexes(rows), strict=True))  # the last one wins, as in add
            elif step.startswith("remove"):
                share = 0.4 if step == "remove many" else 0.02
                gone = rng.choice(present, int(len(present) * share), replace=False).tolist()
                index.remove([*gone, -1, 10**15])  # unknown ids are ignored
                for i in gone:
                    del model[i]
            elif step == "replace":
                ids = rng.choice(present, min(len(present), 500), replace=False).tolist()
                values = hexes(pool[rng.integers(0, len(pool), len(ids))])
                index.add(ids, values)
                model.update(zip(ids, values, strict=True))
            else:
                index.save(path)
                index = HammingIndex.load(path)
            queries = queries_near(rng, pool[:next_row], bits, 12)
            assert_matches_brute_force(index, model, queries, [0, radius // 2, radius])
        queries = queries_near(rng, pool[:next_row], bits, 24)
        assert_matches_brute_force(index, model, queries, range(radius + 1))
        assert all(i in index for i in list(model)[:50]) and next_row + 1 not in index


@pytest.mark.parametrize("bits", [64, 256])
def test_a_hash_is_found_through_its_only_close_chunk(bits):
    """The tightest case of the pigeonhole argument, built from the index's own layout: a hash
    at exactly the radius whose bits differ so that a single chunk is within its probe level,
    for every chunk in turn (straddling 64-bit words or not)."""
    rng = np.random.default_rng(bits)
    data = hash_set(rng, bits, 20000, "uniform")
    index, radius = HammingIndex(bits=bits), MAX_RADIUS[bits]
    index.add(list(range(len(data))), hexes(data))
    (segment,) = index._segments
    levels, _cost = _levels(segment.widths, segment.n, radius)
    assert sum(levels) == radius + 1
    starts = np.cumsum((0, *segment.widths))[:-1]
    for only, level in enumerate(levels):
        if not level:
            continue
        for _ in range(8):
            flips = np.zeros(bits, dtype=bool)
            for chunk, (start, width) in enumerate(zip(starts, segment.widths, strict=True)):
                count = level - 1 if chunk == only else levels[chunk]
                flips[start + rng.choice(width, count, replace=False)] = True
            row = int(rng.integers(len(data)))
            query = hexes(data[row] ^ np.packbits(flips)[None])[0]
            assert (row, radius) in index.query(query, radius), (only, level)


SMALL_BATCHES = [{"_BATCH_QUERIES": 3}, {"_BATCH_PARSE": 7}]


@pytest.mark.parametrize("bits", [64, 256])
@pytest.mark.parametrize("sizes", SMALL_BATCHES)
def test_work_split_into_small_batches_gives_the_same_answers(bits, sizes, monkeypatch):
    """The batch sizes bound memory only: tiny ones change no answer."""
    rng = np.random.default_rng(11)
    data = hash_set(rng, bits, 30000, "hot chunks")
    model = dict(enumerate(hexes(data)))
    queries = queries_near(rng, data, bits, 16)
    for name, size in sizes.items():
        monkeypatch.setattr(f"tidkit.index.{name}", size)
    index = HammingIndex(bits=bits)
    index.add(list(model), list(model.values()))
    assert_matches_brute_force(index, model, queries, [0, MAX_RADIUS[bits], 3 * MAX_RADIUS[bits]])


# Layouts that large or skewed lists get, forced on a small one: 4-byte postings (segments of
# 2**24 rows or more), plain slot arrays (a block of slots holding 65,536 rows or more, which
# hot chunk values give), and the fewer tables of a memory cap.
LAYOUTS = {
    "4-byte postings": ({"_SHORT_ROWS": 1000}, None),
    "plain slot arrays": ({"_FINE_LIMIT": 1}, None),
    "plain and compact slot arrays": ({"_FINE_LIMIT": 5000}, None),  # the zeroed half only
    "memory cap": ({}, {256: 2.5, 64: 3.0}),  # (under 2x, 30,000 hashes are cheaper scanned)
}


@pytest.mark.parametrize("bits", [64, 256])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_layout_gives_the_same_answers(bits, layout, monkeypatch, tmp_path):
    constants, memory = LAYOUTS[layout]
    for name, value in constants.items():
        monkeypatch.setattr(f"tidkit.index.{name}", value)
    rng = np.random.default_rng(13)
    data = hash_set(rng, bits, 30000, "hot chunks")
    model = dict(enumerate(hexes(data)))
    queries = queries_near(rng, data, bits, 16)
    memory = memory and memory[bits]
    index = HammingIndex(bits=bits, memory=memory)
    index.add(list(model), list(model.values()))
    (segment,) = index._segments
    plain = segment.tables[:, 3] < 0
    if layout == "4-byte postings":
        assert segment.stride == 4
    elif layout == "plain slot arrays":
        assert plain.all()
    elif layout == "plain and compact slot arrays":
        assert plain.any() and not plain.all()
    if memory is not None:
        fastest = HammingIndex(bits)._indexed(*segment.live_rows())
        assert 0 < len(segment.widths) < len(fastest.widths)
        assert index.nbytes < memory * len(data) * bits / 8
    for copy in (index, _saved_and_loaded(index, tmp_path)):
        assert_matches_brute_force(copy, model, queries, [0, MAX_RADIUS[bits]])


# The packed layout of a memory cap on PDQ (rows in the order of their first chunk, which is not
# stored; unary slot arrays; one tombstone bit per row), on lists small enough to test: from
# 4,096 rows rather than 65,536, at 2.5 times the raw bytes (under 2x needs about 60,000).
PACKED = {"_PACKED_FROM": 4096}


@settings(max_examples=8, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    shape=st.sampled_from(SHAPES),
    steps=st.lists(
        st.sampled_from(["add", "add many", "remove", "remove many", "replace", "save and load"]),
        min_size=4,
        max_size=9,
    ),
)
def test_the_packed_layout_stays_exact_through_changes_and_reloads(seed, shape, steps):
    with mock.patch.multiple("tidkit.index", **PACKED):
        changes_and_reloads_stay_exact(seed, 256, shape, steps, memory=2.5)


@pytest.fixture(params=["pdep", "popcnt", "portable"])
def packed_kernel(request):
    """Each version of the packed search this CPU can run (import picks the fastest): they
    find a value in a unary run differently and must answer alike."""
    before = _hamming.packed_kernel()
    try:
        _hamming.packed_kernel(request.param)
    except ValueError:
        pytest.skip(f"this CPU cannot run the {request.param} version")
    yield request.param
    _hamming.packed_kernel(before)


PACKED_LAYOUTS = {
    "packed": {},
    "packed, 4-byte postings": {"_SHORT_ROWS": 1000},
}


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("layout", PACKED_LAYOUTS)
def test_the_packed_layout_gives_the_same_answers(shape, layout, packed_kernel, tmp_path):
    rng = np.random.default_rng(29)
    data = hash_set(rng, 256, 30000, shape)
    ids = np.sort(rng.choice(10**12, len(data), replace=False))  # sparse: 8-byte ids
    model = dict(zip(ids.tolist(), hexes(data), strict=True))
    queries = queries_near(rng, data, 256, 16)
    with mock.patch.multiple("tidkit.index", **PACKED, **PACKED_LAYOUTS[layout]):
        memory = 3 if "4-byte" in layout else 2.5  # (a byte more per table)
        index = HammingIndex(memory=memory)
        index.add(list(model), list(model.values()))
        (segment,) = index._segments
        assert segment.kind == "packed"
        assert segment.stride == (4 if "4-byte" in layout else 3)
        assert index.nbytes < memory * len(data) * 32
        assert held_bytes(index) == index.nbytes  # nothing else kept alive (the parsed input)
        hashes, ids_ = segment.live_rows()  # what merges and rebuilds start from
        assert ids_.tolist() == ids.tolist() and hexes(hashes.byteswap().view(np.uint8)) == [
            model[i] for i in ids.tolist()
        ]
        assert segment.probes(100) is None  # a radius that scans
        for copy in (index, _saved_and_loaded(index, tmp_path)):
            assert_matches_brute_force(copy, model, queries, [0, 12, 31, 40, 100])
        segment.limit = 0  # every probed query scans the segment instead
        assert_matches_brute_force(index, model, queries, [31])


def test_a_hot_chunk_value_in_the_packed_layout_finds_what_brute_force_does(packed_kernel):
    """Many hashes alike in their first 128 bits (a hot value in every table there) are one
    block of rows in the packed layout, which the other tables' long ranges skip: hashes that
    share those tables' values but not the first byte lie on both sides of it and are found."""
    rng = np.random.default_rng(41)
    data = rng.integers(0, 256, (40000, 32), dtype=np.uint8)
    pattern = rng.integers(0, 256, 32, dtype=np.uint8)
    pattern[0] = 0x80
    data[:600, :16] = pattern[:16]  # the hot block
    data[600:900, 1:16] = pattern[1:16]  # outside it in table 0, inside it elsewhere
    data[600:900, 0] = rng.choice([0x00, 0x10, 0xF0, 0xFF], 300)
    data[600:900:3, 16:] = flip_bits(np.tile(pattern[16:], (100, 1)), np.full(100, 9), rng)
    model = dict(enumerate(hexes(data)))
    queries = [pattern, pattern ^ np.eye(32, dtype=np.uint8)[0] * 0x03]
    queries += list(flip_bits(data[[5, 77, 603, 750, 897, 9000]], np.full(6, 20), rng))
    queries.append(np.concatenate((pattern[:16], rng.integers(0, 256, 16, dtype=np.uint8))))
    with mock.patch.multiple("tidkit.index", **PACKED):
        index = HammingIndex(memory=2.5)
        index.add(list(model), list(model.values()))
    (segment,) = index._segments
    assert segment.kind == "packed" and segment.widths[0] >= 8 and sum(segment.widths[:3]) < 128
    assert_matches_brute_force(index, model, hexes(np.array(queries)), [0, 12, 31])
    found = {id_ for id_, _ in index.query(hexes(pattern[None])[0], 31)}
    assert found == set(range(600, 900, 3))  # on both sides of the block


def test_each_packed_table_alone_finds_every_row(packed_kernel):
    """At radius 0 any one table, probed alone, is a whole plan (one chunk must be equal): every
    hash must find itself and its exact duplicates through each table in turn, wherever its
    value's rows lie in the run (past the mark in the first word or the second, or a hot
    value's long run), with no other table to make up for a row missed."""
    rng = np.random.default_rng(43)
    data = np.concatenate([hash_set(rng, 256, 12000, shape) for shape in SHAPES])
    model = dict(enumerate(hexes(data)))
    holders: dict[str, list[int]] = {}
    for id_, hex_hash in model.items():
        holders.setdefault(hex_hash, []).append(id_)
    expected = [[(id_, 0) for id_ in holders[hex_hash]] for hex_hash in model.values()]
    with mock.patch.multiple("tidkit.index", **PACKED):
        index = HammingIndex(memory=2.5)
        index.add(list(model), list(model.values()))
    (segment,) = index._segments
    assert segment.kind == "packed" and not index._delta.n and len(segment.widths) >= 5
    for table in range(len(segment.widths)):
        segment._probes = {0: np.array([[table, 0]], dtype=np.int64)}
        assert index.query_many(list(model.values()), 0) == expected, f"table {table}"


def held_bytes(index: HammingIndex) -> int:
    """The bytes of the memory the index's arrays keep alive (views keep their base)."""
    bases = {}
    for segment in (*index._segments, index._delta):
        for array in segment.arrays().values():
            while array.base is not None and isinstance(array.base, np.ndarray):
                array = array.base
            bases[id(array)] = array.nbytes
    return sum(bases.values())


def test_a_packed_index_under_twice_the_raw_bytes_finds_what_brute_force_does(packed_kernel):
    rng = np.random.default_rng(31)
    data = hash_set(rng, 256, 70000, "families")
    model = dict(enumerate(hexes(data)))
    index = HammingIndex(memory=2)
    index.add(list(model), list(model.values()))
    assert [segment.kind for segment in index._segments] == ["packed"]
    assert index.nbytes < 2 * len(data) * 32
    assert_matches_brute_force(index, model, queries_near(rng, data, 256, 24), [31])


def _saved_and_loaded(index: HammingIndex, folder: Path) -> HammingIndex:
    index.save(folder / "copy.index")
    return HammingIndex.load(folder / "copy.index")


def test_memory_must_be_a_sensible_multiple():
    for memory in (0, 0.5, float("nan")):
        with pytest.raises(ValueError, match="memory"):
            HammingIndex(memory=memory)


def test_threads_query_at_once_with_the_same_answers():
    """The search releases the GIL: threads run it in parallel over shared arrays."""
    rng = np.random.default_rng(17)
    data = hash_set(rng, 256, 40000, "families")
    index = HammingIndex()
    index.add(list(range(len(data))), hexes(data))
    batches = [queries_near(rng, data, 256, 8) for _ in range(16)]
    expected = [index.query_many(batch, 31) for batch in batches]
    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(lambda batch: index.query_many(batch, 31), batches)) == expected


def test_radii_beyond_the_match_distance_are_exact_too():
    rng = np.random.default_rng(7)
    data = hash_set(rng, 256, 20000, "families")
    index = HammingIndex()
    index.add(list(range(len(data))), hexes(data))
    model = dict(enumerate(hexes(data)))
    queries = queries_near(rng, data, 256, 6)
    assert_matches_brute_force(index, model, queries, [40, 64, 100, 255, 256, 300])
    assert index.query_many(queries, -1) == [[] for _ in queries]


def test_query_many_answers_each_query_in_order_even_repeated():
    rng = np.random.default_rng(5)
    data = hash_set(rng, 256, 9000, "uniform")
    index = HammingIndex()
    index.add(list(range(len(data))), hexes(data))
    queries = hexes(data[[7, 7, 3, 7]])
    assert index.query_many(queries, 0) == [[(7, 0)], [(7, 0)], [(3, 0)], [(7, 0)]]
    assert index.query_many(queries, 31) == [index.query(q, 31) for q in queries]


def test_an_id_given_twice_in_one_add_keeps_the_last_hash():
    index = HammingIndex(bits=64)
    index.add([5, 6, 5], ["0" * 16, "f" * 16, "1" + "0" * 15])
    assert len(index) == 2
    assert index.query("1" + "0" * 15, 0) == [(5, 0)]
    assert index.query("0" * 16, 0) == []


def test_a_loaded_index_never_writes_to_its_file(tmp_path):
    rng = np.random.default_rng(3)
    data = hash_set(rng, 256, 9000, "uniform")
    index = HammingIndex()
    index.add(list(range(len(data))), hexes(data))
    index.save(tmp_path / "pdq.index")
    before = hashlib.sha256((tmp_path / "pdq.index").read_bytes()).hexdigest()
    loaded = HammingIndex.load(tmp_path / "pdq.index")
    loaded.remove(range(0, 9000, 2))
    loaded.add([1], ["0" * 64])
    assert loaded.query("0" * 64, 0) == [(1, 0)] and len(loaded) == 4500
    assert hashlib.sha256((tmp_path / "pdq.index").read_bytes()).hexdigest() == before
    assert len(HammingIndex.load(tmp_path / "pdq.index")) == 9000
    loaded.save(tmp_path / "pdq.index")  # over the file it is mapped from
    assert len(HammingIndex.load(tmp_path / "pdq.index")) == 4500


def test_loading_something_else_is_refused(tmp_path):
    (tmp_path / "x.index").write_bytes(b"PK\x03\x04 not an index")
    with pytest.raises(IndexFileError, match="not a tidkit index") as refused:
        HammingIndex.load(tmp_path / "x.index")
    assert not refused.value.stale


def _pdq_index_file(folder: Path) -> tuple[Path, dict, int]:
    """A saved index of 20,000 PDQ hashes, its header and where its arrays start."""
    data = hash_set(np.random.default_rng(19), 256, 20000, "uniform")
    index = HammingIndex()
    index.add(list(range(len(data))), hexes(data))
    index.save(folder / "pdq.index")
    raw = (folder / "pdq.index").read_bytes()
    length = int.from_bytes(raw[8:16], "little")
    return folder / "pdq.index", json.loads(raw[16 : 16 + length]), -(-(16 + length) // 64) * 64


@pytest.mark.parametrize("array", ["marks", "bits", "postings"])
def test_a_damaged_packed_file_is_refused_not_read_out_of_bounds(array, tmp_path):
    data = hash_set(np.random.default_rng(37), 256, 20000, "uniform")
    with mock.patch.multiple("tidkit.index", **PACKED):
        index = HammingIndex(memory=2.5)
        index.add(list(range(len(data))), hexes(data))
    index.save(tmp_path / "pdq.index")
    raw = bytearray((tmp_path / "pdq.index").read_bytes())
    length = int.from_bytes(raw[8:16], "little")
    base = -(-(16 + length) // 64) * 64
    (described,) = json.loads(raw[16 : 16 + length])["segments"][:1]
    assert described["kind"] == "packed"
    offset, dtype, shape = described["arrays"][array]
    size = np.dtype(dtype).itemsize * int(np.prod(shape))
    raw[base + offset : base + offset + size] = b"\xff" * size
    (tmp_path / "pdq.index").write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="point outside|do not fit together"):  # load or query
        HammingIndex.load(tmp_path / "pdq.index").query_many(hexes(data[:20]), 31)


def test_a_damaged_file_is_refused_not_read_out_of_bounds(tmp_path):
    path, header, base = _pdq_index_file(tmp_path)
    offset, _dtype, shape = header["segments"][0]["arrays"]["postings"]
    raw = bytearray(path.read_bytes())
    raw[base + offset : base + offset + shape[0]] = b"\xff" * shape[0]  # rows past the end
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="point outside"):
        HammingIndex.load(path).query("0" * 64, 31)
    path.write_bytes(bytes(raw[: base + offset + 100]))  # cut short
    with pytest.raises(IndexFileError, match="cut short"):
        HammingIndex.load(path)


def test_an_index_file_of_an_older_tidkit_is_rebuilt_by_the_local_list(tmp_path):
    """tidkit sync's saved lists hold the hashes themselves: a list whose index files an older
    tidkit wrote opens with its indexes built again, and matches as before."""
    rng = random.Random(23)
    values = [f"{rng.getrandbits(256):064x}" for _ in range(6000)]
    ids = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in values]
    entries = [Entry(i, "pdq", v, "image", 90) for i, v in zip(ids, values, strict=True)]
    LocalList.from_entries(entries).save(tmp_path)
    (tmp_path / "pdq.index").write_bytes(b"TIDKHIX1" + b"\0" * 64)  # the first format
    with pytest.raises(IndexFileError, match="older tidkit") as refused:
        HammingIndex.load(tmp_path / "pdq.index")
    assert refused.value.stale
    local = LocalList.load(tmp_path)
    near = values[7][:-2] + ("00" if values[7][-2:] != "00" else "ff")
    assert {m.entry_id for m in local.match({"pdq": near, "pdq_quality": 90})} == {ids[7]}


@pytest.mark.parametrize("bad", ["ab" * 31, "zz" * 32, "ab " * 21 + "a", None])
def test_malformed_hashes_are_refused_and_change_nothing(bad):
    index = HammingIndex()
    index.add([1], ["0" * 64])
    with pytest.raises(HashFormatError):
        index.add([1, 2], ["f" * 64, bad])
    assert len(index) == 1 and index.query("0" * 64, 0) == [(1, 0)]
    with pytest.raises(HashFormatError):
        index.query(bad, 31)


def test_empty_index_answers_nothing(tmp_path):
    assert HammingIndex().query("0" * 64, 31) == []
    assert HammingIndex().query_many([], 31) == []
    HammingIndex(bits=64).save(tmp_path / "empty.index")
    loaded = HammingIndex.load(tmp_path / "empty.index")
    assert loaded.bits == 64 and len(loaded) == 0 and loaded.query("0" * 16, 8) == []
