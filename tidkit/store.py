"""The local copy of a hash list and matching against it (DESIGN.md section 3).

``LocalList`` holds a list's active entries as the feed and snapshots describe them, an MD5
lookup, and ``tidkit.index.HammingIndex`` indexes for PDQ and pHash keyed by small integers
("numbers") that map back to the entries' public ids. ``match(hashes)`` takes what
``tidkit.hashing`` returns for a file and answers with every entry it matches under the service's
rules: MD5 exact, PDQ within 31 bits, pHash within 8, and vPDQ when at least 80% of the listed
video's usable frames are matched.

How it is kept on disk, and kept in step with the server, is tidkit.sync's business; this module
only saves and loads one consistent copy (``entries.jsonl`` plus one index file per hash type).
"""

import json
import os
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tidkit import formats
from tidkit.errors import HashFormatError, TidkitError
from tidkit.index import HammingIndex

__all__ = ["Entry", "ListDataError", "LocalList", "Match"]

HASH_TYPES = (formats.MD5, formats.PDQ, formats.PHASH, formats.VPDQ)
MEDIA_TYPES = ("image", "video")
ENTRIES_FILE = "entries.jsonl"
INDEX_FILES = {formats.PDQ: "pdq.index", formats.PHASH: "phash.index"}


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
class _VideoFrames:
    """Every usable frame of every listed video in one index, for finding candidate videos."""

    index: HammingIndex
    entry_of: list[str] = field(default_factory=list)


class LocalList:
    """A list's active entries with the lookups that matching needs.

    Adding an entry that is already present replaces it under the same number; removing one
    that is absent does nothing. Both are therefore harmless to repeat.
    """

    def __init__(self, *, next_number: int = 1) -> None:
        self._entries: dict[str, Entry] = {}
        self._number: dict[str, int] = {}
        self._entry_of: dict[int, str] = {}
        self._md5: dict[str, str] = {}
        self._indexes = {formats.PDQ: HammingIndex(bits=256), formats.PHASH: HammingIndex(bits=64)}
        self._videos: _VideoFrames | None = None
        self.next_number = next_number

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, entry_id: object) -> bool:
        return entry_id in self._entries

    def get(self, entry_id: str) -> Entry | None:
        return self._entries.get(entry_id)

    def number_of(self, entry_id: str) -> int | None:
        return self._number.get(entry_id)

    def entries(self) -> Iterator[Entry]:
        return iter(self._entries.values())

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(HASH_TYPES, 0)
        for entry in self._entries.values():
            counts[entry.hash_type] += 1
        counts["total"] = len(self._entries)
        return counts

    # -- changes -----------------------------------------------------------------------------

    def add(self, entry: Entry, number: int | None = None) -> int:
        """Put ``entry`` in the list and return its number (kept if the entry was present)."""
        self.add_many([entry], None if number is None else [number])
        return self._number[entry.id]

    def add_many(self, entries: Sequence[Entry], numbers: Sequence[int] | None = None) -> None:
        """Add entries in bulk (one index call per hash type); ``numbers`` replays saved ones."""
        if numbers is not None and len(numbers) != len(entries):
            raise ValueError("entries and numbers differ in length")
        # One index call per hash type; a number appears once in a batch (the last value wins).
        batches: dict[str, dict[int, str]] = {t: {} for t in self._indexes}

        def flush() -> None:
            for hash_type, batch in batches.items():
                if batch:
                    self._indexes[hash_type].add(list(batch), list(batch.values()))
                    batch.clear()

        for position, entry in enumerate(entries):
            previous = self._entries.get(entry.id)
            if previous is not None and previous != entry:
                flush()  # the old value must be in its index before it is taken out
                self.remove(entry.id)
            number = self._number.get(entry.id)
            if number is None:
                number = numbers[position] if numbers is not None else self.next_number
                self.next_number = max(self.next_number, number + 1)
                self._number[entry.id] = number
                self._entry_of[number] = entry.id
            self._entries[entry.id] = entry
            if entry.hash_type == formats.MD5:
                self._md5[entry.value] = entry.id
            elif entry.hash_type in batches:
                batches[entry.hash_type][number] = entry.value
            else:
                self._videos = None
        flush()

    def remove(self, entry_id: str) -> bool:
        """Drop an entry; return whether it was present."""
        entry = self._entries.pop(entry_id, None)
        if entry is None:
            return False
        number = self._number.pop(entry_id)
        del self._entry_of[number]
        if entry.hash_type == formats.MD5:
            if self._md5.get(entry.value) == entry_id:
                del self._md5[entry.value]
        elif entry.hash_type in self._indexes:
            self._indexes[entry.hash_type].remove([number])
        else:
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
        md5_entry = self._md5.get(hashes.get("md5") or "")
        if md5_entry is not None:
            found.append(Match(md5_entry, formats.MD5, 0))
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
            Match(self._entry_of[number], hash_type, distance)
            for number, distance in self._indexes[hash_type].query(value, radius)
        ]

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
            listed = self._entries[entry_id].frames or ()
            query_pct, listed_pct = formats.vpdq_match_percentages(frames, listed)
            if formats.vpdq_is_match(query_pct, listed_pct) and listed_pct >= percent:
                distance = _worst_matched_frame(usable, listed)
                found.append(Match(entry_id, formats.VPDQ, distance, listed_pct, query_pct))
        return found

    def _video_frames(self) -> _VideoFrames:
        if self._videos is None:
            videos = _VideoFrames(HammingIndex(bits=256))
            values: list[str] = []
            for entry in self._entries.values():
                if entry.hash_type == formats.VPDQ:
                    for frame in entry.frames or ():
                        if formats.pdq_publishable(frame["q"]):
                            videos.entry_of.append(entry.id)
                            values.append(frame["pdq"])
            if values:
                videos.index.add(list(range(len(values))), values)
            self._videos = videos
        return self._videos

    # -- disk --------------------------------------------------------------------------------

    def save(self, directory: str | os.PathLike[str]) -> None:
        """Write this list to ``directory`` (which must exist): entries and index files."""
        directory = Path(directory)
        with open(directory / ENTRIES_FILE, "w", encoding="utf-8") as fh:
            for entry_id, number in sorted(self._number.items(), key=lambda item: item[1]):
                line = {"n": number, **self._entries[entry_id].to_json()}
                fh.write(json.dumps(line, separators=(",", ":")) + "\n")
        for hash_type, name in INDEX_FILES.items():
            self._indexes[hash_type].save(directory / name)

    @classmethod
    def load(cls, directory: str | os.PathLike[str], *, next_number: int = 1) -> "LocalList":
        """Read a list written by ``save``. Indexes are loaded from their files, not rebuilt."""
        directory = Path(directory)
        local = cls(next_number=next_number)
        for hash_type, name in INDEX_FILES.items():
            local._indexes[hash_type] = HammingIndex.load(directory / name)
        with open(directory / ENTRIES_FILE, encoding="utf-8") as fh:
            for line in fh:
                data = json.loads(line)
                entry = _entry_from_saved(data)
                number = int(data["n"])
                local._entries[entry.id] = entry
                local._number[entry.id] = number
                local._entry_of[number] = entry.id
                local.next_number = max(local.next_number, number + 1)
                if entry.hash_type == formats.MD5:
                    local._md5[entry.value] = entry.id
        return local


def _entry_from_saved(data: Mapping[str, Any]) -> Entry:
    """An entry tidkit wrote itself: validated when it arrived, so only rebuilt here."""
    frames = data.get("frames")
    return Entry(
        data["id"],
        data["hash_type"],
        data["value"],
        data["media_type"],
        data["quality"],
        tuple(frames) if frames is not None else None,
    )


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
