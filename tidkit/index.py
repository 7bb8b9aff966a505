"""Exact Hamming radius search over PDQ (256-bit) and pHash (64-bit) hashes.

``HammingIndex`` answers "every hash within ``radius`` bits of this one" with exactly the set
brute force returns, in far less time, by multi-index hashing: the first bits of each hash are
cut into ``m`` chunks, and each chunk has a table (the rows grouped by chunk value, CSR style: a
slot array of offsets and a postings array of rows). Give the chunks probe levels ``s_i >= 0``
adding up to ``radius + 1``: a hash within ``radius`` has some chunk ``i`` within ``s_i - 1``
bits of the query's (otherwise the chunk distances alone would add up to more than ``radius``),
so probing every value within ``s_i - 1`` bits of the query's chunk ``i`` in table ``i`` finds
it. Candidates are then checked by XOR and popcount against the whole hash, so the answer is
exact whatever the data. The probing and checking run in C (tidkit/_hamming.c: one pass per
candidate, no temporaries, the GIL released so threads query in parallel); layout and
bookkeeping stay here, in NumPy.

Choices, measured with bench/index.py on one core of the development VM (see its docstring):

- Wide chunks. At 10 million PDQ hashes and radius 31 the index uses 11 chunks of 23 bits
  (253 of the 256 bits), probes up to 2 flipped bits on 10 of them and 1 on the last: about
  2,800 slots and 3,300 candidates per query, each a cache miss or two: 6,300 queries/s
  uniform, 4,400 clustered, one at a time (faiss IndexBinaryFlat: 80, on a busy machine). The
  width is the cheapest for the segment's size by a cost model (a probed slot costs about two
  candidates), up to 2**23 slots; levels follow the radius, so small radii probe fewer chunks,
  and a radius so large that nothing pays off scans instead. pHash at 10 million: 3 chunks of
  21-22 bits, 15,000 queries/s (faiss: 190).
- Skewed data stays exact and bounded: a query that would check more than a quarter of a
  segment scans that segment instead; one with many candidates (hot chunk values,
  near-duplicate families, which put the same rows in several tables' probed slots) checks each
  row once, through a bitmap of the rows seen.
- Incremental, no rebuild: new hashes go to a small sorted delta scanned by brute force; past
  4,096 it becomes a segment, and a segment merges into the one before it once larger than a
  quarter of it, so there are a few segments and each hash is re-indexed a logarithmic number
  of times. Removal is a tombstone; a segment is rebuilt without its dead rows once a quarter
  is dead. A table is built by sorting (chunk value, row) packed in one 64-bit word (NumPy sorts
  those with SIMD): about 17 s for 10 million PDQ hashes, parsing the hex included.
- Memory: per hash, its 32 bytes, a 4-byte id (offset from the segment's first; 8 bytes if the
  ids span 2**32 or more), a tombstone byte, and per table 3 bytes of postings (4 in segments
  of 2**24 rows or more) plus its slot array: a uint32 per 256 slots and a uint16 offset per
  slot (a plain uint32 per slot for a table where a value is shared by tens of thousands of
  rows). 10 million PDQ hashes take 886 MB, 2.77 times the raw 320 MB.
- Under twice the raw bytes: ``HammingIndex(memory=2)``. Each table holds a row number per hash,
  at least log2(n) bits (3 bytes at 10 million), so the 32 bytes beside each hash hold at most 9
  or 10 tables, and only if nothing else costs much. PDQ segments of 65,536 rows or more are
  then packed (_PackedSegment), which wins back two tables: the rows are stored in the order of
  their first chunk's value, so that chunk needs no postings and its bits are not stored (29
  bytes a row); the slot arrays are unary runs (a bit per row and per value, and a uint32 mark
  every 32 values: 0.35 bytes per row, not 1.7); a tombstone is a bit. 10 million PDQ hashes
  take 637 MB, 1.99x, in 10 chunks (24 bits, then 9 of 23, 231 bits indexed): about 6,600 probed
  values and 6,500 candidates per query, twice the default layout's, each step made cheaper. A
  candidate is checked on 16 bytes first (words 1 and 2, one cache line, which rule out nearly
  all of them), and the rest is read, once per row, only for those within the radius there. A
  value is found in its run from its mark by two branch-free selects within 128 bits (the BMI2
  pdep instruction where it is fast: _hamming.c). Each pass fetches 64 steps ahead. A hot chunk
  value's rows are one block in table 0, which the other tables' long ranges skip. Measured side
  by side (bench/index.py, one core, 2026-12-07, faiss IndexBinaryFlat answering 67 to 86
  queries/s), median rounds of four runs: uniform 4,200 to 6,000 queries/s one at a time (56 to
  74 times faiss), clustered 3,700 to 5,500 (53 to 61 times; single rounds fell to 29x, 46x and
  48x with the host busy), about the default layout's speed; without a fast pdep about a third
  less. The ids are in row order, not id order, so removing or finding ids is a pass over a
  segment's ids (at 10 million, 7 ms for one id, 0.2 s for a batch of thousands): remove in
  batches. A pHash index cannot go under 2x with tables (its hashes are 8 bytes, an id 4):
  capped, it scans.
- Files: ``save`` writes one file (a JSON header, then 64-byte-aligned arrays); ``load`` maps it
  copy-on-write, so 10 million hashes load in about a millisecond and pages are read as queries
  touch them; later adds, removes and merges never write to the file. A file of an older
  format raises IndexFileError with ``stale`` set (tidkit.store builds such an index again).

Queries may run in several threads at once; writes (``add``, ``remove``) need the caller's lock,
as with a dict.
"""

import ctypes
import itertools
import json
import math
import mmap
import operator
import os
from collections.abc import Callable, Iterable, Sequence
from functools import cache
from pathlib import Path
from typing import Self

import numpy as np

from tidkit import formats
from tidkit.errors import HashFormatError

try:
    from tidkit import _hamming
except ImportError as exc:  # pragma: no cover - the message is the point
    raise ImportError(
        "tidkit's compiled part (tidkit._hamming) is missing: install tidkit with "
        "`pip install ./tidkit`, or build it in the source tree with `make tidkit-extension` "
        "(or `python setup.py build_ext --inplace` in tidkit/)."
    ) from exc

__all__ = ["HammingIndex"]

_DELTA_ROWS = 4096  # new hashes scanned by brute force before they are indexed as a segment
_MERGE_RATIO = 4  # a segment merges into the one before it when larger than 1/4 of it
_DEAD_SHARE = 0.25  # a segment is rebuilt without its removed rows past this share
_BRUTE_SHARE = 0.25  # a query scans a segment when it would check more than this share of it
_PROBE_COST = 2.0  # a probed slot costs about two candidates checked (two cache misses)
_PROBE_OVERHEAD = 2000  # the fixed cost of probing a segment, in candidates checked
_MAX_CHUNK_BITS = 23  # at most 2**23 slots per table
_SHORT_ROWS = 1 << 24  # segments with fewer rows than this have 3-byte postings
_FINE_BLOCK = 256  # a compact slot array has one uint32 per this many slots (_hamming.c) ...
_FINE_LIMIT = 1 << 16  # ... and a uint16 offset from it per slot, when the offsets fit
_BATCH_QUERIES = 1 << 20  # queries answered in one go (their numbers are packed in 23 bits)
_BATCH_PARSE = 1 << 14  # hex hashes parsed in one go (small temporaries leave no heap behind)

_PACKED_FROM = 1 << 16  # capped PDQ segments of this many rows or more are packed
_UNARY_PROBE_COST = 3.0  # a probed value in a unary run costs about three candidates checked
_MARK_SHIFT = 5  # a unary run has a mark per 32 values (_hamming.c)

_MAGIC = b"TIDKHIX4"  # then a little-endian uint64 header length, the JSON header, the arrays
_OLD_MAGICS = (b"TIDKHIX1", b"TIDKHIX2", b"TIDKHIX3")
_ALIGN = 64


class IndexFileError(ValueError):
    """A file ``HammingIndex.load`` cannot use: not an index, or one written by an older tidkit
    (``stale``), which is rebuilt from the hashes it was made of."""

    def __init__(self, message: str, *, stale: bool = False) -> None:
        super().__init__(message)
        self.stale = stale


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


def _levels(
    widths: Sequence[int], rows: int, radius: int, probe_cost: float = _PROBE_COST
) -> tuple[list[int], float] | None:
    """Probe levels (``s_i``, see the module docstring) adding up to ``radius + 1``, chosen
    greedily by the estimated cost (slots probed, at ``probe_cost`` candidates each, plus
    candidates checked, for uniform data), and that cost; None if brute force is cheaper."""

    def cost(width: int, level: int) -> float:
        if not level:
            return 0.0
        slots = _ball(width, level - 1)
        return slots * probe_cost + slots * rows / (1 << width)

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


def _probe_plan(
    widths: Sequence[int], rows: int, radius: int, probe_cost: float = _PROBE_COST
) -> np.ndarray | None:
    """(table, XOR mask) of every slot a query probes at ``radius`` in tables of these chunk
    widths over ``rows`` rows; None: scan instead."""
    plan = _levels(widths, rows, radius, probe_cost) if widths else None
    if plan is None:
        return None
    parts = [
        np.stack((np.full(len(masks), table), masks), axis=1)
        for table, (width, level) in enumerate(zip(widths, plan[0], strict=True))
        if level
        for masks in [_flip_masks(width, level - 1)]
    ]
    return np.concatenate(parts)


def _table_bytes(widths: Sequence[int], rows: int) -> float:
    """Bytes per row of tables with these chunk widths (compact slot arrays)."""
    slots = sum(1 << w for w in widths) * (2 + 4 / _FINE_BLOCK)
    return len(widths) * (3 if rows < _SHORT_ROWS else 4) + slots / rows


def _choose_widths(bits: int, rows: int, table_bytes: float) -> tuple[int, ...]:
    """Chunk widths for a segment of ``rows`` hashes: the cheapest at the design radius whose
    tables take at most ``table_bytes`` per row; () if scanning is cheaper. Chunks of one width
    cover the hash from its first bit; fewer of them than would cover it all cost less memory
    (the bits left out are still compared, just not indexed)."""
    best: tuple[float, tuple[int, ...]] = (math.inf, ())
    for width in range(8, _MAX_CHUNK_BITS + 1):
        if (1 << width) > rows:  # most slots empty: the slot arrays would outweigh postings
            break
        whole = -(-bits // width)
        for count in range(1, whole + 1):
            widths = _split(bits, count) if count == whole else (width,) * count
            if _table_bytes(widths, rows) > table_bytes:
                break
            plan = _levels(widths, rows, _design_radius(bits))
            if plan is not None and plan[1] < best[0]:
                best = (plan[1], widths)
    return best[1]


@cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL(None).malloc_trim  # glibc
    except (OSError, AttributeError):
        return None


def _give_back_freed_memory() -> None:
    """Return the heap's free pages to the system. A build's temporaries of a few MB each
    (under glibc's mmap threshold, which rises to 32 MB once large arrays are freed) end up
    between arrays the index keeps, where glibc would hold on to them: at 10 million PDQ
    hashes a packed build would otherwise leave the process 70 to 330 MB larger than the
    index it made."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def _unary_bytes(width: int, rows: int) -> float:
    """Bytes per row of a unary run over ``width``-bit values and its marks (_PackedSegment)."""
    values = 1 << width
    return (((rows + values) // 64 + 2) * 8 + 4 * (values >> _MARK_SHIFT)) / rows


def _choose_packed(rows: int, budget: float, id_bytes: int) -> tuple[int, ...]:
    """Chunk widths for a packed segment of ``rows`` PDQ hashes in ``budget`` bytes per row,
    the first chunk's (the rows' order) first: the cheapest at the design radius; () if
    none fits or scanning is cheaper."""
    best: tuple[float, tuple[int, ...]] = (math.inf, ())
    stride = 3 if rows < _SHORT_ROWS else 4
    for first in range(8, 25):
        fixed = 24 + -(-(64 - first) // 8) + id_bytes + 1 / 8 + _unary_bytes(first, rows)
        for width in range(8, _MAX_CHUNK_BITS + 1):
            if (1 << width) > rows:
                break
            count = (256 - first) // width
            count = min(count, int((budget - fixed) // (stride + _unary_bytes(width, rows))))
            if count < 0:
                break
            widths = (first,) + (width,) * count
            plan = _levels(widths, rows, _design_radius(256), _UNARY_PROBE_COST)
            if plan is not None and plan[1] < best[0]:
                best = (plan[1], widths)
    return best[1]


def _unary(counts: np.ndarray, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """The marks and unary run of a table whose value k is held by ``counts[k]`` rows (see
    _PackedSegment)."""
    values = len(counts)
    ends = np.cumsum(counts)  # rows holding value k or less
    flags = np.zeros(rows + values, dtype=bool)
    flags[ends + np.arange(values)] = True  # value k's one follows its rows and k earlier ones
    bits = np.zeros(((rows + values) // 64 + 2) * 8, dtype=np.uint8)
    packed = np.packbits(flags, bitorder="little")
    bits[: len(packed)] = packed
    del flags, packed
    step = 1 << _MARK_SHIFT  # where every step-th value's part of the run starts: its rows
    marks = (ends[::step] - counts[::step] + np.arange(0, values, step)).astype(np.uint32)
    return marks, bits.view(np.uint64)


def _chunk_values(hashes: np.ndarray, start: int, width: int) -> np.ndarray:
    """Bits ``[start, start + width)`` of each row (bit 0 is the hex string's first), as in
    _hamming.c."""
    word, offset = divmod(start, 64)
    values = hashes[:, word] << np.uint64(offset)
    if offset + width > 64:
        values |= hashes[:, word + 1] >> np.uint64(64 - offset)
    return values >> np.uint64(64 - width)


def _offsets_fit(ids: np.ndarray) -> bool:
    """Whether sorted ids are offsets of 4 bytes from the first."""
    return bool(len(ids)) and int(ids[-1]) - int(ids[0]) < 1 << 32


def _compact_ids(ids: np.ndarray) -> tuple[int, np.ndarray]:
    """Sorted ids as (base, uint32 offsets) when their range allows, else (0, int64)."""
    if _offsets_fit(ids):
        return int(ids[0]), (ids - ids[0]).astype(np.uint32)
    return 0, ids.astype(np.int64)


_NO_TABLES = np.zeros((0, 5), dtype=np.int64)
_NO_PROBES = np.zeros((0, 2), dtype=np.int64)


class _Rows:
    """What both kinds of segment share: ``n`` rows, ``dead`` of them removed, ids as offsets
    from ``id_base``, tables of chunk ``widths``, and the arrays named in ``_ARRAYS`` (what
    ``save`` writes and ``load`` passes back to the constructor)."""

    _ARRAYS: tuple[str, ...] = ()
    probe_cost = _PROBE_COST
    n: int
    dead: int
    id_base: int
    ids: np.ndarray
    widths: tuple[int, ...]
    _probes: dict[int, np.ndarray | None]

    @property
    def live(self) -> int:
        return self.n - self.dead

    @property
    def nbytes(self) -> int:
        """Bytes of the segment's arrays."""
        return sum(a.nbytes for a in self.arrays().values())

    def ids_of(self, rows: np.ndarray) -> np.ndarray:
        return self.ids[rows].astype(np.int64) + self.id_base

    def probes(self, radius: int) -> np.ndarray | None:
        """(table, XOR mask) of every slot a query probes at ``radius``; None: scan instead."""
        if radius not in self._probes:
            self._probes[radius] = _probe_plan(self.widths, self.n, radius, self.probe_cost)
        return self._probes[radius]

    def arrays(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, name) for name in self._ARRAYS}


class _Segment(_Rows):
    """Hashes sorted by id, with one table per chunk (none for the delta). Immutable except for
    tombstones (``alive``).

    A table lists the rows by chunk value: ``postings`` holds every table's rows (``stride``
    bytes each, little-endian), and a slot array gives where each value's rows start: compact,
    a uint32 in ``coarse`` per _FINE_BLOCK slots plus a uint16 in ``fine`` per slot, or, when
    a table's offsets do not fit 16 bits (values shared by tens of thousands of rows), a plain
    uint32 per slot in ``coarse``. ``tables`` describes each table in a row: first bit, width,
    offset in ``coarse``, offset in ``fine`` (-1: plain) and offset in ``postings`` (bytes)."""

    kind = "plain"
    id_ordered = True  # rows are in id order
    _ARRAYS = ("hashes", "ids", "alive", "tables", "coarse", "fine", "postings")

    def __init__(
        self,
        hashes: np.ndarray,
        ids: np.ndarray,
        alive: np.ndarray,
        tables: np.ndarray,
        coarse: np.ndarray,
        fine: np.ndarray,
        postings: np.ndarray,
        *,
        id_base: int = 0,
    ) -> None:
        self.hashes, self.ids, self.alive = hashes, ids, alive
        self.tables, self.coarse, self.fine, self.postings = tables, coarse, fine, postings
        self.id_base = id_base
        self.n = len(ids)
        self.words = hashes.shape[1]
        self.stride = len(postings) // (len(tables) * self.n) if len(tables) and self.n else 3
        self.widths = tuple(int(w) for w in tables[:, 1])
        self.dead = self.n - int(np.count_nonzero(alive))
        self.limit = int(self.n * _BRUTE_SHARE)
        self._probes: dict[int, np.ndarray | None] = {}
        if not (
            hashes.dtype == np.uint64
            and ids.dtype in (np.uint32, np.int64)
            and alive.dtype == bool
            and tables.dtype == np.int64
            and tables.ndim == 2
            and tables.shape[1] == 5
            and coarse.dtype == np.uint32
            and fine.dtype == np.uint16
            and postings.dtype == np.uint8
            and len(hashes) == len(alive) == self.n
            and self.stride in (3, 4)
            and len(postings) == len(tables) * self.n * self.stride
            and (not len(tables) or (tables[:, 0] == np.cumsum([0, *self.widths[:-1]])).all())
        ):
            raise IndexFileError("The index's arrays do not fit together (a damaged file?).")

    @classmethod
    def build(
        cls, bits: int, hashes: np.ndarray, ids: np.ndarray, *, table_bytes: float = 0.0
    ) -> Self:
        """A segment of these rows (ids sorted and unique), with the tables that pay off at this
        size within ``table_bytes`` per row (none: a scanned segment)."""
        n = len(ids)
        widths = _choose_widths(bits, n, table_bytes) if table_bytes else ()
        stride = 3 if n < _SHORT_ROWS else 4
        postings = np.empty(len(widths) * n * stride, dtype=np.uint8)
        tables = np.zeros((len(widths), 5), dtype=np.int64)
        # Filled in place: temporaries under glibc's mmap threshold would stay in the heap.
        fine = np.empty(sum((1 << w) + 1 for w in widths), dtype=np.uint16)
        coarse_parts, coarse_at, fine_at = [], 0, 0
        first_bits = np.cumsum((0, *widths))[:-1]
        for table, (start, width) in enumerate(zip(first_bits, widths, strict=True)):
            keys = _chunk_values(hashes, int(start), width)
            # Sorting (key, row) packed in one word is several times faster than an argsort
            # (NumPy sorts 64-bit integers with SIMD), and keeps each slot's rows ascending.
            packed = (keys << np.uint64(32)) | np.arange(n, dtype=np.uint64)
            packed.sort()
            at = table * n * stride
            rows = packed.view(np.uint8).reshape(n, 8)[:, :stride]  # little-endian low bytes
            postings[at : at + n * stride].reshape(n, stride)[:] = rows
            del packed, rows
            slots = np.zeros((1 << width) + 1, dtype=np.int64)
            np.cumsum(np.bincount(keys.view(np.int64), minlength=1 << width), out=slots[1:])
            del keys
            blocks = slots[::_FINE_BLOCK].copy()
            slots -= np.repeat(blocks, _FINE_BLOCK)[: len(slots)]
            if int(slots.max()) < _FINE_LIMIT:
                tables[table] = (start, width, coarse_at, fine_at, at)
                coarse_parts.append(blocks.astype(np.uint32))
                fine[fine_at : fine_at + len(slots)] = slots
                fine_at += len(slots)
            else:  # a hot value: this table's slot array stays plain
                tables[table] = (start, width, coarse_at, -1, at)
                slots += np.repeat(blocks, _FINE_BLOCK)[: len(slots)]
                coarse_parts.append(slots.astype(np.uint32))
            coarse_at += len(coarse_parts[-1])
        coarse = np.concatenate([np.zeros(0, np.uint32), *coarse_parts])
        if fine_at < len(fine):
            fine = fine[:fine_at].copy()
        id_base, ids_ = _compact_ids(ids)
        alive = np.ones(n, dtype=bool)
        return cls(hashes, ids_, alive, tables, coarse, fine, postings, id_base=id_base)

    def rows_of(self, ids: np.ndarray) -> np.ndarray:
        """The live rows holding ``ids`` (those not here are skipped)."""
        if not self.n:
            return np.zeros(0, dtype=np.int64)
        low, high = self.id_base, self.id_base + int(self.ids[-1])
        offsets = ids[(ids >= low) & (ids <= high)] - low  # (no overflow within the range)
        offsets = offsets.astype(self.ids.dtype)
        rows = np.minimum(np.searchsorted(self.ids, offsets), self.n - 1)
        return rows[(self.ids[rows] == offsets) & self.alive[rows]]

    def kill(self, ids: np.ndarray) -> None:
        rows = self.rows_of(ids)
        self.alive[rows] = False
        self.dead += len(rows)

    def live_rows(self) -> tuple[np.ndarray, np.ndarray]:
        """(hashes, ids) of the live rows."""
        if not self.dead:
            return self.hashes, self.ids_of(slice(None))
        return self.hashes[self.alive], self.ids_of(self.alive)

    def search(self, queries: np.ndarray, radius: int) -> np.ndarray:
        """Every live row within ``radius`` of one of the ``queries`` (at most _BATCH_QUERIES),
        packed as query number << 41 | distance << 32 | row, sorted (see _hamming.c)."""
        probes = self.probes(radius)
        tables = self.tables if probes is not None else _NO_TABLES
        found = _hamming.search(
            self.hashes,
            self.alive,
            self.words,
            self.stride,
            tables,
            self.coarse,
            self.fine,
            self.postings,
            probes if probes is not None else _NO_PROBES,
            queries,
            radius,
            self.limit,
        )
        return np.frombuffer(found, dtype=np.uint64)


class _PackedSegment(_Rows):
    """A memory-capped segment of PDQ hashes (``HammingIndex(memory=...)``): rows in the order
    of their first chunk's value, which is therefore not stored, tables with unary runs for
    slot arrays, one tombstone bit per row. Immutable except for tombstones.

    A row's bits are in two arrays: ``quick``, words 1 and 2 (16 bytes, little-endian), which a
    candidate is checked against first, in one cache line (at radius 31 they rule out nearly
    every candidate), and ``rest``, the bits of word 0 after the first chunk (``low`` bytes,
    little-endian), then word 3. A table's run has, for each chunk value in turn, a 0 bit per
    row holding it, then a 1; ``marks`` has a uint32 per 32 values: where value 32j's part of
    the run starts. Table 0's rows are the rows themselves; the others have postings,
    ``stride`` bytes each. ``tables`` rows: first bit, width, offset in ``marks``, offset in
    ``bits`` (words), words, offset in ``postings`` (bytes; -1 for table 0). The ids are in row
    order, so finding rows by id is a pass over them (7 ms for one id at 10 million rows):
    remove in batches."""

    kind = "packed"
    id_ordered = False
    words = 4
    probe_cost = _UNARY_PROBE_COST
    _ARRAYS = ("quick", "rest", "ids", "alive", "tables", "marks", "bits", "postings")

    def __init__(
        self,
        quick: np.ndarray,
        rest: np.ndarray,
        ids: np.ndarray,
        alive: np.ndarray,
        tables: np.ndarray,
        marks: np.ndarray,
        bits: np.ndarray,
        postings: np.ndarray,
        *,
        id_base: int = 0,
    ) -> None:
        self.quick, self.rest, self.ids, self.alive = quick, rest, ids, alive
        self.tables, self.marks, self.bits, self.postings = tables, marks, bits, postings
        self.id_base = id_base
        self.n = len(ids)
        self.low = rest.shape[1] - 8 if rest.ndim == 2 else 0
        self.widths = tuple(int(w) for w in tables[:, 1]) if tables.ndim == 2 else ()
        postings_tables = len(self.widths) - 1
        self.stride = len(postings) // (postings_tables * self.n) if postings_tables > 0 else 3
        self.limit = int(self.n * _BRUTE_SHARE)
        self._probes: dict[int, np.ndarray | None] = {}
        if not (
            quick.dtype == rest.dtype == np.uint8
            and quick.shape == (self.n, 16)
            and rest.ndim == 2
            and 1 <= self.low <= 8
            and len(rest) == self.n
            and ids.dtype in (np.uint32, np.int64)
            and alive.dtype == np.uint8
            and len(alive) == -(-self.n // 8)
            and tables.dtype == np.int64
            and tables.ndim == 2
            and tables.shape[1] == 6
            and len(tables) >= 1
            and marks.dtype == np.uint32
            and bits.dtype == np.uint64
            and postings.dtype == np.uint8
            and self.stride in (3, 4)
            and len(postings) == postings_tables * self.n * self.stride
            and (tables[:, 0] == np.cumsum([0, *self.widths[:-1]])).all()
            and 64 - self.widths[0] <= 8 * self.low
            and all(self._run_fits(*(int(v) for v in table)) for table in tables)
        ):
            raise IndexFileError("The index's arrays do not fit together (a damaged file?).")
        self.dead = self.n - int(np.count_nonzero(self._living()))
        self._id_top = int(ids.max()) if self.n else 0

    def _living(self) -> np.ndarray:
        """Whether each row is live (its tombstone bit), as booleans."""
        return np.unpackbits(self.alive, bitorder="little")[: self.n].view(bool)

    def _run_fits(self, start: int, width: int, marks_at: int, bits_at: int, words: int, _) -> bool:
        """Whether a table's run holds one 1 per value (a few milliseconds at 10 million rows;
        _hamming.c checks the rest of what it reads as it goes)."""
        run = self.bits[bits_at : bits_at + words]
        if not (8 <= width <= 32 and len(run) == words == (self.n + (1 << width)) // 64 + 2):
            return False
        return int(np.bitwise_count(run).sum(dtype=np.int64)) == 1 << width

    @classmethod
    def build(cls, hashes: np.ndarray, ids: np.ndarray, widths: Sequence[int]) -> Self:
        """A segment of these rows (ids sorted and unique) with tables of these widths."""
        segment = cls(**cls._arrays_of(hashes, ids, widths))
        _give_back_freed_memory()  # (the temporaries are gone once _arrays_of returns)
        return segment

    @staticmethod
    def _arrays_of(hashes: np.ndarray, ids: np.ndarray, widths: Sequence[int]) -> dict:
        n, first = len(ids), widths[0]
        keys = _chunk_values(hashes, 0, first)
        first_counts = np.bincount(keys.view(np.int64), minlength=1 << first)
        packed = (keys << np.uint64(32)) | np.arange(n, dtype=np.uint64)
        del keys
        packed.sort()
        order = (packed & np.uint64(0xFFFFFFFF)).astype(np.int64)
        del packed
        low = -(-(64 - first) // 8)
        quick = np.empty((n, 16), dtype=np.uint8)
        rest = np.empty((n, low + 8), dtype=np.uint8)
        mask = np.uint64((1 << (64 - first)) - 1)
        for at in range(0, n, 1 << 20):  # in parts: no second copy of all the hashes
            part = hashes[order[at : at + (1 << 20)]]
            quick[at : at + len(part)] = part[:, 1:3].astype("<u8").view(np.uint8)
            heads = (part[:, 0] & mask).astype("<u8").view(np.uint8).reshape(-1, 8)
            rest[at : at + len(part), :low] = heads[:, :low]
            rest[at : at + len(part), low:] = part[:, 3:].astype("<u8").view(np.uint8)
        stride = 3 if n < _SHORT_ROWS else 4
        tables = np.zeros((len(widths), 6), dtype=np.int64)
        postings = np.empty((len(widths) - 1) * n * stride, dtype=np.uint8)
        marks_parts, bits_parts, marks_at, bits_at = [], [], 0, 0
        start = 0
        for table, width in enumerate(widths):
            counts, post_at = first_counts, -1  # table 0: the rows' own order, no postings
            if table:
                keys = _chunk_values(hashes, start, width)[order]
                counts = np.bincount(keys.view(np.int64), minlength=1 << width)
                post_at = (table - 1) * n * stride
                packed = (keys << np.uint64(32)) | np.arange(n, dtype=np.uint64)
                del keys
                packed.sort()
                rows = packed.view(np.uint8).reshape(n, 8)[:, :stride]
                postings[post_at : post_at + n * stride].reshape(n, stride)[:] = rows
                del packed, rows
            marks, bits = _unary(counts, n)
            tables[table] = (start, width, marks_at, bits_at, len(bits), post_at)
            marks_parts.append(marks)
            bits_parts.append(bits)
            marks_at += len(marks)
            bits_at += len(bits)
            start += width
        id_base, ids_ = _compact_ids(ids)
        ids_ = ids_[order]
        alive = np.full(-(-n // 8), 0xFF, dtype=np.uint8)
        if n % 8:
            alive[-1] = (1 << (n % 8)) - 1
        return {
            "quick": quick,
            "rest": rest,
            "ids": ids_,
            "alive": alive,
            "tables": tables,
            "marks": np.concatenate(marks_parts),
            "bits": np.concatenate(bits_parts),
            "postings": postings,
            "id_base": id_base,
        }

    def rows_of(self, ids: np.ndarray) -> np.ndarray:
        """The live rows holding ``ids`` (sorted, unique; those not here are skipped): a pass
        over the ids (at 10 million rows, 7 ms for one id, 0.2 s for thousands)."""
        if not self.n:
            return np.zeros(0, dtype=np.int64)
        wanted = ids[(ids >= self.id_base) & (ids <= self.id_base + self._id_top)]
        wanted = (wanted - self.id_base).astype(self.ids.dtype)
        if not len(wanted):
            return np.zeros(0, dtype=np.int64)
        if len(wanted) <= 8:
            hit = self.ids == wanted[0]
            for offset in wanted[1:]:
                hit |= self.ids == offset
        else:
            low, span = wanted[0], int(wanted[-1] - wanted[0]) + 1
            if span <= 4 * self.n:  # a table of the wanted offsets
                table = np.zeros(span, dtype=bool)
                table[wanted - low] = True
                hit = (self.ids >= low) & (self.ids <= wanted[-1])
                hit[hit] = table[self.ids[hit] - low]
            else:
                at = np.minimum(np.searchsorted(wanted, self.ids), len(wanted) - 1)
                hit = wanted[at] == self.ids
        rows = np.flatnonzero(hit)  # (their tombstone bits only: unpacking all costs 6 ms)
        return rows[((self.alive[rows >> 3] >> (rows & 7).astype(np.uint8)) & 1).astype(bool)]

    def kill(self, ids: np.ndarray) -> None:
        rows = self.rows_of(ids)
        np.bitwise_and.at(self.alive, rows >> 3, ~(np.uint8(1) << (rows & 7).astype(np.uint8)))
        self.dead += len(rows)

    def live_rows(self) -> tuple[np.ndarray, np.ndarray]:
        """(hashes, ids) of the live rows, by id."""
        first = self.widths[0]
        start, width, _, bits_at, words, _ = (int(v) for v in self.tables[0])
        run = self.bits[bits_at : bits_at + words].view(np.uint8)
        ones = np.flatnonzero(np.unpackbits(run, bitorder="little")[: self.n + (1 << first)])
        counts = np.diff(ones, prepend=-1) - 1
        hashes = np.empty((self.n, 4), dtype=np.uint64)
        heads = np.zeros((self.n, 8), dtype=np.uint8)
        heads[:, : self.low] = self.rest[:, : self.low]
        hashes[:, 0] = heads.view("<u8")[:, 0] & np.uint64((1 << (64 - first)) - 1)
        del heads
        hashes[:, 0] |= np.repeat(np.arange(1 << first, dtype=np.uint64), counts) << np.uint64(
            64 - first
        )
        hashes[:, 1:3] = self.quick.view("<u8")
        hashes[:, 3] = self.rest[:, self.low :].copy().view("<u8")[:, 0]
        alive = self._living()
        ids = self.ids_of(alive)
        order = np.argsort(ids, kind="stable")
        return hashes[alive][order], ids[order]

    def search(self, queries: np.ndarray, radius: int) -> np.ndarray:
        """As _Segment.search; rows are not in id order here."""
        probes = self.probes(radius)
        found = _hamming.search_packed(
            self.quick,
            self.rest,
            self.low,
            self.alive,
            self.stride,
            self.tables,
            self.marks,
            self.bits,
            self.postings,
            probes if probes is not None else _NO_PROBES,
            queries,
            radius,
            self.limit,
        )
        return np.frombuffer(found, dtype=np.uint64)


class HammingIndex:
    """An exact radius index of fixed-width hex hashes, keyed by integer ids.

    ``memory`` caps the index at about that many times the raw bytes of its hashes (for PDQ, 2
    keeps 10 million hashes under 640 MB, the packed layout, at 70 to 100% of the default's
    speed, but removing ids costs a pass over them; see the module docstring); None (the
    default) gives the fastest layout.

    >>> index = HammingIndex(bits=64)
    >>> index.add([1, 2], ["ffffffffffffffff", "0000000000000000"])
    >>> index.query("fffffffffffffff0", radius=8)
    [(1, 4)]
    """

    def __init__(self, bits: int = 256, *, memory: float | None = None) -> None:
        if bits not in (64, 256):
            raise ValueError("bits is 64 (pHash) or 256 (PDQ)")
        if memory is not None and not memory >= 1:
            raise ValueError("memory is a multiple of the hashes' own bytes, at least 1")
        self.bits = bits
        self.words = bits // 64
        self.memory = memory
        # Bytes per hash left for tables: the hash itself, a 4-byte id and a tombstone come first.
        self._table_bytes = math.inf if memory is None else (memory - 1) * bits / 8 - 5
        self._segments: tuple[_Segment | _PackedSegment, ...] = ()  # oldest (largest) first
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
            hashes, present = delta.live_rows()
            ids_, rows = np.concatenate((present, ids_)), np.concatenate((hashes, rows))
            order = np.argsort(ids_, kind="stable")
            ids_, rows = ids_[order], rows[order]
        if len(ids_) <= _DELTA_ROWS:
            self._delta = self._flat(rows, ids_)
            return
        segment = self._indexed(rows, ids_)
        # (Not rows[:0]: a view would keep all of rows alive, which a packed segment copied.)
        self._delta = self._flat(np.zeros((0, self.words), np.uint64), np.zeros(0, np.int64))
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
        radius = min(radius, self.bits)
        segments = [s for s in (*self._segments, self._delta) if s.n]  # one consistent view
        answers = []
        for first in range(0, len(queries), _BATCH_QUERIES):
            batch = queries[first : first + _BATCH_QUERIES]
            parts = []
            in_order = True  # one part, sorted by id within each distance
            for segment in segments:
                packed = segment.search(batch, radius)
                if len(packed):
                    rows = packed & np.uint64(0xFFFFFFFF)
                    distances = (packed >> np.uint64(32)) & np.uint64(0x1FF)
                    parts.append((packed >> np.uint64(41), segment.ids_of(rows), distances))
                    in_order = in_order and segment.id_ordered
            if not parts:
                answers += [[] for _ in range(len(batch))]
                continue
            numbers, ids, distances = parts[0]
            if len(parts) > 1 or not in_order:  # an id is in one segment only
                numbers, ids, distances = (np.concatenate(p) for p in zip(*parts, strict=True))
                order = np.lexsort((ids, distances, numbers))
                numbers, ids, distances = numbers[order], ids[order], distances[order]
            pairs = list(zip(ids.tolist(), distances.tolist(), strict=True))
            if len(batch) == 1:
                answers.append(pairs)
                continue
            bounds = np.searchsorted(numbers, np.arange(len(batch) + 1)).tolist()
            answers += [pairs[bounds[i] : bounds[i + 1]] for i in range(len(batch))]
        return answers

    def save(self, path: str | Path) -> None:
        """Write the index to ``path`` (one file, replaced atomically) for ``load``."""
        path = Path(path)
        segments = [*self._segments, self._delta]
        header: dict = {"bits": self.bits, "memory": self.memory, "segments": []}
        arrays, offset = [], 0
        for segment in segments:
            described: dict = {"kind": segment.kind, "id_base": segment.id_base, "arrays": {}}
            for name, array in segment.arrays().items():
                array = np.ascontiguousarray(array)
                described["arrays"][name] = [offset, array.dtype.str, list(array.shape)]
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
        Changes made afterwards stay in this process; the file is never written. Raises
        IndexFileError if the file is not an index of this version of tidkit (``stale`` if an
        older one wrote it: build it again from the hashes)."""
        with open(path, "rb") as fh:
            magic = fh.read(len(_MAGIC))
            if magic in _OLD_MAGICS:
                raise IndexFileError(
                    f"{path} was written by an older tidkit: build the index again.", stale=True
                )
            if magic != _MAGIC:
                raise IndexFileError(f"{path} is not a tidkit index file")
            encoded = fh.read(int.from_bytes(fh.read(8), "little"))
            try:
                header = json.loads(encoded)
                bits, memory, described = header["bits"], header["memory"], header["segments"]
            except (ValueError, KeyError, TypeError):
                raise IndexFileError(f"{path} is not a tidkit index file") from None
            # ACCESS_COPY: tombstones written later go to private pages, never to the file.
            mapped = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_COPY)
        base = -(-(len(_MAGIC) + 8 + len(encoded)) // _ALIGN) * _ALIGN
        index = cls(bits=bits, memory=memory)

        def array(offset: int, dtype: str, shape: list[int]) -> np.ndarray:
            count = math.prod(shape)
            try:
                data = np.frombuffer(mapped, dtype=dtype, count=count, offset=base + offset)
            except ValueError:
                raise IndexFileError(f"{path} is cut short") from None
            return data.reshape(shape)

        def segment(described: dict) -> _Segment | _PackedSegment:
            kinds = {kind.kind: kind for kind in (_Segment, _PackedSegment)}
            try:
                kind, specs = kinds[described["kind"]], described["arrays"]
                arrays = {name: array(*spec) for name, spec in specs.items()}
                for name, data in arrays.items():
                    data.flags.writeable = name == "alive"  # only tombstones change in place
                return kind(**arrays, id_base=described["id_base"])
            except (KeyError, TypeError):
                raise IndexFileError(f"{path} is not a tidkit index file") from None

        segments = [segment(part) for part in described]
        index._segments, index._delta = tuple(segments[:-1]), segments[-1]
        return index

    def _flat(self, hashes: np.ndarray, ids: np.ndarray) -> _Segment:
        return _Segment.build(self.bits, hashes, ids)

    def _indexed(self, hashes: np.ndarray, ids: np.ndarray) -> _Segment | _PackedSegment:
        if self.memory is not None and self.bits == 256 and len(ids) >= _PACKED_FROM:
            id_bytes = 4 if _offsets_fit(ids) else 8
            widths = _choose_packed(len(ids), self.memory * 32 - 1e-3, id_bytes)
            if widths:
                return _PackedSegment.build(hashes, ids, widths)
        return _Segment.build(self.bits, hashes, ids, table_bytes=self._table_bytes)

    def _discard(self, ids: np.ndarray) -> None:
        """Remove ``ids`` (sorted, unique) wherever they are."""
        for segment in self._segments:
            segment.kill(ids)
        delta = self._delta
        if len(delta.rows_of(ids)):
            hashes, present = delta.live_rows()
            keep = ~np.isin(present, ids)
            self._delta = self._flat(hashes[keep], present[keep])

    def _rebalance(self, segments: list[_Segment]) -> tuple[_Segment, ...]:
        """Rebuild segments that are a quarter dead; merge any segment larger than a quarter of
        the one before it into it. Sizes then fall at least fourfold from one segment to the next
        (few segments), and a hash is re-indexed a logarithmic number of times."""
        for i, segment in enumerate(segments):
            if segment.dead > segment.n * _DEAD_SHARE:
                segments[i] = self._indexed(*segment.live_rows())
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
                segments[i - 1 : i + 1] = [self._indexed(hashes, ids_[order])]
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
