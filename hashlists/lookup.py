"""Hosted lookup (DESIGN.md section 5): partners' hashes matched against the lists they may read.

For platforms too small to run an index of their own. Each worker process keeps, per list, in-memory
tidkit.index.HammingIndex copies of the list's active PDQ and pHash entries and of its videos'
usable vPDQ frames, and keeps them current from the list's change feed exactly as a partner that
follows ``after=<seq>`` does: sequenced ListChange rows only, in seq order. Before answering, a
list whose last catch-up is older than TID_LOOKUP_REFRESH_SECONDS applies the changes sequenced
since its watermark (one range scan of the (list, seq) index, usually empty), so an accepted
case's hashes match within about a second of being sequenced, with no restart.

The first use of a list in a process loads it: it reads the feed's last seq S first, then the
active entries, then applies every change after S. In that order nothing is lost: a change
sequenced up to S is reflected in the entries read after it, and one sequenced after S is applied
on top (an add or a remove applied twice changes nothing); a change committed but not yet
sequenced is in the entries read, or arrives later through the feed. The other way round, an
entry added between the two reads would be in neither. Each catch-up also checks that the change
at its watermark is still the one it applied, so an index never follows a feed that was replaced
(a database restored from a backup): it loads the list again. Measured (bench/partner_api.py): a
list with 1,000,000 PDQs, 300,000 pHashes and 30,000 videos loads in about 10 s and takes about
400 MB per worker.

MD5s are exact, so they are looked up in the database's unique (list, type, value) index: about
10 ms for a batch of 1,000 against about 5 ms through an in-process dict, which would cost every
worker some 130 bytes an md5 (45 MB for a list with 340,000 of them; bench/partner_api.py measures
both). Every hit is read back from the database with its public id, and only while it is still
active: an entry removed by staff or by a withdrawal stops matching as soon as that commits, even
before the feed carries the removal.
"""

import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from django.conf import settings
from django.http import Http404

from hashlists.models import HashEntry, HashList, HashType, ListChange
from partners.models import Partner
from tidkit import formats
from tidkit.index import HammingIndex
from tidportal.db_router import replica_reads

MAX_HASHES = 1_000
# A request's vPDQ frames in all: the longest video a hash is made for (four hours at one frame
# per second), about 1.4 MB of JSON.
MAX_FRAMES = formats.MAX_VPDQ_FRAMES
# The loosest distance each type matches at (DESIGN.md section 3); a partner may ask for less.
# For vPDQ it is the distance at which two frames match.
MATCH_DISTANCES = formats.MATCH_DISTANCES
FRAME_ID_FACTOR = 1 << 14  # > MAX_VPDQ_FRAMES: a frame's id is its entry's id * FACTOR + number
_CATCH_UP_BATCH = 10_000
_LOAD_BATCH = 50_000
_ADD, _REMOVE = ListChange.Op.ADD, ListChange.Op.REMOVE


@dataclass(frozen=True)
class LookupQuery:
    """One hash to look up, already valid (hashlists.api.lookup checks the request)."""

    hash_type: str
    max_distance: int
    value: str = ""
    frames: tuple[str, ...] = ()  # vpdq: the distinct PDQs of its usable frames (quality >= 50)


@dataclass(frozen=True)
class LookupMatch:
    public_id: uuid.UUID
    list_slug: str
    hash_type: str
    distance: int  # vpdq: the farthest matched listed frame from its nearest query frame
    quality: int | None
    media_type: str
    query_match_percent: float | None = None
    listed_match_percent: float | None = None


@dataclass(frozen=True)
class LookupAnswer:
    seqs: dict[str, int]  # list slug -> the feed seq its index had reached
    matches: list[list[LookupMatch]]  # per query, in the queries' order, best first


@dataclass(frozen=True)
class _Hit:
    entry_id: int
    distance: int
    query_match_percent: float | None = None
    listed_match_percent: float | None = None


def vpdq_query_frames(frames: Iterable[dict]) -> tuple[str, ...]:
    """The distinct PDQs of a video's usable frames (quality >= 50): what vPDQ compares, as
    formats.vpdq_match_percentages counts them."""
    return tuple(dict.fromkeys(f["pdq"] for f in frames if formats.pdq_publishable(f["q"])))


@dataclass
class ListIndex:
    """One list's active PDQ, pHash and vPDQ-frame hashes, at one seq of its feed.

    Not thread-safe by itself: callers hold ``lock`` around ``refresh`` and ``query`` (gunicorn's
    threads in one process then take turns on a list; the work under the lock is NumPy's).
    """

    hash_list_id: int
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        self._clear()

    def _clear(self) -> None:
        self.pdq = HammingIndex(bits=256)
        self.phash = HammingIndex(bits=64)
        self.frames = HammingIndex(bits=256)
        self.frame_counts: dict[int, int] = {}  # vpdq entry id -> its indexed frames
        self.seq = 0
        self._seq_change_id: int | None = None  # the ListChange at ``seq``, to detect a new feed
        self._checked_at: float | None = None

    def refresh(self, *, max_age: float) -> None:
        """Apply the changes sequenced since the watermark, unless that was checked less than
        ``max_age`` seconds ago; load the list on first use or when its feed was replaced."""
        started = time.monotonic()
        if self._checked_at is not None and started - self._checked_at < max_age:
            return
        if self._checked_at is None or not self._catch_up():
            self._load()
            self._catch_up()
        self._checked_at = started

    def query(self, queries: Sequence[LookupQuery]) -> list[list[_Hit]]:
        """Per query, the ids of the entries it matches with their distances (empty for md5,
        which the database answers)."""
        hits: list[list[_Hit]] = [[] for _ in queries]
        groups: dict[tuple[str, int], list[int]] = defaultdict(list)
        for position, q in enumerate(queries):
            if q.hash_type in (HashType.PDQ, HashType.PHASH):
                groups[(q.hash_type, q.max_distance)].append(position)
            elif q.hash_type == HashType.VPDQ:
                hits[position] = self._video_hits(q)
        for (hash_type, radius), positions in groups.items():
            index = self.pdq if hash_type == HashType.PDQ else self.phash
            found = index.query_many([queries[p].value for p in positions], radius)
            for position, pairs in zip(positions, found, strict=True):
                hits[position] = [_Hit(entry_id, distance) for entry_id, distance in pairs]
        return hits

    def _video_hits(self, q: LookupQuery) -> list[_Hit]:
        """The listed videos that ``q`` matches by the vPDQ rule, with both percentages (the
        same figures as formats.vpdq_match_percentages, from the frame index) and, as distance,
        the farthest any matched frame of the listed video is from its nearest query frame:
        what a match report gives as a vpdq distance."""
        if not q.frames:
            return []
        listed: dict[int, dict[int, int]] = defaultdict(dict)  # entry -> frame -> nearest
        queried: dict[int, set[int]] = defaultdict(set)  # entry -> query frames matching it
        for number, pairs in enumerate(self.frames.query_many(list(q.frames), q.max_distance)):
            for frame_id, distance in pairs:
                entry_id = frame_id // FRAME_ID_FACTOR
                nearest = listed[entry_id]
                nearest[frame_id] = min(distance, nearest.get(frame_id, distance))
                queried[entry_id].add(number)
        hits = []
        for entry_id, nearest in listed.items():
            listed_pct = 100.0 * len(nearest) / self.frame_counts[entry_id]
            query_pct = 100.0 * len(queried[entry_id]) / len(q.frames)
            if formats.vpdq_is_match(query_pct, listed_pct):
                hits.append(_Hit(entry_id, max(nearest.values()), query_pct, listed_pct))
        return hits

    # --------------------------------------------------------------------------------------------
    # Following the feed
    # --------------------------------------------------------------------------------------------

    @replica_reads
    def _load(self) -> None:
        """Start again from the list's active entries, at the feed's head read BEFORE them (see
        the module docstring for why this order loses nothing).

        From the replica when there is one: the heavy read. Its state is one the primary had,
        so the catch-up that follows, on the primary, finds the change at the watermark and
        brings the index up to date before it answers (tidportal/db_router.py)."""
        self._clear()
        head = (
            ListChange.objects.filter(hash_list_id=self.hash_list_id, seq__isnull=False)
            .order_by("-seq")
            .values_list("seq", "pk")
            .first()
        )
        self.seq, self._seq_change_id = head or (0, None)
        self._load_active()

    def _load_active(self) -> None:
        rows = (
            HashEntry.objects.filter(
                hash_list_id=self.hash_list_id,
                status=HashEntry.Status.ACTIVE,
                hash_type__in=[HashType.PDQ, HashType.PHASH, HashType.VPDQ],
            )
            .order_by()
            .values_list("pk", "hash_type", "value", "frames")
        )
        batch: list[tuple[int, str, str, list | None]] = []
        for row in rows.iterator(chunk_size=_LOAD_BATCH):
            batch.append(row)
            if len(batch) == _LOAD_BATCH:
                self._add(batch)
                batch = []
        self._add(batch)

    def _catch_up(self) -> bool:
        """Apply the feed after the watermark, in order. False when the change at the watermark
        is not the one applied (the feed was replaced): the caller loads the list again."""
        while True:
            changes = ListChange.objects.filter(hash_list_id=self.hash_list_id)
            # From the watermark itself, to check it; seq > 0 leaves out unsequenced rows.
            changes = changes.filter(seq__gte=self.seq) if self.seq else changes.filter(seq__gt=0)
            rows = list(
                changes.order_by("seq").values_list(
                    "seq", "pk", "op", "entry_id", "entry__hash_type", "entry__value",
                    "entry__frames",
                )[: _CATCH_UP_BATCH + 1]
            )  # fmt: skip
            if self.seq:
                if not rows or rows[0][:2] != (self.seq, self._seq_change_id):
                    return False
                rows = rows[1:]
            if not rows:
                return True
            # Entries are independent and their last change says what they are now.
            last: dict[int, tuple[str, str, str, list | None]] = {}
            for _seq, _pk, op, entry_id, hash_type, value, frames in rows:
                last[entry_id] = (op, hash_type, value, frames)
            self._remove((e, t) for e, (op, t, _v, _f) in last.items() if op == _REMOVE)
            self._add([(e, t, v, f) for e, (op, t, v, f) in last.items() if op == _ADD])
            self.seq, self._seq_change_id = rows[-1][0], rows[-1][1]

    def _add(self, entries: Iterable[tuple[int, str, str, list | None]]) -> None:
        columns: dict[str, tuple[list[int], list[str]]] = {
            HashType.PDQ: ([], []),
            HashType.PHASH: ([], []),
            HashType.VPDQ: ([], []),
        }
        for entry_id, hash_type, value, frames in entries:
            if hash_type == HashType.VPDQ:
                hashes = vpdq_query_frames(frames or ())
                ids, values = columns[hash_type]
                ids += [entry_id * FRAME_ID_FACTOR + n for n in range(len(hashes))]
                values += hashes
                self.frame_counts[entry_id] = len(hashes)
            elif hash_type in columns:
                columns[hash_type][0].append(entry_id)
                columns[hash_type][1].append(value)
        for hash_type, index in (
            (HashType.PDQ, self.pdq),
            (HashType.PHASH, self.phash),
            (HashType.VPDQ, self.frames),
        ):
            ids, values = columns[hash_type]
            if ids:
                index.add(ids, values)

    def _remove(self, entries: Iterable[tuple[int, str]]) -> None:
        by_type: dict[str, list[int]] = defaultdict(list)
        for entry_id, hash_type in entries:
            if hash_type == HashType.VPDQ:
                count = self.frame_counts.pop(entry_id, 0)
                by_type[hash_type] += [entry_id * FRAME_ID_FACTOR + n for n in range(count)]
            else:
                by_type[hash_type].append(entry_id)
        self.pdq.remove(by_type[HashType.PDQ])
        self.phash.remove(by_type[HashType.PHASH])
        self.frames.remove(by_type[HashType.VPDQ])


_indexes: dict[int, ListIndex] = {}
_indexes_lock = threading.Lock()


def list_index(*, hash_list_id: int) -> ListIndex:
    """This process's index of a list (empty until its first refresh)."""
    with _indexes_lock:
        index = _indexes.get(hash_list_id)
        if index is None:
            index = _indexes[hash_list_id] = ListIndex(hash_list_id)
        return index


def hashes_lookup_for_partner(
    *, partner: Partner, queries: Sequence[LookupQuery], list_slugs: Sequence[str] | None = None
) -> LookupAnswer:
    """Match ``queries`` against the active entries of the published lists granted to
    ``partner`` (only those named in ``list_slugs``, when given).

    Returns, per query in order, the entries within its distance (md5 exact; pdq and phash by
    Hamming distance; vpdq when at least 80% of a listed video's usable frames are matched),
    nearest first. Raises Http404 if ``list_slugs`` names a list the partner cannot read, the
    same answer as for a list that does not exist.
    """
    lists = list(
        HashList.objects.filter(published=True, readers=partner).order_by("slug").only("slug")
    )
    if list_slugs is not None:
        wanted = set(list_slugs)
        lists = [hl for hl in lists if hl.slug in wanted]
        if len(lists) != len(wanted):
            raise Http404
    slugs = {hl.pk: hl.slug for hl in lists}
    hits: list[list[_Hit]] = [[] for _ in queries]
    seqs = {}
    for hash_list in lists:
        index = list_index(hash_list_id=hash_list.pk)
        with index.lock:
            index.refresh(max_age=settings.TID_LOOKUP_REFRESH_SECONDS)
            found = index.query(queries)
            seqs[hash_list.slug] = index.seq
        for position, list_hits in enumerate(found):
            hits[position] += list_hits
    entries = HashEntry.objects.filter(hash_list_id__in=slugs, status=HashEntry.Status.ACTIVE)
    fields = ("pk", "public_id", "hash_list_id", "hash_type", "media_type", "quality")
    details = {
        row[0]: row
        for row in entries.filter(pk__in={h.entry_id for found in hits for h in found})
        .order_by()
        .values_list(*fields)
    }
    md5s = {q.value for q in queries if q.hash_type == HashType.MD5}
    by_md5: dict[str, list[tuple]] = defaultdict(list)
    if md5s:
        for row in entries.filter(hash_type=HashType.MD5, value__in=md5s).values_list(
            *fields, "value"
        ):
            by_md5[row[-1]].append(row)

    def match(row: tuple, hit: _Hit) -> LookupMatch:
        _pk, public_id, list_id, hash_type, media_type, quality = row[:6]
        rounded = {
            name: round(value, 2)
            for name in ("query_match_percent", "listed_match_percent")
            if (value := getattr(hit, name)) is not None
        }
        return LookupMatch(
            public_id, slugs[list_id], hash_type, hit.distance, quality, media_type, **rounded
        )

    answers = []
    for q, found in zip(queries, hits, strict=True):
        if q.hash_type == HashType.MD5:
            matches = [match(row, _Hit(row[0], 0)) for row in by_md5.get(q.value, ())]
        else:
            matches = [match(details[h.entry_id], h) for h in found if h.entry_id in details]
        if q.hash_type == HashType.VPDQ:
            matches.sort(
                key=lambda m: (
                    -m.listed_match_percent,
                    -m.query_match_percent,
                    m.distance,
                    str(m.public_id),
                )
            )
        else:
            matches.sort(key=lambda m: (m.distance, str(m.public_id)))
        answers.append(matches)
    return LookupAnswer(seqs=seqs, matches=answers)
