"""Near-duplicate search across every case's files and every list entry, for staff.

Each process keeps in-memory tidkit.index.HammingIndex copies of the PDQ and pHash columns of
MediaItem and HashEntry (and of every video frame), refreshed before each search by reading only
rows above a high-water mark: these rows are append-only and their hashes never change, so the
indexes stay exact without ever being rebuilt. A million PDQ hashes take about 110 MB.
"""

import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from django.db.models import QuerySet

from cases.models import Case, MediaItem
from hashlists.models import HashEntry
from tidkit import formats
from tidkit.index import HammingIndex

FRAME_ID_FACTOR = 1 << 14  # > MAX_VPDQ_FRAMES: frame ids are item_id * FACTOR + frame number
_REFRESH_BATCH = 50_000


class _ColumnIndex:
    """A HammingIndex over one hash column of one model, kept current by primary key."""

    def __init__(self, bits: int, rows: Callable[[int], QuerySet], explode=None) -> None:
        self.bits = bits
        self.rows = rows  # pk above a watermark -> (pk, value) rows in pk order
        self.explode = explode  # optional: (pk, value) -> [(id, hex)] (video frames)
        self.index = HammingIndex(bits=bits)
        self.watermark = 0

    def refresh(self) -> HammingIndex:
        while True:
            batch = list(self.rows(self.watermark)[:_REFRESH_BATCH])
            if not batch:
                return self.index
            pairs = [p for row in batch for p in self.explode(*row)] if self.explode else batch
            pairs = [(i, h) for i, h in pairs if h]
            if pairs:
                self.index.add([i for i, _ in pairs], [h for _, h in pairs])
            self.watermark = batch[-1][0]


def _frames(pk: int, frames: list[dict] | None) -> Iterator[tuple[int, str]]:
    for number, frame in enumerate(frames or ()):
        if formats.pdq_publishable(frame["q"]):
            yield pk * FRAME_ID_FACTOR + number, frame["pdq"]


class _Indexes:
    def __init__(self) -> None:
        items = MediaItem.objects.order_by("pk")
        entries = HashEntry.objects.order_by("pk")
        self.item_pdq = _ColumnIndex(
            256, lambda w: items.filter(pk__gt=w, media_type="image").values_list("pk", "pdq")
        )
        self.item_phash = _ColumnIndex(
            64, lambda w: items.filter(pk__gt=w, media_type="image").values_list("pk", "phash")
        )
        self.item_frames = _ColumnIndex(
            256,
            lambda w: items.filter(pk__gt=w, media_type="video").values_list("pk", "vpdq"),
            explode=_frames,
        )
        self.entry_pdq = _ColumnIndex(
            256, lambda w: entries.filter(pk__gt=w, hash_type="pdq").values_list("pk", "value")
        )
        self.entry_phash = _ColumnIndex(
            64, lambda w: entries.filter(pk__gt=w, hash_type="phash").values_list("pk", "value")
        )


_lock = threading.Lock()
_indexes: _Indexes | None = None


def indexes() -> _Indexes:
    """The process's indexes, refreshed. Thread-safe; cheap when nothing is new."""
    global _indexes
    with _lock:
        if _indexes is None:
            _indexes = _Indexes()
        for column in vars(_indexes).values():
            column.refresh()
        return _indexes


@dataclass
class CaseHit:
    """Another case with a near-duplicate of one of this case's files."""

    case: Case
    matches: list[tuple[str, int, int, int]] = field(default_factory=list)
    # (hash type, distance or vPDQ listed %, this case's item id, the other case's item id)

    @property
    def best(self) -> tuple[str, int]:
        kind, distance, *_ = min(self.matches, key=lambda m: (m[0] != "md5", m[1]))
        return kind, distance


@dataclass
class EntryHit:
    entry: HashEntry
    distance: int
    item_id: int


@dataclass
class NearDuplicates:
    cases: list[CaseHit]
    entries: list[EntryHit]

    @property
    def unrelated_case_count(self) -> int:
        """Other cases, counting a duplicate and its original once."""
        return len({hit.case.duplicate_of_id or hit.case.pk for hit in self.cases})


def case_near_duplicates(*, case: Case) -> NearDuplicates:
    """Other cases and list entries near this case's files: same MD5, PDQ within 31, pHash
    within 8, or a video whose usable frames match under the vPDQ rule. Exact: the indexes
    answer what brute force would."""
    items = list(case.items.all())
    if not items:
        return NearDuplicates([], [])
    idx = indexes()
    item_hits: dict[int, list[tuple[str, int, int]]] = defaultdict(list)  # other item -> matches
    entry_hits: dict[int, tuple[int, int]] = {}
    own = {i.pk for i in items}

    def note_entry(entry_id: int, distance: int, item_id: int) -> None:
        if entry_id not in entry_hits or distance < entry_hits[entry_id][0]:
            entry_hits[entry_id] = (distance, item_id)

    images = [i for i in items if i.media_type == "image"]
    for kind, column, radius, entries in (
        ("pdq", idx.item_pdq, formats.PDQ_MATCH_DISTANCE, idx.entry_pdq),
        ("phash", idx.item_phash, formats.PHASH_MATCH_DISTANCE, idx.entry_phash),
    ):
        values = [getattr(i, kind) for i in images]
        for item, hits in zip(images, column.index.query_many(values, radius), strict=True):
            for other, distance in hits:
                if other not in own:
                    item_hits[other].append((kind, distance, item.pk))
        for item, hits in zip(images, entries.index.query_many(values, radius), strict=True):
            for entry_id, distance in hits:
                note_entry(entry_id, distance, item.pk)
    item_by_md5 = {i.md5: i.pk for i in items}
    for other, md5 in (
        MediaItem.objects.filter(md5__in=list(item_by_md5))
        .exclude(pk__in=own)
        .values_list("pk", "md5")
    ):
        item_hits[other].append(("md5", 0, item_by_md5[md5]))
    for entry_id, md5 in HashEntry.objects.filter(
        hash_type="md5", value__in=list(item_by_md5)
    ).values_list("pk", "value"):
        note_entry(entry_id, 0, item_by_md5[md5])
    _video_hits(items, own, idx, item_hits)

    others = MediaItem.objects.filter(pk__in=item_hits).select_related("case")
    by_case: dict[int, CaseHit] = {}
    for other in others:
        hit = by_case.setdefault(other.case_id, CaseHit(case=other.case))
        hit.matches += [(kind, d, own_item, other.pk) for kind, d, own_item in item_hits[other.pk]]
    entries = HashEntry.objects.filter(pk__in=entry_hits).select_related("hash_list")
    return NearDuplicates(
        cases=sorted(by_case.values(), key=lambda h: (h.best[0] != "md5", h.best[1], h.case.pk)),
        entries=sorted(
            (EntryHit(e, *entry_hits[e.pk]) for e in entries),
            key=lambda h: (h.distance, h.entry.pk),
        ),
    )


def _video_hits(items: Iterable[MediaItem], own: set[int], idx: _Indexes, item_hits: dict) -> None:
    for item in items:
        if item.media_type != "video":
            continue
        frames = [f["pdq"] for f in item.vpdq or () if formats.pdq_publishable(f["q"])]
        candidates = {
            frame_id // FRAME_ID_FACTOR
            for hits in idx.item_frames.index.query_many(frames, formats.VPDQ_FRAME_DISTANCE)
            for frame_id, _ in hits
        } - own
        for other in MediaItem.objects.filter(pk__in=candidates).only("pk", "vpdq"):
            query_pct, listed_pct = formats.vpdq_match_percentages(item.vpdq, other.vpdq)
            if formats.vpdq_is_match(query_pct, listed_pct) or formats.vpdq_is_match(
                listed_pct, query_pct
            ):
                item_hits[other.pk].append(("vpdq", round(max(query_pct, listed_pct)), item.pk))
