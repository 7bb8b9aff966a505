"""Exact Hamming radius search over PDQ (256-bit) and pHash (64-bit) hashes.

``HammingIndex`` answers "every hash within ``radius`` bits of this one" with exactly the set
brute force returns, in far less time, by multi-index hashing: each hash is cut into ``m``
chunks, and each chunk has a table (the rows grouped by chunk value, CSR style: a slot array of
offsets and a postings array of rows). Give the chunks probe levels ``s_i >= 0`` adding up to
``radius + 1``: a hash within ``radius`` has some chunk ``i`` within ``s_i - 1`` bits of the
query's (otherwise the chunk distances would add up to more than ``radius``), so probing every
value within ``s_i - 1`` bits of the query's chunk ``i`` in table ``i`` finds it. Candidates are
then checked by XOR and popcount (NumPy's ``bitwise_count``) against the whole hash, so the
answer is exact whatever the data; pure NumPy, no compiled code.

Choices, measured with bench/index.py on one core of the development VM (see its docstring):

- Wide chunks. At 10 million PDQ hashes and radius 31 the index uses 12 chunks of 21-22 bits,
  probes up to 2 flipped bits on 8 of them and 1 on 4: about 2,000 slots and 7,300 candidates
  per query: about 4,000 queries/s (faiss IndexBinaryFlat: 94; NumPy brute force: 6). The
  textbook 16 chunks of 16 bits with 1 flipped bit probe only 272 slots but check 41,000
  candidates: 2 to 5 times slower, for as much memory. The width is chosen per segment from its
  size (a chunk value should select a few rows), within a memory cap on the slot arrays; the
  levels are chosen per radius by a greedy cost model (slots probed plus candidates expected),
  so small radii probe fewer chunks, and a radius so large that nothing pays off scans instead.
  pHash at 10 million: 3 chunks of 21-22 bits, up to 2 flipped bits each, about 8,800
  queries/s (faiss: 284).
- Skewed data stays exact and bounded: a query that would check more than a quarter of a
  segment (hot chunk values: near-duplicate families, common image structure) scans that
  segment instead. Rows found through several chunks are checked again, which measured cheaper
  than removing the duplicates first.
- Incremental, no rebuild: new hashes go to a small sorted delta scanned by brute force; past
  4,096 it becomes a segment, and a segment merges into the one before it once larger than a
  quarter of it, so there are a few segments and each hash is re-indexed a logarithmic number
  of times. Removal is a tombstone; a segment is rebuilt without its dead rows once a quarter
  is dead. A table is built by sorting (chunk value, row) packed in one 64-bit word (NumPy sorts
  those with SIMD): about 5 s for 10 million PDQ hashes, parsing the hex included.
- Memory: 10 million PDQ hashes take 977 MiB, 3.2 times their raw 32 bytes: the hashes, 8-byte
  ids, a tombstone byte, and per chunk 4 bytes of postings per hash plus its slot array. Under 2x
  is out of reach for any table set of this kind: the tables must record every chunk's value for
  every hash, as many bits as the hashes themselves, on top of the hashes that candidates are
  checked against; plain int32 postings keep the lookups fast.
- Files: ``save`` writes one file (a JSON header, then 64-byte-aligned arrays); ``load`` maps it
  copy-on-write, so 10 million hashes load in about a millisecond and pages are read as queries
  touch them; later adds, removes and merges never write to the file.

Queries may run in several threads at once; writes (``add``, ``remove``) need the caller's lock,
as with a dict.
"""

import itertools
import json
import math
import mmap
import operator
import os
from collections.abc import Iterable, Sequence
from functools import cache
from pathlib import Path
from typing import Self

import numpy as np

from tidkit import formats
from tidkit.errors import HashFormatError

__all__ = ["HammingIndex"]

_DELTA_ROWS = 4096  # new hashes scanned by brute force before they are indexed as a segment
_MERGE_RATIO = 4  # a segment merges into the one before it when larger than 1/4 of it
_DEAD_SHARE = 0.25  # a segment is rebuilt without its removed rows past this share
_BRUTE_SHARE = 0.25  # a query scans a segment when it would check more than this share of it
_PROBE_OVERHEAD = 2000  # the fixed cost of probing a segment, in candidates checked
_MAX_CHUNK_BITS = 22  # slot arrays of 2**22 int32 (16 MB per table) at most
_BATCH_PROBES = 1 << 14  # probes looked up in one go: bounds temporaries, keeps them in cache
_BATCH_CANDIDATES = 1 << 20  # candidates checked in one go
_BATCH_QUERIES = 1 << 20  # queries answered in one go (their numbers are packed in 23 bits)
_BRUTE_CELLS = 1 << 20  # (query, hash) pairs compared in one go by the brute-force scan
_BATCH_PARSE = 1 << 18  # hex hashes parsed in one go

_MAGIC = b"TIDKHIX1"  # then a little-endian uint64 header length, the JSON header, the arrays
_ALIGN = 64


def _design_radius(bits: int) -> int:
    return formats.PDQ_MATCH_DISTANCE if bits == 256 else formats.PHASH_MATCH_DISTANCE


@cache
def _ball(width: int, radius: int) -> int:
    """How many ``width``-bit values lie within ``radius`` bits of a given one."""
    return sum(math.comb(width, k) for k in range(min(radius, width) + 1))


@cache
def _flip_masks(width: int, radius: int) -> np.ndarray:
    """Every ``width``-bit XOR mask of at most ``radius`` bits, the empty mask first."""
    masks = [
        sum(1 << b for b in bits_)
        for k in range(radius + 1)
        for bits_ in itertools.combinations(range(width), k)
    ]
    return np.array(masks, dtype=np.int64)


def _split(bits: int, chunks: int) -> tuple[int, ...]:
    """``chunks`` widths adding up to ``bits``, differing by at most one."""
    base, extra = divmod(bits, chunks)
    return (base + 1,) * extra + (base,) * (chunks - extra)


def _levels(widths: Sequence[int], rows: int, radius: int) -> tuple[list[int], float] | None:
    """Probe levels (``s_i``, see the module docstring) adding up to ``radius + 1``, chosen
    greedily by the estimated cost (slots probed plus candidates checked, for uniform data), and
    that cost; None if brute force is cheaper."""

    def cost(width: int, level: int) -> float:
        if not level:
            return 0.0
        slots = _ball(width, level - 1)
        return slots + slots * rows / (1 << width)

    if radius >= sum(widths):
        return None
    levels = [0] * len(widths)
    for _ in range(radius + 1):
        step = [
            cost(w, s + 1) - cost(w, s) if s <= w else math.inf
            for w, s in zip(widths, levels, strict=True)
        ]
        levels[step.index(min(step))] += 1
    total = sum(cost(w, s) for w, s in zip(widths, levels, strict=True))
    return (levels, total) if total + _PROBE_OVERHEAD <= rows * _BRUTE_SHARE else None


def _choose_widths(bits: int, rows: int) -> tuple[int, ...]:
    """Chunk widths for a segment of ``rows`` hashes: the cheapest at the design radius whose
    slot arrays take at most half as much memory as its postings; () if scanning is cheaper."""
    best: tuple[float, tuple[int, ...]] = (math.inf, ())
    for width in range(8, _MAX_CHUNK_BITS + 1):
        widths = _split(bits, -(-bits // width))
        if sum(1 << w for w in widths) * 4 > rows * len(widths) * 2:
            break
        plan = _levels(widths, rows, _design_radius(bits))
        if plan is not None and plan[1] < best[0]:
            best = (plan[1], widths)
    return best[1]


class _KeyLayout:
    """Where each chunk's bits sit in the rows of 64-bit words (bit 0 is the hex string's first
    bit). One object computes the keys of tables and of queries, so they always agree."""

    def __init__(self, starts: Sequence[int], widths: Sequence[int]) -> None:
        widths_ = np.array(widths, dtype=np.int64)
        word, offset = np.divmod(np.array(starts, dtype=np.int64), 64)
        end = offset + widths_
        self.inside = np.flatnonzero(end <= 64)
        self.straddle = np.flatnonzero(end > 64)  # chunks across two words
        self.inside_words = word[self.inside]
        self.inside_shift = (64 - end[self.inside]).astype(np.uint64)
        self.straddle_words = word[self.straddle]
        self.left = (end[self.straddle] - 64).astype(np.uint64)
        self.right = (128 - end[self.straddle]).astype(np.uint64)
        self.mask = (np.uint64(1) << widths_.astype(np.uint64)) - np.uint64(1)

    def keys(self, hashes: np.ndarray) -> np.ndarray:
        """(rows, chunks) chunk values."""
        keys = np.empty((len(hashes), len(self.mask)), dtype=np.uint64)
        keys[:, self.inside] = hashes[:, self.inside_words] >> self.inside_shift
        if len(self.straddle):
            high = hashes[:, self.straddle_words] << self.left
            keys[:, self.straddle] = high | (hashes[:, self.straddle_words + 1] >> self.right)
        keys &= self.mask
        return keys


def _distances(hashes: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Hamming distances between paired rows (or broadcast rows) of 64-bit words."""
    counts = np.bitwise_count(hashes ^ queries)
    # Adding the word columns one by one is several times faster than .sum(axis=-1).
    distances = counts[..., 0].astype(np.uint16)
    for word in range(1, counts.shape[-1]):
        distances += counts[..., word]
    return distances


class _Plan:
    """The slots one query probes in a segment at one radius."""

    __slots__ = ("chunks", "masks", "slot_base", "posting_base")

    def __init__(self, segment: "_Segment", levels: Sequence[int]) -> None:
        chunks, masks = [], []
        for chunk, (width, level) in enumerate(zip(segment.widths, levels, strict=True)):
            if level:
                flips = _flip_masks(width, level - 1)
                chunks.append(np.full(len(flips), chunk, dtype=np.int64))
                masks.append(flips)
        self.chunks = np.concatenate(chunks)
        self.masks = np.concatenate(masks)
        self.slot_base = segment.slot_starts[self.chunks]
        self.posting_base = self.chunks * segment.n


class _Segment:
    """Hashes sorted by id, with one posting table per chunk (none for the delta). Immutable
    except for tombstones (``alive``)."""

    def __init__(
        self,
        hashes: np.ndarray,
        ids: np.ndarray,
        alive: np.ndarray,
        widths: Sequence[int],
        slots: np.ndarray,
        postings: np.ndarray,
    ) -> None:
        self.hashes, self.ids, self.alive = hashes, ids, alive
        self.widths = tuple(int(w) for w in widths)
        self.slots, self.postings = slots, postings  # slots: CSR offsets of every table, flat
        self.n = len(ids)
        self.dead = self.n - int(np.count_nonzero(alive))
        self.starts = np.cumsum((0, *self.widths), dtype=np.int64)[:-1]
        self.layout = _KeyLayout(self.starts, self.widths)
        self.slot_starts = np.cumsum([0] + [(1 << w) + 1 for w in self.widths[:-1]], dtype=np.int64)
        self._plans: dict[int, _Plan | None] = {}

    @classmethod
    def build(cls, bits: int, hashes: np.ndarray, ids: np.ndarray, *, indexed: bool) -> Self:
        """A segment of these rows (ids sorted and unique), with tables if ``indexed`` and they
        pay off at this size."""
        n = len(ids)
        widths = _choose_widths(bits, n) if indexed else ()
        slots = np.zeros(sum((1 << w) + 1 for w in widths), dtype=np.int32)
        postings = np.empty((len(widths), n), dtype=np.int32)
        starts, slot = np.cumsum((0, *widths))[:-1], 0
        for chunk, width in enumerate(widths):
            keys = _KeyLayout(starts[chunk : chunk + 1], [width]).keys(hashes)[:, 0]
            # Sorting (key, row) packed in one word is several times faster than an argsort
            # (NumPy sorts 64-bit integers with SIMD), and keeps each slot's rows ascending.
            packed = (keys << np.uint64(32)) | np.arange(n, dtype=np.uint64)
            packed.sort()
            postings[chunk] = packed.astype(np.uint32).view(np.int32)
            counts = np.bincount(keys.view(np.int64), minlength=1 << width)
            np.cumsum(counts, out=slots[slot + 1 : slot + (1 << width) + 1])
            slot += (1 << width) + 1
        return cls(hashes, ids, np.ones(n, dtype=bool), widths, slots, postings)

    @property
    def live(self) -> int:
        return self.n - self.dead

    @property
    def nbytes(self) -> int:
        arrays = (self.hashes, self.ids, self.alive, self.slots, self.postings)
        return sum(a.nbytes for a in arrays)

    def rows_of(self, ids: np.ndarray) -> np.ndarray:
        """The live rows holding ``ids`` (those not here are skipped)."""
        if not self.n:
            return np.zeros(0, dtype=np.int64)
        rows = np.minimum(np.searchsorted(self.ids, ids), self.n - 1)
        return rows[(self.ids[rows] == ids) & self.alive[rows]]

    def kill(self, ids: np.ndarray) -> None:
        rows = self.rows_of(ids)
        self.alive[rows] = False
        self.dead += len(rows)

    def live_rows(self) -> tuple[np.ndarray, np.ndarray]:
        if not self.dead:
            return self.hashes, self.ids
        return self.hashes[self.alive], self.ids[self.alive]

    def plan(self, radius: int) -> _Plan | None:
        if radius not in self._plans:
            levels = _levels(self.widths, self.n, radius) if self.widths else None
            self._plans[radius] = _Plan(self, levels[0]) if levels else None
        return self._plans[radius]

    def search(self, queries: np.ndarray, radius: int) -> tuple[np.ndarray, ...]:
        """(query number, id, distance) of every live row within ``radius`` of one of the
        ``queries`` (at most _BATCH_QUERIES), sorted in that order."""
        plan = self.plan(radius)
        found = [(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.uint16))]
        if plan is None:
            found.append(self._scan(queries, np.arange(len(queries)), radius))
        else:
            keys = self.layout.keys(queries).view(np.int64)
            group = max(1, _BATCH_PROBES // len(plan.chunks))
            for first in range(0, len(queries), group):
                last = min(first + group, len(queries))
                found += self._probe(queries, keys, first, last, radius, plan)
        numbers, rows, distances = (np.concatenate(parts) for parts in zip(*found, strict=True))
        if not len(rows):
            return numbers, rows, distances
        keep = self.alive[rows]
        # Sort by (query, distance, row) packed in one word (rows are in id order), and keep one
        # of each hash found through several chunks.
        packed = numbers[keep].astype(np.uint64) << np.uint64(41)
        packed |= distances[keep].astype(np.uint64) << np.uint64(32)
        packed |= rows[keep].astype(np.uint64)
        packed.sort()  # (np.unique hashes first, which is slower here)
        fresh = np.ones(len(packed), dtype=bool)
        fresh[1:] = packed[1:] != packed[:-1]
        packed = packed[fresh]
        rows = (packed & np.uint64(0xFFFFFFFF)).astype(np.int64)
        distances = (packed >> np.uint64(32)).astype(np.int64) & 0x1FF
        return (packed >> np.uint64(41)).astype(np.int64), self.ids[rows], distances

    def _probe(
        self, queries: np.ndarray, keys: np.ndarray, first: int, last: int, radius: int, plan: _Plan
    ) -> list[tuple[np.ndarray, ...]]:
        slots = (keys[first:last, plan.chunks] ^ plan.masks) + plan.slot_base  # (query, probe)
        starts = np.take(self.slots, slots)
        lengths = np.take(self.slots, slots + 1) - starts
        per_query = lengths.sum(axis=1, dtype=np.int64)
        hot = per_query > self.n * _BRUTE_SHARE  # a hot chunk value: scanning is cheaper
        found = []
        if hot.any():
            found.append(self._scan(queries, first + np.flatnonzero(hot), radius))
            lengths[hot], per_query[hot] = 0, 0
        starts = starts + plan.posting_base
        # Queries whose candidates add up to _BATCH_CANDIDATES (or one query) at a time.
        total = np.cumsum(per_query)
        begin = 0
        while begin < len(per_query):
            end = int(np.searchsorted(total, total[begin] - per_query[begin] + _BATCH_CANDIDATES))
            end = max(end, begin + 1)
            lengths_ = lengths[begin:end].ravel()
            ends = np.cumsum(lengths_)
            # Positions of every candidate: each probed slot's run of postings, end to end.
            positions = np.repeat(starts[begin:end].ravel() - (ends - lengths_), lengths_)
            positions += np.arange(len(positions))
            rows = np.take(self.postings, positions)
            numbers = np.repeat(np.arange(first + begin, first + end), per_query[begin:end])
            distances = _distances(
                np.take(self.hashes, rows, axis=0), np.take(queries, numbers, axis=0)
            )
            hits = np.flatnonzero(distances <= radius)
            found.append((numbers[hits], rows[hits], distances[hits]))
            begin = end
        return found

    def _scan(
        self, queries: np.ndarray, numbers: np.ndarray, radius: int
    ) -> tuple[np.ndarray, ...]:
        """Brute force: queries ``numbers`` against every row."""
        found = []
        block = max(1, _BRUTE_CELLS // max(len(numbers), 1))
        for at in range(0, self.n, block):
            distances = _distances(self.hashes[None, at : at + block], queries[numbers, None])
            which, rows = np.nonzero(distances <= radius)
            found.append((numbers[which], rows + at, distances[which, rows]))
        if not found:
            return (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.uint16))
        return tuple(np.concatenate(parts) for parts in zip(*found, strict=True))

    def arrays(self) -> dict[str, np.ndarray]:
        return {
            "hashes": self.hashes,
            "ids": self.ids,
            "alive": self.alive,
            "widths": np.array(self.widths, dtype=np.int64),
            "slots": self.slots,
            "postings": self.postings,
        }


class HammingIndex:
    """An exact radius index of fixed-width hex hashes, keyed by integer ids.

    >>> index = HammingIndex(bits=64)
    >>> index.add([1, 2], ["ffffffffffffffff", "0000000000000000"])
    >>> index.query("fffffffffffffff0", radius=8)
    [(1, 4)]
    """

    def __init__(self, bits: int = 256) -> None:
        if bits not in (64, 256):
            raise ValueError("bits is 64 (pHash) or 256 (PDQ)")
        self.bits = bits
        self.words = bits // 64
        self._segments: tuple[_Segment, ...] = ()  # indexed, oldest (and largest) first
        self._delta = self._flat(np.zeros((0, self.words), np.uint64), np.zeros(0, np.int64))

    def __len__(self) -> int:
        return sum(s.live for s in self._segments) + self._delta.n

    def __contains__(self, id_: int) -> bool:
        ids = np.array([operator.index(id_)], dtype=np.int64)
        return any(len(s.rows_of(ids)) for s in (*self._segments, self._delta))

    @property
    def nbytes(self) -> int:
        """Bytes of the arrays that make up the index (in memory or mapped from its file)."""
        return sum(s.nbytes for s in (*self._segments, self._delta))

    def add(self, ids: Sequence[int], hex_hashes: Sequence[str]) -> None:
        """Add hashes under ``ids``; an id already present gets the new hash (within one call,
        the last one given). Nothing changes if any hash is malformed."""
        if len(ids) != len(hex_hashes):
            raise ValueError("ids and hashes differ in length")
        if not len(ids):
            return
        rows, ids_ = self._parse(hex_hashes), self._ids(ids)
        if not np.all(ids_[1:] > ids_[:-1]):
            # Keep the last occurrence of each id; np.unique also sorts them.
            ids_, last = np.unique(ids_[::-1], return_index=True)
            rows = rows[len(rows) - 1 - last]
        self._discard(ids_)
        delta = self._delta
        if delta.n:
            ids_, rows = np.concatenate((delta.ids, ids_)), np.concatenate((delta.hashes, rows))
            order = np.argsort(ids_, kind="stable")
            ids_, rows = ids_[order], rows[order]
        if len(ids_) <= _DELTA_ROWS:
            self._delta = self._flat(rows, ids_)
            return
        segment = _Segment.build(self.bits, rows, ids_, indexed=True)
        self._delta = self._flat(rows[:0], ids_[:0])
        self._segments = self._rebalance([*self._segments, segment])

    def remove(self, ids: Iterable[int]) -> None:
        """Remove ``ids``; unknown ids are ignored."""
        ids_ = np.unique(self._ids(ids if isinstance(ids, Sequence | np.ndarray) else list(ids)))
        if len(ids_):
            self._discard(ids_)
            self._segments = self._rebalance(list(self._segments))

    def query(self, hex_hash: str, radius: int) -> list[tuple[int, int]]:
        """Every ``(id, distance)`` within ``radius`` bits of ``hex_hash``, nearest first (ties
        by id)."""
        return self.query_many([hex_hash], radius)[0]

    def query_many(self, hex_hashes: Sequence[str], radius: int) -> list[list[tuple[int, int]]]:
        """``query`` for each hash, in order; batches share the work, so this is faster."""
        if not len(hex_hashes):
            return []
        queries, radius = self._parse(hex_hashes), operator.index(radius)
        if radius < 0:
            return [[] for _ in range(len(queries))]
        segments = (*self._segments, self._delta)  # one consistent view
        answers = []
        for first in range(0, len(queries), _BATCH_QUERIES):
            batch = queries[first : first + _BATCH_QUERIES]
            found = [f for f in (s.search(batch, radius) for s in segments) if len(f[0])]
            if not found:
                answers += [[] for _ in range(len(batch))]
                continue
            numbers, ids, distances = (np.concatenate(parts) for parts in zip(*found, strict=True))
            if len(found) > 1:  # each part is sorted; an id is in one segment only
                order = np.lexsort((ids, distances, numbers))
                numbers, ids, distances = numbers[order], ids[order], distances[order]
            pairs = list(zip(ids.tolist(), distances.tolist(), strict=True))
            bounds = np.searchsorted(numbers, np.arange(len(batch) + 1)).tolist()
            answers += [pairs[bounds[i] : bounds[i + 1]] for i in range(len(batch))]
        return answers

    def save(self, path: str | Path) -> None:
        """Write the index to ``path`` (one file, replaced atomically) for ``load``."""
        path = Path(path)
        segments = [*self._segments, self._delta]
        header: dict = {"bits": self.bits, "segments": []}
        arrays, offset = [], 0
        for segment in segments:
            described = {}
            for name, array in segment.arrays().items():
                array = np.ascontiguousarray(array)
                described[name] = [offset, array.dtype.str, list(array.shape)]
                arrays.append((offset, array))
                offset += -(-array.nbytes // _ALIGN) * _ALIGN
            header["segments"].append(described)
        encoded = json.dumps(header).encode()
        base = -(-(len(_MAGIC) + 8 + len(encoded)) // _ALIGN) * _ALIGN
        temporary = path.with_name(path.name + ".tmp")
        with open(temporary, "wb") as fh:
            fh.write(_MAGIC + len(encoded).to_bytes(8, "little") + encoded)
            for at, array in arrays:
                fh.seek(base + at)
                fh.write(array.data)
            fh.truncate(base + offset)
            fh.flush()
            os.fsync(fh.fileno())
        temporary.replace(path)

    @classmethod
    def load(cls, path: str | Path) -> Self:
        """An index written by ``save``, mapped from the file (not read into memory up front).
        Changes made afterwards stay in this process; the file is never written."""
        with open(path, "rb") as fh:
            if fh.read(len(_MAGIC)) != _MAGIC:
                raise ValueError(f"{path} is not a tidkit index file")
            encoded = fh.read(int.from_bytes(fh.read(8), "little"))
            header = json.loads(encoded)
            # ACCESS_COPY: tombstones written later go to private pages, never to the file.
            mapped = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_COPY)
        base = -(-(len(_MAGIC) + 8 + len(encoded)) // _ALIGN) * _ALIGN
        index = cls(bits=header["bits"])

        def array(offset: int, dtype: str, shape: list[int]) -> np.ndarray:
            count = math.prod(shape)
            data = np.frombuffer(mapped, dtype=dtype, count=count, offset=base + offset)
            return data.reshape(shape)

        def segment(described: dict) -> _Segment:
            arrays = {name: array(*spec) for name, spec in described.items()}
            for name, data in arrays.items():
                data.flags.writeable = name == "alive"  # only tombstones change in place
            return _Segment(**arrays)

        segments = [segment(described) for described in header["segments"]]
        index._segments, index._delta = tuple(segments[:-1]), segments[-1]
        return index

    def _flat(self, hashes: np.ndarray, ids: np.ndarray) -> _Segment:
        return _Segment.build(self.bits, hashes, ids, indexed=False)

    def _discard(self, ids: np.ndarray) -> None:
        """Remove ``ids`` (sorted, unique) wherever they are."""
        for segment in self._segments:
            segment.kill(ids)
        delta = self._delta
        if len(delta.rows_of(ids)):
            keep = ~np.isin(delta.ids, ids)
            self._delta = self._flat(delta.hashes[keep], delta.ids[keep])

    def _rebalance(self, segments: list[_Segment]) -> tuple[_Segment, ...]:
        """Rebuild segments that are a quarter dead; merge any segment larger than a quarter of
        the one before it into it. Sizes then fall at least fourfold from one segment to the next
        (few segments), and a hash is re-indexed a logarithmic number of times."""
        for i, segment in enumerate(segments):
            if segment.dead > segment.n * _DEAD_SHARE:
                segments[i] = _Segment.build(self.bits, *segment.live_rows(), indexed=True)
        segments = [s for s in segments if s.live]
        i = 1
        while i < len(segments):
            if segments[i - 1].live < _MERGE_RATIO * segments[i].live:
                (hashes_a, ids_a), (hashes_b, ids_b) = (
                    s.live_rows() for s in segments[i - 1 : i + 1]
                )
                ids_ = np.concatenate((ids_a, ids_b))
                order = np.argsort(ids_, kind="stable")
                hashes = np.concatenate((hashes_a, hashes_b))[order]
                segments[i - 1 : i + 1] = [
                    _Segment.build(self.bits, hashes, ids_[order], indexed=True)
                ]
                i = max(1, i - 1)
            else:
                i += 1
        return tuple(segments)

    def _ids(self, ids: Sequence[int]) -> np.ndarray:
        array = np.asarray(ids)
        if array.size == 0:
            return np.zeros(0, dtype=np.int64)
        if array.ndim != 1 or array.dtype.kind not in "iu":
            array = np.array([operator.index(i) for i in ids], dtype=np.int64)
        return array.astype(np.int64)

    def _parse(self, hex_hashes: Sequence[str]) -> np.ndarray:
        width = self.bits // 4
        problem = HashFormatError(
            f"Every hash in a {self.bits}-bit index is {width} hexadecimal characters."
        )
        try:
            lengths = set(map(len, hex_hashes))
        except TypeError:
            raise problem from None
        if lengths - {width}:
            raise problem
        parsed = np.empty((len(hex_hashes), self.words), dtype=np.uint64)
        for at in range(0, len(hex_hashes), _BATCH_PARSE):  # bounds the joined text
            part = hex_hashes[at : at + _BATCH_PARSE]
            try:
                raw = bytes.fromhex("".join(part))
            except (TypeError, ValueError):  # not strings, or not hexadecimal
                raise problem from None
            if len(raw) * 2 != width * len(part):  # fromhex skips whitespace
                raise problem
            # Big-endian words keep the hex string's bit order (bit 0 is the first hex bit).
            parsed[at : at + len(part)] = np.frombuffer(raw, ">u8").reshape(-1, self.words)
        return parsed
