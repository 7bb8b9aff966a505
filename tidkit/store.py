"""The local copy of a hash list and matching against it (DESIGN.md section 3).

``LocalList`` holds a list's active entries as the feed and snapshots describe them, an MD5
lookup, and ``tidkit.index.HammingIndex`` indexes for PDQ and pHash keyed by small integers
("numbers") that map back to the entries' public ids. ``match(hashes)`` takes what
``tidkit.hashing`` returns for a file and answers with every entry it matches under the service's
rules: MD5 exact, PDQ within 31 bits, pHash within 8, and vPDQ when at least 80% of the listed
video's usable frames are matched.

Scale. A list is kept as columns of NumPy arrays (``save`` writes them as ``.npy`` files, ``load``
maps them into memory read-only), not as a Python object per entry: a list of ten million
entries opens in about the time it takes to map its files, and costs little memory beyond the
pages that lookups touch. Lookups by id and by MD5 are binary searches over sorted copies of the
keys. Changes since the files were written (the feed) live in small dictionaries beside them,
and removed rows are marked dead, until the next ``save`` folds everything into new files.

How the list is kept in step with the server is tidkit.sync's business.
"""

import array
import json
import os
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tidkit import formats
from tidkit.errors import HashFormatError, TidkitError
from tidkit.index import HammingIndex, IndexFileError

__all__ = ["Entry", "ListDataError", "LocalList", "Match"]

HASH_TYPES = (formats.MD5, formats.PDQ, formats.PHASH, formats.VPDQ)
MEDIA_TYPES = ("image", "video")
KIND = {hash_type: code for code, hash_type in enumerate(HASH_TYPES)}
MEDIA = {media_type: code for code, media_type in enumerate(MEDIA_TYPES)}
VALUE_BYTES = {formats.MD5: 16, formats.PDQ: 32, formats.PHASH: 8, formats.VPDQ: 32}
INDEX_FILES = {formats.PDQ: "pdq.index", formats.PHASH: "phash.index"}
FRAMES_FILE = "frames.jsonl"
_COLUMNS = ("numbers", "uuids", "kinds", "media", "quality", "values", "uuid_order", "md5_rows")
_NO_QUALITY = -1
_INDEX_BATCH = 100_000


class ListDataError(TidkitError):
    """An entry from the server (feed or snapshot) is not in the shape the protocol promises."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One active entry of a list, as the feed and snapshots carry it."""

    id: str
    hash_type: str
    value: str
    media_type: str
    quality: int | None
    frames: tuple[Mapping[str, Any], ...] | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Entry":
        """Validate an entry (a snapshot line or a feed ``add``); raise ListDataError if any
        field is not canonical."""
        try:
            entry_id = str(uuid.UUID(str(data["id"])))
            hash_type = data["hash_type"]
            if hash_type not in HASH_TYPES:
                raise ListDataError(f"unknown hash type {hash_type!r}")
            value = data["value"]
            # A vPDQ entry's value is the SHA-256 of its frame list (64 hex, like a PDQ).
            formats.validate_hex(value, formats.PDQ if hash_type == formats.VPDQ else hash_type)
            media_type = data["media_type"]
            if media_type not in MEDIA_TYPES:
                raise ListDataError(f"unknown media type {media_type!r}")
            quality = data.get("quality")
            if quality is not None:
                formats.validate_quality(quality)
            frames = None
            if hash_type == formats.VPDQ:
                frames = tuple(formats.validate_vpdq(data.get("frames")))
        except (KeyError, TypeError) as exc:
            raise ListDataError(f"entry {data!r:.200}: missing or malformed {exc}") from None
        except (HashFormatError, ValueError) as exc:
            raise ListDataError(f"entry {data.get('id')!r}: {exc}") from None
        return cls(entry_id, hash_type, value, media_type, quality, frames)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.id,
            "hash_type": self.hash_type,
            "value": self.value,
            "media_type": self.media_type,
            "quality": self.quality,
        }
        if self.frames is not None:
            data["frames"] = [dict(f) for f in self.frames]
        return data


@dataclass(frozen=True, slots=True)
class Match:
    """A file matched ``entry_id`` through ``hash_type`` at ``distance`` bits (0 for MD5).

    For vPDQ, ``distance`` is the worst frame distance among the listed frames that were
    matched (at most 31) and the two percentages say how much of each video matched.
    """

    entry_id: str
    hash_type: str
    distance: int
    listed_match_percent: float | None = None
    query_match_percent: float | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "entry_id": self.entry_id,
            "hash_type": self.hash_type,
            "distance": self.distance,
        }
        if self.hash_type == formats.VPDQ:
            data["listed_match_percent"] = round(self.listed_match_percent or 0.0, 2)
            data["query_match_percent"] = round(self.query_match_percent or 0.0, 2)
        return data


@dataclass
class _Columns:
    """Entries as arrays, one row each, rows in ascending number order.

    ``uuids`` holds each id as two big-endian 64-bit halves; ``uuid_order`` sorts the rows by
    id and ``md5_rows`` the MD5 rows by value, for binary search. ``frames`` holds the frame
    lists of vPDQ rows, by number (videos are few).
    """

    numbers: np.ndarray  # int64 (n,)
    uuids: np.ndarray  # uint64 (n, 2)
    kinds: np.ndarray  # uint8 (n,)
    media: np.ndarray  # uint8 (n,)
    quality: np.ndarray  # int16 (n,), -1 for none
    values: np.ndarray  # uint8 (n, 32), the value's bytes, zero-padded
    uuid_order: np.ndarray  # int64 (n,)
    md5_rows: np.ndarray  # int64 (number of md5 rows,)
    frames: dict[int, tuple[Mapping[str, Any], ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.uuid_hi = np.ascontiguousarray(self.uuids[self.uuid_order, 0])
        md5 = self.values[self.md5_rows, :16]
        self.md5_hi = _words(md5)[:, 0].copy() if len(self.md5_rows) else np.zeros(0, np.uint64)

    def __len__(self) -> int:
        return len(self.numbers)

    @classmethod
    def empty(cls) -> "_Columns":
        return cls(
            numbers=np.zeros(0, np.int64),
            uuids=np.zeros((0, 2), np.uint64),
            kinds=np.zeros(0, np.uint8),
            media=np.zeros(0, np.uint8),
            quality=np.zeros(0, np.int16),
            values=np.zeros((0, 32), np.uint8),
            uuid_order=np.zeros(0, np.int64),
            md5_rows=np.zeros(0, np.int64),
        )

    def row_of_id(self, entry_id: str) -> int | None:
        hi, lo = _uuid_words(entry_id)
        start = int(np.searchsorted(self.uuid_hi, np.uint64(hi), "left"))
        end = int(np.searchsorted(self.uuid_hi, np.uint64(hi), "right"))
        for position in range(start, end):
            row = int(self.uuid_order[position])
            if int(self.uuids[row, 1]) == lo:
                return row
        return None

    def rows_of_md5(self, value: str) -> Iterator[int]:
        raw = bytes.fromhex(value)
        hi = int.from_bytes(raw[:8], "big")
        start = int(np.searchsorted(self.md5_hi, np.uint64(hi), "left"))
        end = int(np.searchsorted(self.md5_hi, np.uint64(hi), "right"))
        for position in range(start, end):
            row = int(self.md5_rows[position])
            if self.values[row, :16].tobytes() == raw:
                yield row

    def row_of_number(self, number: int) -> int | None:
        row = int(np.searchsorted(self.numbers, number))
        return row if row < len(self.numbers) and int(self.numbers[row]) == number else None

    def entry_id(self, row: int) -> str:
        return str(uuid.UUID(int=(int(self.uuids[row, 0]) << 64) | int(self.uuids[row, 1])))

    def entry(self, row: int) -> Entry:
        hash_type = HASH_TYPES[self.kinds[row]]
        quality = int(self.quality[row])
        return Entry(
            self.entry_id(row),
            hash_type,
            self.values[row, : VALUE_BYTES[hash_type]].tobytes().hex(),
            MEDIA_TYPES[self.media[row]],
            None if quality == _NO_QUALITY else quality,
            self.frames.get(int(self.numbers[row])),
        )


class _ColumnBuilder:
    """Accumulates entries compactly (bytes, not objects) and turns them into _Columns."""

    def __init__(self) -> None:
        self.numbers = array.array("q")
        self.uuids = bytearray()
        self.kinds = bytearray()
        self.media = bytearray()
        self.quality = array.array("h")
        self.values = bytearray()
        self.frames: dict[int, tuple[Mapping[str, Any], ...]] = {}

    def append(self, entry: Entry, number: int) -> None:
        self.numbers.append(number)
        self.uuids += uuid.UUID(entry.id).bytes
        self.kinds.append(KIND[entry.hash_type])
        self.media.append(MEDIA[entry.media_type])
        self.quality.append(_NO_QUALITY if entry.quality is None else entry.quality)
        self.values += bytes.fromhex(entry.value).ljust(32, b"\0")
        if entry.frames is not None:
            self.frames[number] = entry.frames

    def columns(self) -> _Columns:
        n = len(self.numbers)
        return _columns(
            numbers=np.frombuffer(self.numbers, dtype=np.int64),
            uuids=_words(np.frombuffer(bytes(self.uuids), np.uint8).reshape(n, 16)),
            kinds=np.frombuffer(bytes(self.kinds), np.uint8),
            media=np.frombuffer(bytes(self.media), np.uint8),
            quality=np.frombuffer(self.quality, dtype=np.int16),
            values=np.frombuffer(bytes(self.values), np.uint8).reshape(n, 32),
            frames=self.frames,
        )


@dataclass
class _VideoFrames:
    """Every usable frame of every listed video in one index, for finding candidate videos."""

    index: HammingIndex
    entry_of: list[str] = field(default_factory=list)


class LocalList:
    """A list's active entries with the lookups that matching needs.

    Adding an entry that is already present keeps its number; removing one that is absent does
    nothing. Both are therefore harmless to repeat. ``memory`` caps the PDQ index at that many
    times the raw bytes of its hashes (``HammingIndex(memory=...)``: 2 keeps ten million under
    640 MB, at some cost in speed and in removals); the pHash index, four times smaller, is
    never capped (capped, it would scan).
    """

    def __init__(self, *, next_number: int = 1, memory: float | None = None) -> None:
        self._base = _Columns.empty()  # as last saved (or loaded)
        self._dead = np.zeros(0, dtype=bool)  # base rows removed since
        self._base_alive = 0
        self._base_counts = dict.fromkeys(HASH_TYPES, 0)
        self._extra: dict[str, Entry] = {}  # added since
        self._extra_number: dict[str, int] = {}
        self._extra_entry_of: dict[int, str] = {}
        self._extra_md5: dict[str, str] = {}
        self._indexes = {
            formats.PDQ: HammingIndex(bits=256, memory=memory),
            formats.PHASH: HammingIndex(bits=64),
        }
        self._videos: _VideoFrames | None = None
        self.next_number = next_number

    @property
    def memory(self) -> float | None:
        """The PDQ index's memory cap (None: the fastest layout)."""
        return self._indexes[formats.PDQ].memory

    def __len__(self) -> int:
        return self._base_alive + len(self._extra)

    def __contains__(self, entry_id: object) -> bool:
        return isinstance(entry_id, str) and self.get(entry_id) is not None

    def get(self, entry_id: str) -> Entry | None:
        if entry_id in self._extra:
            return self._extra[entry_id]
        row = self._alive_base_row(entry_id)
        return None if row is None else self._base.entry(row)

    def number_of(self, entry_id: str) -> int | None:
        if entry_id in self._extra_number:
            return self._extra_number[entry_id]
        row = self._alive_base_row(entry_id)
        return None if row is None else int(self._base.numbers[row])

    def entries(self) -> Iterator[Entry]:
        """Every entry, those loaded first (in number order), then those added since."""
        for row in np.flatnonzero(~self._dead):
            yield self._base.entry(int(row))
        yield from self._extra.values()

    def counts(self) -> dict[str, int]:
        counts = dict(self._base_counts)
        for entry in self._extra.values():
            counts[entry.hash_type] += 1
        counts["total"] = len(self)
        return counts

    # -- changes -----------------------------------------------------------------------------

    def add(self, entry: Entry, number: int | None = None) -> int:
        """Put ``entry`` in the list and return its number (kept if the entry was present with
        the same values; ``number`` replays a saved one)."""
        self.add_many([entry], None if number is None else [number])
        return self._number_of_present(entry.id)

    def add_many(self, entries: Sequence[Entry], numbers: Sequence[int] | None = None) -> None:
        """Add entries in bulk (one index call per hash type)."""
        if numbers is not None and len(numbers) != len(entries):
            raise ValueError("entries and numbers differ in length")
        # A number appears once in a batch (the last value wins).
        batches: dict[str, dict[int, str]] = {t: {} for t in self._indexes}

        def flush() -> None:
            for hash_type, batch in batches.items():
                if batch:
                    self._indexes[hash_type].add(list(batch), list(batch.values()))
                    batch.clear()

        for position, entry in enumerate(entries):
            present = self.get(entry.id)
            if present == entry:
                continue
            if present is not None:
                flush()  # the old value must be in its index before it is taken out
                self.remove(entry.id)
            number = numbers[position] if numbers is not None else self.next_number
            self.next_number = max(self.next_number, number + 1)
            self._extra[entry.id] = entry
            self._extra_number[entry.id] = number
            self._extra_entry_of[number] = entry.id
            if entry.hash_type == formats.MD5:
                self._extra_md5[entry.value] = entry.id
            elif entry.hash_type in batches:
                batches[entry.hash_type][number] = entry.value
            else:
                self._videos = None
        flush()

    def remove(self, entry_id: str) -> bool:
        """Drop an entry; return whether it was present."""
        entry = self._extra.pop(entry_id, None)
        if entry is not None:
            hash_type = entry.hash_type
            number = self._extra_number.pop(entry_id)
            del self._extra_entry_of[number]
            if hash_type == formats.MD5 and self._extra_md5.get(entry.value) == entry_id:
                del self._extra_md5[entry.value]
        else:
            row = self._alive_base_row(entry_id)
            if row is None:
                return False
            self._dead[row] = True
            self._base_alive -= 1
            hash_type = HASH_TYPES[self._base.kinds[row]]
            self._base_counts[hash_type] -= 1
            number = int(self._base.numbers[row])
        if hash_type in self._indexes:
            self._indexes[hash_type].remove([number])
        elif hash_type == formats.VPDQ:
            self._videos = None
        return True

    # -- matching ----------------------------------------------------------------------------

    def match(
        self,
        hashes: Mapping[str, Any],
        *,
        pdq_distance: int = formats.PDQ_MATCH_DISTANCE,
        phash_distance: int = formats.PHASH_MATCH_DISTANCE,
        vpdq_percent: float = formats.VPDQ_MATCH_PERCENT,
    ) -> list[Match]:
        """Every entry that a file with these hashes (as tidkit.hashing returns them) matches.

        Thresholds may be made stricter, never looser than the service's defaults. Featureless
        queries take no part in near matching, as on the server: a PDQ of quality < 50, a pHash
        with fewer than 8 or more than 56 bits set, video frames of quality < 50. They can still
        match by MD5.
        """
        if not 0 <= pdq_distance <= formats.PDQ_MATCH_DISTANCE:
            raise ValueError(f"pdq_distance is 0 to {formats.PDQ_MATCH_DISTANCE}")
        if not 0 <= phash_distance <= formats.PHASH_MATCH_DISTANCE:
            raise ValueError(f"phash_distance is 0 to {formats.PHASH_MATCH_DISTANCE}")
        if not formats.VPDQ_MATCH_PERCENT <= vpdq_percent <= 100:
            raise ValueError(f"vpdq_percent is {formats.VPDQ_MATCH_PERCENT} to 100")
        found: list[Match] = []
        md5 = hashes.get("md5")
        if md5:
            found += [Match(entry_id, formats.MD5, 0) for entry_id in self._md5_entries(md5)]
        pdq = hashes.get("pdq")
        if pdq and formats.pdq_publishable(hashes.get("pdq_quality")):
            found += self._near(formats.PDQ, pdq, pdq_distance)
        phash = hashes.get("phash")
        if phash and formats.phash_publishable(phash):
            found += self._near(formats.PHASH, phash, phash_distance)
        if hashes.get("vpdq"):
            found += self._match_video(hashes["vpdq"], vpdq_percent)
        return found

    def _near(self, hash_type: str, value: str, radius: int) -> list[Match]:
        return [
            Match(self._entry_of_number(number), hash_type, distance)
            for number, distance in self._indexes[hash_type].query(value, radius)
        ]

    def _md5_entries(self, value: str) -> list[str]:
        try:
            formats.validate_hex(value, formats.MD5)
        except HashFormatError:
            return []
        found = [self._extra_md5[value]] if value in self._extra_md5 else []
        for row in self._base.rows_of_md5(value):
            if not self._dead[row]:
                found.append(self._base.entry_id(row))
        return found

    def _match_video(self, frames: Sequence[Mapping[str, Any]], percent: float) -> list[Match]:
        usable = [f["pdq"] for f in frames if formats.pdq_publishable(f["q"])]
        if not usable:
            return []
        videos = self._video_frames()
        # A listed video can reach the threshold only if at least one of its frames is near a
        # frame of the query: the index finds those candidates, the exact rule decides.
        candidates: dict[str, None] = {}
        for pdq in usable:
            for frame_number, _distance in videos.index.query(pdq, formats.VPDQ_FRAME_DISTANCE):
                candidates.setdefault(videos.entry_of[frame_number])
        found = []
        for entry_id in candidates:
            listed = self.get(entry_id).frames or ()  # type: ignore[union-attr]
            query_pct, listed_pct = formats.vpdq_match_percentages(frames, listed)
            if formats.vpdq_is_match(query_pct, listed_pct) and listed_pct >= percent:
                distance = _worst_matched_frame(usable, listed)
                found.append(Match(entry_id, formats.VPDQ, distance, listed_pct, query_pct))
        return found

    def _video_frames(self) -> _VideoFrames:
        if self._videos is None:
            videos = _VideoFrames(HammingIndex(bits=256))
            values: list[str] = []
            for entry in self._video_entries():
                for frame in entry.frames or ():
                    if formats.pdq_publishable(frame["q"]):
                        videos.entry_of.append(entry.id)
                        values.append(frame["pdq"])
            if values:
                videos.index.add(list(range(len(values))), values)
            self._videos = videos
        return self._videos

    def _video_entries(self) -> Iterator[Entry]:
        rows = np.flatnonzero((self._base.kinds == KIND[formats.VPDQ]) & ~self._dead)
        for row in rows:
            yield self._base.entry(int(row))
        yield from (e for e in self._extra.values() if e.hash_type == formats.VPDQ)

    # -- lookups across the loaded columns and what was added since ---------------------------

    def _alive_base_row(self, entry_id: str) -> int | None:
        try:
            row = self._base.row_of_id(entry_id)
        except ValueError:  # not a UUID: not an entry of any list
            return None
        return None if row is None or self._dead[row] else row

    def _number_of_present(self, entry_id: str) -> int:
        number = self.number_of(entry_id)
        if number is None:
            raise KeyError(entry_id)
        return number

    def _entry_of_number(self, number: int) -> str:
        if number in self._extra_entry_of:
            return self._extra_entry_of[number]
        row = self._base.row_of_number(number)
        if row is None or self._dead[row]:
            raise KeyError(number)  # the indexes and the columns disagree: a corrupt state
        return self._base.entry_id(row)

    # -- disk --------------------------------------------------------------------------------

    def save(self, directory: str | os.PathLike[str]) -> None:
        """Write this list to ``directory`` (which must exist): columns, frames, index files."""
        directory = Path(directory)
        alive = np.flatnonzero(~self._dead)
        builder = _ColumnBuilder()
        for entry in self._extra.values():
            builder.append(entry, self._extra_number[entry.id])
        added = builder.columns()
        base = self._base
        merged = _columns(
            numbers=np.concatenate([base.numbers[alive], added.numbers]),
            uuids=np.concatenate([base.uuids[alive], added.uuids]),
            kinds=np.concatenate([base.kinds[alive], added.kinds]),
            media=np.concatenate([base.media[alive], added.media]),
            quality=np.concatenate([base.quality[alive], added.quality]),
            values=np.concatenate([base.values[alive], added.values]),
            frames={
                **{n: f for n, f in base.frames.items() if self._base_row_alive_by_number(n)},
                **added.frames,
            },
        )
        for name in _COLUMNS:
            np.save(directory / f"{name}.npy", getattr(merged, name), allow_pickle=False)
        with open(directory / FRAMES_FILE, "w", encoding="utf-8") as fh:
            for number, frames in sorted(merged.frames.items()):
                line = {"n": number, "frames": [dict(f) for f in frames]}
                fh.write(json.dumps(line, separators=(",", ":")) + "\n")
        for hash_type, name in INDEX_FILES.items():
            self._indexes[hash_type].save(directory / name)

    @classmethod
    def load(
        cls,
        directory: str | os.PathLike[str],
        *,
        next_number: int = 1,
        memory: float | None = None,
    ) -> "LocalList":
        """Open a list written by ``save``: the columns and indexes are mapped, not read. An index
        saved by an older tidkit, or (PDQ) with another memory cap than ``memory``, is built
        again from the columns."""
        directory = Path(directory)
        arrays = {
            name: np.load(directory / f"{name}.npy", mmap_mode="r", allow_pickle=False)
            for name in _COLUMNS
        }
        frames = {}
        with open(directory / FRAMES_FILE, encoding="utf-8") as fh:
            for line in fh:
                data = json.loads(line)
                frames[int(data["n"])] = tuple(data["frames"])
        local = cls(next_number=next_number, memory=memory)
        local._set_base(_Columns(**arrays, frames=frames))
        for hash_type, name in INDEX_FILES.items():
            wanted = local._indexes[hash_type].memory
            try:
                index = HammingIndex.load(directory / name)
            except IndexFileError as exc:
                if not exc.stale:
                    raise
                index = None  # written by an older tidkit
            if index is not None and index.memory == wanted:
                local._indexes[hash_type] = index
            else:
                # Built again from the columns, which hold the same hashes (the next
                # compaction writes it out).
                local._index_base(hash_type)
        return local

    @classmethod
    def from_entries(cls, entries: Iterable[Entry], *, memory: float | None = None) -> "LocalList":
        """Build a list from many entries at once (a snapshot), holding them as compact bytes
        rather than objects. Raises ListDataError if an id appears twice."""
        builder = _ColumnBuilder()
        for number, entry in enumerate(entries, start=1):
            builder.append(entry, number)
        columns = builder.columns()
        order = columns.uuid_order
        ids = columns.uuids[order]
        if len(ids) > 1 and bool(np.any(np.all(ids[1:] == ids[:-1], axis=1))):
            raise ListDataError("An entry is listed more than once.")
        local = cls(next_number=len(columns) + 1, memory=memory)
        local._set_base(columns)
        for hash_type in local._indexes:
            local._index_base(hash_type)
        return local

    def _index_base(self, hash_type: str) -> None:
        """A new index of ``hash_type`` holding the base columns' hashes of that type."""
        columns = self._base
        old = self._indexes[hash_type]
        index = self._indexes[hash_type] = HammingIndex(bits=old.bits, memory=old.memory)
        rows = np.flatnonzero(columns.kinds == KIND[hash_type])
        width = VALUE_BYTES[hash_type]
        for start in range(0, len(rows), _INDEX_BATCH):
            batch = rows[start : start + _INDEX_BATCH]
            hexes = [bytes(v).hex() for v in columns.values[batch, :width]]
            index.add(columns.numbers[batch].tolist(), hexes)

    def _set_base(self, columns: _Columns) -> None:
        self._base = columns
        self._dead = np.zeros(len(columns), dtype=bool)
        self._base_alive = len(columns)
        kinds = np.bincount(np.asarray(columns.kinds), minlength=len(HASH_TYPES))
        self._base_counts = {t: int(kinds[KIND[t]]) for t in HASH_TYPES}
        self._videos = None

    def _base_row_alive_by_number(self, number: int) -> bool:
        row = self._base.row_of_number(number)
        return row is not None and not self._dead[row]


def _columns(
    *,
    numbers: np.ndarray,
    uuids: np.ndarray,
    kinds: np.ndarray,
    media: np.ndarray,
    quality: np.ndarray,
    values: np.ndarray,
    frames: dict[int, tuple[Mapping[str, Any], ...]],
) -> _Columns:
    """Columns sorted by number, with the orders that binary searches need."""
    order = np.argsort(numbers, kind="stable")
    numbers, uuids, kinds = numbers[order], uuids[order], kinds[order]
    media, quality, values = media[order], quality[order], values[order]
    uuid_order = np.lexsort((uuids[:, 1], uuids[:, 0])) if len(numbers) else np.zeros(0, np.int64)
    md5_rows = np.flatnonzero(kinds == KIND[formats.MD5])
    if len(md5_rows):
        words = _words(values[md5_rows, :16])
        md5_rows = md5_rows[np.lexsort((words[:, 1], words[:, 0]))]
    return _Columns(
        numbers=np.ascontiguousarray(numbers, dtype=np.int64),
        uuids=np.ascontiguousarray(uuids, dtype=np.uint64),
        kinds=np.ascontiguousarray(kinds, dtype=np.uint8),
        media=np.ascontiguousarray(media, dtype=np.uint8),
        quality=np.ascontiguousarray(quality, dtype=np.int16),
        values=np.ascontiguousarray(values, dtype=np.uint8),
        uuid_order=np.asarray(uuid_order, dtype=np.int64),
        md5_rows=np.asarray(md5_rows, dtype=np.int64),
        frames=frames,
    )


def _words(raw: np.ndarray) -> np.ndarray:
    """Rows of 16 bytes as two big-endian 64-bit words (their order is the bytes' order)."""
    return np.ascontiguousarray(raw, dtype=np.uint8).view(">u8").astype(np.uint64)


def _uuid_words(entry_id: str) -> tuple[int, int]:
    value = uuid.UUID(entry_id).int
    return value >> 64, value & 0xFFFF_FFFF_FFFF_FFFF


def _worst_matched_frame(query: Iterable[str], listed: Iterable[Mapping[str, Any]]) -> int:
    """The largest nearest-query-frame distance among the listed usable frames that matched."""
    query_ints = [int(q, 16) for q in query]
    worst = 0
    for frame in listed:
        if not formats.pdq_publishable(frame["q"]):
            continue
        value = int(frame["pdq"], 16)
        nearest = min((value ^ q).bit_count() for q in query_ints)
        if nearest <= formats.VPDQ_FRAME_DISTANCE:
            worst = max(worst, nearest)
    return worst
