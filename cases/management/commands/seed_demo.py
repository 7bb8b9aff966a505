"""Fill a database with realistic volume: cases, their files' hashes, list entries, the change
feed, partners and their match reports. For benchmarks and for looking at the staff pages with
real-looking numbers; never for production, and never from a migration.

Fast by construction: rows are built in memory with numpy and written in batches, one transaction
per batch, with PostgreSQL's COPY (bulk_create on SQLite): no per-row save() and no signals, so no
django-simple-history records (the case history and the reporter's timeline fall back to the
rows' own timestamps). Hashes are random but valid (DESIGN.md section 3), with the features the
staff pages care about: families of near-duplicate PDQs across cases, some featureless images and
frames, videos as vPDQ frames. The same arguments (--seed included) give the same cases and
files on any database; only case numbers and PINs come from the OS's generator, as real ones do.

What is consistent, as the services would have left it:
- Accepted cases published their publishable files' hashes: each entry is backed by its items
  (HashEntrySource, backing_case_count) and went on the list a few seconds after the decision.
  A hash that is listed already (say, from an earlier run with the same seed) gains backing
  instead of a second entry.
- The feed: every entry's ``add`` change carries the next seq of its list and a sequenced_at that
  never goes backwards, written under the sequencer's lock, so the feed stays gap-free.
- --entries adds older list volume, published in the year before the seeded cases. Each of
  those entries counts one backing case (backing_case_count 1, as an active entry must) that
  stands for a report older than the seeded window, so it has no HashEntrySource row.
- Near-duplicates: cases whose images share a PDQ family are recorded as NearDuplicatePair rows
  both ways round, with each case's count and misuse flag, as case_near_duplicates_refresh
  would leave them. Family members are the only PDQs within match distance of each other (two
  random PDQs are, with probability ~1e-40); the ~1 in 3e9 random pHash pairs within 8 bits
  that an index would also find are left out.
- Match reports only follow an entry's publication and are never in the future; an entry that
  distinct partners called not relevant is flagged for review.

On a database whose feed already runs up to now, new publications can only be dated after it, so
few partner reports fit before now: an empty database gives the most realistic figures.
"""

import bisect
import secrets
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection, models, transaction
from django.utils import timezone
from psycopg.types.json import Jsonb

from cases.hashers import pin_hash
from cases.models import Case, MediaItem, NearDuplicatePair, new_case_number
from cases.selectors import near_duplicate_counts
from cases.services import new_pin
from hashlists.models import (
    HashEntry,
    HashEntrySource,
    HashList,
    HashType,
    ListChange,
    MediaType,
)
from hashlists.services import (
    SELF_HEALING_REMOVALS,
    SEQUENCER_LOCK_ID,
    media_item_publishable_hashes,
    vpdq_digest,
)
from partners.models import MatchReport, Partner
from partners.services import partner_create
from tidkit import formats

SEEDED_WINDOW = timedelta(days=90)
VOLUME_WINDOW = timedelta(days=365)  # --entries volume: published in the year before the window
SEED_USER = "seed-demo"
PARTNER_NAMES = ["Pixelwave", "Clipnest", "Threadly", "Snapgrove", "Loopcast", "Framehub"]

REPORTERS = (["self", "parent", "trusted_adult"], [0.6, 0.25, 0.15])
STATUSES = (
    ["received", "in_review", "accepted", "not_accepted", "duplicate", "withdrawn"],
    [0.06, 0.07, 0.56, 0.14, 0.05, 0.12],
)
REJECTION_REASONS = (
    ["not_eligible", "not_explicit", "featureless", "misuse", "other"],
    [0.35, 0.3, 0.15, 0.05, 0.15],
)
ITEMS_PER_CASE = ([1, 2, 3, 4, 5], [0.35, 0.25, 0.18, 0.12, 0.1])
VIDEO_SHARE = 0.12
NEAR_DUPLICATE_SHARE = 0.25  # images that are a near-copy of another case's image
FAMILY_SIZE = 2.0  # images per near-duplicate family, on average (a re-report, a cropped copy)
ACTIONS = (
    ["removed", "pending_review", "restricted", "no_action", "not_relevant"],
    [0.55, 0.12, 0.13, 0.12, 0.08],
)
MATCHED_SHARE = 0.2  # entries that some partner reports a match on
# Median delays, drawn log-normally: a decision, a withdrawal, a partner's first match.
DECISION_MEDIAN_HOURS = 18.0
WITHDRAWAL_MEDIAN_HOURS = 48.0
MATCH_MEDIAN_HOURS = 30.0


@contextmanager
def explicit_timestamps(*model_classes: type[models.Model]) -> Iterator[None]:
    """Let rows keep the times we give them: auto_now and auto_now_add would stamp every seeded
    row with the moment of seeding, and a demo spread over 90 days needs its real-looking times.
    Switched off for this process only, and always restored."""
    saved = [
        (f, f.auto_now, f.auto_now_add)
        for model in model_classes
        for f in model._meta.concrete_fields
        if getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False)
    ]
    try:
        for f, _now, _add in saved:
            f.auto_now = f.auto_now_add = False
        yield
    finally:
        for f, auto_now, auto_now_add in saved:
            f.auto_now, f.auto_now_add = auto_now, auto_now_add


def _split_hex(raw: bytes, width: int) -> list[str]:
    text = raw.hex()
    return [text[i : i + 2 * width] for i in range(0, len(text), 2 * width)]


def bulk_insert(objs: Sequence[models.Model], *, batch_size: int) -> None:
    """Insert ``objs`` (all of one model) and set their primary keys.

    On PostgreSQL the rows go in with COPY, their ids reserved from the table's own sequence
    first: several times faster than bulk_create, whose per-value preparation dominates at this
    volume. The database checks every constraint either way. Foreign keys set as objects saved
    earlier in the same run (``entry=entry``) are resolved to their ids, as bulk_create does.
    """
    if not objs:
        return
    model = type(objs[0])
    if connection.vendor != "postgresql":
        model.objects.bulk_create(objs, batch_size=batch_size)
        return
    meta = model._meta
    fields = meta.concrete_fields
    relations = [f for f in fields if f.is_relation]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT nextval(pg_get_serial_sequence(%s, %s)) FROM generate_series(1, %s)",
            [meta.db_table, meta.pk.column, len(objs)],
        )
        for obj, (pk,) in zip(objs, cursor.fetchall(), strict=True):
            obj.pk = pk
            for f in relations:
                if getattr(obj, f.attname) is None and f.is_cached(obj):
                    setattr(obj, f.attname, getattr(obj, f.name).pk)
        columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
        json_fields = {f.attname for f in fields if isinstance(f, models.JSONField)}
        with cursor.cursor.copy(f"COPY {meta.db_table} ({columns}) FROM STDIN") as copy:
            for obj in objs:
                copy.write_row(
                    [
                        Jsonb(value) if f.attname in json_fields and value is not None else value
                        for f in fields
                        for value in (getattr(obj, f.attname),)
                    ]
                )
    # Rows now exist: later saves and relations must treat them as such.
    for obj in objs:
        obj._state.adding = False
        obj._state.db = connection.alias


class HashFactory:
    """Random, valid hashes with realistic structure, from one seeded generator."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        # The family of each PDQ of the last pdqs() call (-1: none); numbered across calls.
        self.last_families = np.zeros(0, dtype=np.int64)
        self._families_made = 0

    def md5s(self, n: int) -> list[str]:
        return _split_hex(self.rng.integers(0, 256, (n, 16), dtype=np.uint8).tobytes(), 16)

    def pdqs(self, n: int) -> list[str]:
        """``n`` PDQs, about a quarter of them in families: a base with 1-12 bits flipped, so
        that any two members are near-duplicates (within 24 bits; a match is <= 31)."""
        rng = self.rng
        hashes = rng.integers(0, 256, (n, 32), dtype=np.uint8)
        members = np.flatnonzero(rng.random(n) < NEAR_DUPLICATE_SHARE)
        self.last_families = np.full(n, -1, dtype=np.int64)
        if members.size:
            count = max(1, round(members.size / FAMILY_SIZE))
            bases = rng.integers(0, 256, (count, 32), dtype=np.uint8)
            family = rng.integers(0, count, members.size)
            hashes[members] = bases[family] ^ self.masks(
                rng.integers(1, 13, members.size), bits=256
            )
            self.last_families[members] = family + self._families_made
            self._families_made += count
        return _split_hex(hashes.tobytes(), 32)

    def qualities(self, n: int) -> list[int]:
        """Mostly 70-100; one in twenty 50-69; one in twenty featureless (< 50)."""
        rng = self.rng
        kind = rng.random(n)
        good = rng.integers(70, 101, n)
        fair = rng.integers(50, 70, n)
        poor = rng.integers(0, 50, n)
        return np.where(kind < 0.9, good, np.where(kind < 0.95, fair, poor)).tolist()

    def phashes(self, n: int) -> list[str]:
        """64-bit pHashes with 8 to 56 bits set, most near 32 as for real photos."""
        ones = np.clip(np.rint(self.rng.normal(32, 7, n)), 8, 56).astype(np.int64)
        return _split_hex(self.masks(ones, bits=64).tobytes(), 8)

    def masks(self, ones: np.ndarray, *, bits: int) -> np.ndarray:
        """One packed row of ``bits`` bits per element of ``ones``, with that many bits set at
        random distinct positions (all rows at once: a per-row choice is far slower)."""
        ranks = self.rng.random((len(ones), bits)).argsort(axis=1).argsort(axis=1)
        return np.packbits(ranks < ones[:, None], axis=1)

    def frames(
        self, *, featureless: bool = False, usable_only: bool = False
    ) -> list[dict[str, Any]]:
        """A short clip at one frame per second: consecutive frames differ by a few bits, with
        an occasional cut to a new scene. About one frame in sixteen is featureless (quality
        < 50); every frame of a ``featureless`` clip is; none when ``usable_only``."""
        rng = self.rng
        count = int(rng.integers(3, 41))
        scenes = rng.integers(0, 256, (count, 32), dtype=np.uint8)
        steps = self.masks(rng.integers(0, 12, count), bits=256)
        cuts = rng.random(count) < 0.1
        rows = np.empty((count, 32), dtype=np.uint8)
        rows[0] = scenes[0]
        for t in range(1, count):
            rows[t] = scenes[t] if cuts[t] else rows[t - 1] ^ steps[t]
        if featureless:
            low = np.ones(count, dtype=bool)
        elif usable_only:
            low = np.zeros(count, dtype=bool)
        else:
            low = rng.random(count) < 1 / 16
        qualities = np.where(low, rng.integers(0, 50, count), rng.integers(55, 101, count))
        hexes = _split_hex(rows.tobytes(), 32)
        return [{"t": t, "pdq": hexes[t], "q": int(qualities[t])} for t in range(count)]


@dataclass
class Totals:
    cases: dict[str, int] = field(default_factory=dict)
    images: int = 0
    videos: int = 0
    unpublishable: int = 0
    entries: int = 0
    volume_entries: int = 0
    rebacked: int = 0
    changes: int = 0
    reports: int = 0
    removed: int = 0
    flagged: int = 0
    delayed: int = 0  # publications moved after a feed that already ran later
    near_pairs: int = 0
    misuse: int = 0
    timings: dict[str, float] = field(default_factory=dict)


class Command(BaseCommand):
    help = (
        "Seed N cases (and optionally M more list entries), with partners and match reports, "
        "for benchmarks and demos. Fast bulk inserts; never for production."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--cases", type=int, required=True, metavar="N")
        parser.add_argument(
            "--entries",
            type=int,
            default=0,
            metavar="M",
            help="Also put M older entries on the default list (list volume for benchmarks).",
        )
        parser.add_argument("--seed", type=int, default=20261125, metavar="S")
        parser.add_argument("--partners", type=int, default=4, choices=range(1, 7))
        parser.add_argument("--batch-size", type=int, default=5000)

    def handle(
        self,
        *args: Any,
        cases: int,
        entries: int,
        seed: int,
        partners: int,
        batch_size: int,
        **options: Any,
    ) -> None:
        if (settings.SETTINGS_MODULE or "").endswith(".production"):
            raise CommandError("seed_demo writes made-up cases: it never runs in production.")
        if cases < 0 or entries < 0 or batch_size < 1:
            raise CommandError("--cases and --entries are 0 or more; --batch-size 1 or more.")
        try:
            self.hash_list = HashList.objects.get(slug=settings.TID_DEFAULT_HASH_LIST)
        except HashList.DoesNotExist:
            raise CommandError(
                f"The default list {settings.TID_DEFAULT_HASH_LIST!r} is missing: run migrate."
            ) from None
        self.verbosity = int(options.get("verbosity", 1))
        self.rng = np.random.default_rng(seed)
        self.hashes = HashFactory(self.rng)
        self.batch_size = batch_size
        self.now = timezone.now()
        self.totals = Totals()
        self.feed_head_at = self._feed_head()[1]
        started = time.perf_counter()
        with explicit_timestamps(
            Case, MediaItem, HashEntry, HashEntrySource, ListChange, MatchReport, NearDuplicatePair
        ):
            self._step("partners", lambda: self._partners(partners))
            self.family_cases: dict[int, set[int]] = {}
            accepted = self._step("cases", lambda: self._cases(cases))
            self._step("near-duplicates", self._near_duplicates)
            self._step("list volume", lambda: self._volume(entries))
            self._step("publication", lambda: self._publish(accepted))
        self._step("statistics", self._analyze)
        self.totals.timings["total"] = time.perf_counter() - started
        self._summary(seed=seed)

    def _analyze(self) -> None:
        """Refresh PostgreSQL's planner statistics for the tables just filled: until autovacuum
        gets to them, the planner would take them for the size they were and choose plans
        (nested loops over "a few" rows) that make the staff pages crawl."""
        if connection.vendor != "postgresql":
            return
        models_filled = (Case, MediaItem, HashEntry, HashEntrySource, ListChange, MatchReport)
        with connection.cursor() as cursor:
            for model in models_filled:
                cursor.execute(f"ANALYZE {connection.ops.quote_name(model._meta.db_table)}")

    def _step(self, name: str, work: Callable[[], Any]) -> Any:
        started = time.perf_counter()
        result = work()
        self.totals.timings[name] = time.perf_counter() - started
        if self.verbosity >= 2:
            self.stdout.write(f"  {name}: {self.totals.timings[name]:.1f} s")
        return result

    # --------------------------------------------------------------------------------------------
    # Actors
    # --------------------------------------------------------------------------------------------

    def _partners(self, count: int) -> None:
        self.partners: list[Partner] = []
        for name in PARTNER_NAMES[:count]:
            partner = Partner.objects.filter(name=name).first() or partner_create(
                name=name,
                contact_email=f"trust-and-safety@{name.lower()}.invalid",
                readable_lists=[self.hash_list],
            )
            self.partners.append(partner)
        # Each platform has its own pace: some scan hourly, some daily.
        self.partner_pace = self.rng.uniform(0.4, 2.5, len(self.partners))
        User = get_user_model()
        # Decisions need a decider. A dedicated account that cannot log in keeps made-up
        # decisions from being attributed to a real member of staff.
        self.decider, created = User.objects.get_or_create(
            **{User.USERNAME_FIELD: SEED_USER}, defaults={"is_active": False}
        )
        if created:
            self.decider.set_unusable_password()
            self.decider.save(update_fields=["password"])

    # --------------------------------------------------------------------------------------------
    # Cases and their files
    # --------------------------------------------------------------------------------------------

    def _cases(self, count: int) -> list[tuple[datetime, int]]:
        """Insert ``count`` cases, oldest first; return (decided_at, pk) of the accepted ones."""
        self.pin = new_pin()
        self.pin_hash = pin_hash(self.pin)  # one PIN for all: hashing 100,000 takes minutes
        window = SEEDED_WINDOW.total_seconds()
        # Sorted creation times (a mild upward trend, like a service becoming known), so that a
        # duplicate always points at an earlier case.
        offsets = np.sort(self.rng.random(count) ** 0.8 * window)
        start = self.now - SEEDED_WINDOW
        accepted: list[tuple[datetime, int]] = []
        self.used_numbers: set[str] = set()
        # (created_at, pk) of the accepted cases so far, oldest first: what a duplicate can be
        # a duplicate of.
        self.originals: list[tuple[datetime, int]] = []
        for first in range(0, count, self.batch_size):
            chunk = offsets[first : first + self.batch_size]
            created = [start + timedelta(seconds=float(s)) for s in chunk]
            with transaction.atomic():
                accepted += self._case_batch(created)
        return accepted

    def _case_batch(self, created: list[datetime]) -> list[tuple[datetime, int]]:
        rng, n, now = self.rng, len(created), self.now
        statuses = rng.choice(STATUSES[0], n, p=STATUSES[1])
        reporters = rng.choice(REPORTERS[0], n, p=REPORTERS[1])
        reasons = rng.choice(REJECTION_REASONS[0], n, p=REJECTION_REASONS[1])
        decision = self._delays(n, DECISION_MEDIAN_HOURS, sigma=1.1)
        withdrawal = self._delays(n, WITHDRAWAL_MEDIAN_HOURS, sigma=1.2)
        numbers = self._case_numbers(n)
        rows, duplicates = [], []
        for i in range(n):
            status, at = str(statuses[i]), created[i]
            fields: dict[str, Any] = {}
            if status in ("accepted", "not_accepted", "duplicate"):
                decided_at = at + decision[i]
                if decided_at > now:  # not decided yet: still being looked at
                    status = "in_review"
                else:
                    fields.update(decided_at=decided_at, decided_by_id=self.decider.pk)
                if status == "not_accepted":
                    fields["rejection_reason"] = str(reasons[i])
            elif status == "withdrawn":
                fields["withdrawn_at"] = min(at + withdrawal[i], now)
            if status == "in_review":
                fields["assigned_to_id"] = self.decider.pk
            (duplicates if status == "duplicate" else rows).append(
                Case(
                    case_number=numbers[i],
                    pin_hash=self.pin_hash,
                    reporter=str(reporters[i]),
                    under_18_when_made=True,
                    status=status,
                    hash_list_id=self.hash_list.pk,
                    created_at=at,
                    updated_at=fields.get("decided_at") or fields.get("withdrawn_at") or at,
                    **fields,
                )
            )
        bulk_insert(rows, batch_size=self.batch_size)
        self.originals += [(c.created_at, c.pk) for c in rows if c.status == "accepted"]
        # Duplicates go in second, each pointing at an accepted case reported before it (in
        # this batch or an earlier one); with none yet, the case is simply accepted.
        for case in duplicates:
            earlier = bisect.bisect_left(self.originals, (case.created_at,))
            if earlier:
                case.duplicate_of_id = self.originals[int(rng.integers(0, earlier))][1]
            else:
                case.status = "accepted"
        bulk_insert(duplicates, batch_size=self.batch_size)
        for case in duplicates:
            if case.status == "accepted":
                bisect.insort(self.originals, (case.created_at, case.pk))
        rows += duplicates
        for case in rows:
            self.totals.cases[case.status] = self.totals.cases.get(case.status, 0) + 1
        self._items(rows)
        return [(c.decided_at, c.pk) for c in rows if c.status == "accepted"]

    def _delays(self, n: int, median_hours: float, *, sigma: float) -> list[timedelta]:
        hours = self.rng.lognormal(np.log(median_hours), sigma, n)
        return [timedelta(hours=float(h)) for h in hours]

    def _case_numbers(self, n: int) -> list[str]:
        """``n`` case numbers unused so far, in this run or in the database. Drawn from the OS's
        generator like real ones, not the seeded one: redrawing taken numbers must not shift the
        seeded stream, so that a seed gives the same hashes on any database."""
        numbers: list[str] = []
        while len(numbers) < n:
            draws = [new_case_number() for _ in range(n - len(numbers))]
            taken = set(
                Case.objects.filter(case_number__in=draws).values_list("case_number", flat=True)
            )
            for number in draws:
                if number not in taken and number not in self.used_numbers:
                    self.used_numbers.add(number)
                    numbers.append(number)
        return numbers

    def _items(self, cases: list[Case]) -> None:
        rng, hashes = self.rng, self.hashes
        per_case = rng.choice(ITEMS_PER_CASE[0], len(cases), p=ITEMS_PER_CASE[1])
        owners = [case for case, k in zip(cases, per_case, strict=True) for _ in range(k)]
        n = len(owners)
        video = rng.random(n) < VIDEO_SHARE
        featureless = rng.random(n) < 0.03  # dark or blank clips: kept, never published
        md5s, pdqs, phashes = hashes.md5s(n), hashes.pdqs(n), hashes.phashes(n)
        families = hashes.last_families
        qualities = hashes.qualities(n)
        seconds = rng.integers(0, 60, n)
        items = []
        for i, case in enumerate(owners):
            at = case.created_at - timedelta(seconds=int(seconds[i]))  # hashed, then sent
            if video[i]:
                frames = hashes.frames(featureless=bool(featureless[i]))
                items.append(
                    MediaItem(
                        case=case,
                        media_type=MediaType.VIDEO,
                        md5=md5s[i],
                        vpdq=frames,
                        publishable=any(formats.pdq_publishable(f["q"]) for f in frames),
                        created_at=at,
                    )
                )
                self.totals.videos += 1
            else:
                items.append(
                    MediaItem(
                        case=case,
                        media_type=MediaType.IMAGE,
                        md5=md5s[i],
                        pdq=pdqs[i],
                        pdq_quality=qualities[i],
                        phash=phashes[i],
                        publishable=formats.pdq_publishable(qualities[i]),
                        created_at=at,
                    )
                )
                if families[i] >= 0:
                    self.family_cases.setdefault(int(families[i]), set()).add(case.pk)
                self.totals.images += 1
            self.totals.unpublishable += not items[-1].publishable
        bulk_insert(items, batch_size=self.batch_size)

    def _near_duplicates(self) -> None:
        """Pair the cases whose images share a PDQ family, then count each case's near cases
        and flag misuse as case_near_duplicates_refresh does (from every recorded pair)."""
        pairs: set[tuple[int, int]] = set()
        for members in self.family_cases.values():
            pairs.update((a, b) for a in members for b in members if a != b)
        involved = sorted({a for a, _b in pairs})
        created = dict(Case.objects.filter(pk__in=involved).values_list("pk", "created_at"))
        rows = [
            NearDuplicatePair(case_id=a, other_id=b, found_at=max(created[a], created[b]))
            for a, b in sorted(pairs)
        ]
        with transaction.atomic():
            bulk_insert(rows, batch_size=self.batch_size)
            updates = [
                Case(pk=case_id, near_duplicate_cases=near, misuse_suspected=misuse)
                for case_id, near, misuse in near_duplicate_counts(case_ids=involved)
            ]
            Case.objects.bulk_update(
                updates, ["near_duplicate_cases", "misuse_suspected"], batch_size=self.batch_size
            )
        self.totals.near_pairs = len(rows) // 2
        self.totals.misuse = sum(case.misuse_suspected for case in updates)

    # --------------------------------------------------------------------------------------------
    # The list: entries, their feed changes and partners' match reports
    # --------------------------------------------------------------------------------------------

    def _volume(self, count: int) -> None:
        """``count`` older entries, published in time order over the year before the window."""
        if not count:
            return
        window = VOLUME_WINDOW.total_seconds()
        start = self.now - SEEDED_WINDOW - VOLUME_WINDOW
        made = 0
        while made < count:
            n = min(self.batch_size, count - made)
            offsets = np.sort(self.rng.random(n)) * window * (n / count) + window * made / count
            published = [start + timedelta(seconds=float(s)) for s in offsets]
            candidates = self._volume_entries(n)
            with transaction.atomic():
                self._lock_feed()
                existing = self._existing(
                    [(e.hash_type, e.value) for e in candidates], for_update=False
                )
                seen: set[tuple[str, str]] = set()
                keep = []
                for entry, at in zip(candidates, published, strict=True):
                    key = (entry.hash_type, entry.value)
                    if key not in existing and key not in seen:  # taken: drawn again next round
                        seen.add(key)
                        keep.append((entry, at))
                self._write([e for e, _at in keep], [at for _e, at in keep], sources=[])
            made += len(keep)
            self.totals.volume_entries += len(keep)

    def _volume_entries(self, n: int) -> list[HashEntry]:
        """List volume in the proportions a list of images and some videos has."""
        kinds = self.rng.choice(
            ["pdq", "phash", "md5-image", "md5-video", "vpdq"],
            n,
            p=[0.33, 0.3, 0.3, 0.04, 0.03],
        )
        pdqs, phashes, md5s = self.hashes.pdqs(n), self.hashes.phashes(n), self.hashes.md5s(n)
        qualities = self.rng.integers(50, 101, n)  # only publishable hashes are ever listed
        entries = []
        for i, kind in enumerate(kinds):
            if kind == "pdq":
                fields = dict(hash_type=HashType.PDQ, value=pdqs[i], quality=int(qualities[i]))
            elif kind == "phash":
                fields = dict(hash_type=HashType.PHASH, value=phashes[i])
            elif kind == "vpdq":
                frames = self.hashes.frames(usable_only=True)
                fields = dict(
                    hash_type=HashType.VPDQ,
                    value=vpdq_digest(frames),
                    frames=frames,
                    quality=min(f["q"] for f in frames),
                )
            else:
                fields = dict(hash_type=HashType.MD5, value=md5s[i])
            media = MediaType.VIDEO if kind in ("md5-video", "vpdq") else MediaType.IMAGE
            entries.append(
                HashEntry(
                    hash_list_id=self.hash_list.pk,
                    media_type=media,
                    backing_case_count=1,  # an older, unseeded case (see the module docstring)
                    **fields,
                )
            )
        return entries

    def _publish(self, accepted: list[tuple[datetime, int]]) -> None:
        """Publish the accepted cases' files in the order they were decided, as case_accept
        would have, so that the feed's times follow the decisions."""
        accepted.sort()
        for first in range(0, len(accepted), self.batch_size):
            chunk = accepted[first : first + self.batch_size]
            decided = {pk: at for at, pk in chunk}
            items = sorted(
                MediaItem.objects.filter(case_id__in=decided, publishable=True),
                key=lambda item: (decided[item.case_id], item.case_id, item.pk),
            )
            wanted: dict[tuple[str, str], tuple[Any, list[MediaItem], datetime]] = {}
            for item in items:
                # The sequencer numbers a change a few seconds after the decision commits.
                at = decided[item.case_id] + timedelta(seconds=float(self.rng.uniform(1, 5)))
                for h in media_item_publishable_hashes(item):
                    wanted.setdefault((h.hash_type, h.value), (h, [], at))[1].append(item)
            with transaction.atomic():
                self._lock_feed()
                self._publish_chunk(wanted)

    def _publish_chunk(
        self, wanted: dict[tuple[str, str], tuple[Any, list[MediaItem], datetime]]
    ) -> None:
        existing = self._existing(list(wanted), for_update=True)
        new_entries, published, sources = [], [], []
        rebacked: list[HashEntry] = []
        reactivated: list[tuple[HashEntry, datetime]] = []
        for key, (h, items, at) in wanted.items():
            entry = existing.get(key)
            if entry is None:
                entry = HashEntry(
                    hash_list_id=self.hash_list.pk,
                    hash_type=h.hash_type,
                    value=h.value,
                    media_type=h.media_type,
                    quality=h.quality,
                    frames=h.frames,
                    backing_case_count=len({i.case_id for i in items}),
                )
                new_entries.append(entry)
                published.append(at)
            else:
                # The same hash is already listed (an earlier case, or an earlier run with the
                # same seed): these files back it too, as hash_entries_publish_for_items does.
                entry.backing_case_count += len({i.case_id for i in items})
                entry.updated_at = max(entry.updated_at, at)
                if (
                    entry.status == HashEntry.Status.REMOVED
                    and entry.removal_reason in SELF_HEALING_REMOVALS
                ):
                    entry.status, entry.removal_reason = HashEntry.Status.ACTIVE, ""
                    reactivated.append((entry, at))
                rebacked.append(entry)
            sources += [
                HashEntrySource(entry=entry, media_item=item, created_at=at) for item in items
            ]
        HashEntry.objects.bulk_update(
            rebacked,
            ["backing_case_count", "status", "removal_reason", "updated_at"],
            batch_size=1000,
        )
        self.totals.rebacked += len(rebacked)
        self._write(new_entries, published, sources=sources, reactivated=reactivated)
        self.totals.entries += len(new_entries)

    def _lock_feed(self) -> None:
        """Take the sequencer's lock for this transaction: nothing else numbers changes on the
        list while seeded changes get theirs (SQLite's single writer does this on its own)."""
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [SEQUENCER_LOCK_ID])

    def _feed_head(self) -> tuple[int, datetime | None]:
        """The list's last seq and its time. sequenced_at never goes backwards along seq, so
        the last row has the latest time: one step down the (list, seq) unique index, where
        Max("sequenced_at") would scan the whole feed for every batch."""
        last = (
            ListChange.objects.filter(hash_list=self.hash_list, seq__isnull=False)
            .order_by("-seq")
            .values_list("seq", "sequenced_at")
            .first()
        )
        return last if last else (0, None)

    def _existing(
        self, keys: Sequence[tuple[str, str]], *, for_update: bool
    ) -> dict[tuple[str, str], HashEntry]:
        """The entries of the list already holding any of ``keys``: one query per hash type,
        each an index-only lookup in the (list, type, value) unique index."""
        by_type: dict[str, list[str]] = {}
        for hash_type, value in keys:
            by_type.setdefault(hash_type, []).append(value)
        found: dict[tuple[str, str], HashEntry] = {}
        for hash_type, values in by_type.items():
            rows = HashEntry.objects.filter(
                hash_list_id=self.hash_list.pk, hash_type=hash_type, value__in=values
            )
            if for_update:
                rows = rows.select_for_update().order_by("pk")
            else:
                rows = rows.only("hash_type", "value")
            found.update({(e.hash_type, e.value): e for e in rows})
        return found

    def _write(
        self,
        entries: list[HashEntry],
        published: list[datetime],
        *,
        sources: list[HashEntrySource],
        reactivated: Sequence[tuple[HashEntry, datetime]] = (),
    ) -> None:
        """Insert ``entries`` published at the given (ascending) times with their sequenced
        ``add`` changes and match reports. Runs under the feed lock (_lock_feed)."""
        seq, last_at = self._feed_head()
        changes = []
        timeline = sorted(
            [*zip(entries, published, strict=True), *reactivated], key=lambda pair: pair[1]
        )
        for entry, at in timeline:
            if self.feed_head_at and at < self.feed_head_at:
                self.totals.delayed += 1
            # sequenced_at never goes backwards on a list, even past rows already in the feed.
            at = max(at, last_at) if last_at else at
            last_at, seq = at, seq + 1
            if entry.pk is None:
                entry.created_at = entry.updated_at = at
            changes.append(
                ListChange(
                    hash_list_id=self.hash_list.pk,
                    entry=entry,
                    op=ListChange.Op.ADD,
                    seq=seq,
                    sequenced_at=at,
                    created_at=at - timedelta(milliseconds=200),
                )
            )
        reports = self._reports(entries)
        for rows in (entries, sources, changes, reports):
            bulk_insert(rows, batch_size=self.batch_size)
        self.totals.changes += len(changes)

    def _reports(self, entries: list[HashEntry]) -> list[MatchReport]:
        """Partners' reports on a share of ``entries`` (after each was published, never in the
        future); flags entries that distinct partners called not relevant. Every random draw is
        made for the whole batch at once."""
        rng, now, partners = self.rng, self.now, len(self.partners)
        chosen = np.flatnonzero(rng.random(len(entries)) < MATCHED_SHARE)
        if not chosen.size:
            return []
        # 1-3 distinct partners per matched entry: the first k of a random order of partners.
        how_many = rng.integers(1, min(3, partners) + 1, chosen.size)
        order = rng.random((chosen.size, partners)).argsort(axis=1)
        picked = np.arange(partners)[None, :] < how_many[:, None]
        entry_index = np.repeat(chosen, how_many)
        partner_index = order[picked]
        n = entry_index.size
        pace = self.partner_pace[partner_index]
        match_hours = rng.lognormal(np.log(MATCH_MEDIAN_HOURS * pace), 1.3)
        action_hours = rng.lognormal(np.log(2.0 * pace), 1.0)
        actions = rng.choice(ACTIONS[0], n, p=ACTIONS[1])
        pdq_distance = np.minimum(rng.geometric(0.12, n) - 1, formats.PDQ_MATCH_DISTANCE)
        phash_distance = rng.integers(0, formats.PHASH_MATCH_DISTANCE + 1, n)
        reports = []
        not_relevant: dict[int, list[datetime]] = {}
        for i in range(n):
            entry = entries[entry_index[i]]
            matched_at = entry.created_at + timedelta(hours=float(match_hours[i]))
            if matched_at > now:
                continue
            action = str(actions[i])
            action_at = matched_at
            if action != "pending_review":
                action_at = min(matched_at + timedelta(hours=float(action_hours[i])), now)
            if action == "not_relevant":
                not_relevant.setdefault(int(entry_index[i]), []).append(action_at)
            distance = {HashType.PDQ: pdq_distance[i], HashType.PHASH: phash_distance[i]}.get(
                entry.hash_type, 0
            )
            reports.append(
                MatchReport(
                    partner_id=self.partners[partner_index[i]].pk,
                    entry=entry,
                    client_ref=f"seed-{secrets.token_hex(10)}",
                    hash_type=entry.hash_type,
                    distance=int(distance),
                    content_ref=f"content/{secrets.token_hex(6)}",
                    matched_at=matched_at,
                    action=action,
                    action_at=action_at,
                    created_at=matched_at,
                    updated_at=action_at,
                )
            )
            self.totals.removed += action == "removed"
        for index, stamps in not_relevant.items():
            if len(stamps) >= 2:  # flagged when the second distinct partner said so
                entries[index].flagged_at = sorted(stamps)[1]
                self.totals.flagged += 1
        self.totals.reports += len(reports)
        return reports

    # --------------------------------------------------------------------------------------------

    def _summary(self, *, seed: int) -> None:
        t = self.totals
        head_seq = self._feed_head()[0]
        cases = sum(t.cases.values())
        by_status = ", ".join(f"{k} {v:,}" for k, v in sorted(t.cases.items()))
        rebacked = f"; already listed, now also backed by these cases: {t.rebacked:,}"
        rebacked = rebacked if t.rebacked else ""
        lines = [
            f"Seeded with --seed {seed} in {t.timings['total']:.1f} s:",
            f"  cases        {cases:,} ({by_status or 'none'})",
            f"  files        {t.images + t.videos:,} ({t.images:,} images, {t.videos:,} videos; "
            f"{t.unpublishable:,} featureless, kept but not published)",
            f"  list entries {t.entries + t.volume_entries:,} new on {self.hash_list.slug} "
            f"({t.entries:,} from accepted cases, {t.volume_entries:,} older list volume"
            f"{rebacked})",
            f"  near-dups    {t.near_pairs:,} pairs of cases with near-duplicate images; "
            f"{t.misuse:,} cases flagged as suspected misuse",
            f"  feed         {t.changes:,} changes sequenced; the list's feed is at seq "
            f"{head_seq:,}",
            f"  partners     {', '.join(p.name for p in self.partners)}: {t.reports:,} match "
            f"reports, {t.removed:,} removals; {t.flagged:,} entries flagged for review",
            "  timings      "
            + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in t.timings.items()),
        ]
        if t.delayed:
            lines.append(
                f"  Note: the feed already ran to {self.feed_head_at:%Y-%m-%d %H:%M}, so "
                f"{t.delayed:,} publications were dated after it (and fewer partner reports fit "
                "before now). An empty database gives the most realistic times."
            )
        if cases:
            lines.append(
                f"  Every seeded case opens with the PIN {self.pin} (shown once; made-up data)."
            )
        self.stdout.write(self.style.SUCCESS(lines[0]))
        for line in lines[1:]:
            self.stdout.write(line)
