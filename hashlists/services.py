"""Writes on hash lists and the change feed."""

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection, transaction
from django.db.models import Count, Max, Q
from django.utils import timezone
from django.utils.translation import gettext as _

from hashlists.models import (
    HashEntry,
    HashEntrySource,
    HashList,
    HashType,
    ListChange,
    MediaType,
)
from tidkit import formats
from tidportal.queueing import queue_after_commit

if TYPE_CHECKING:
    from cases.models import MediaItem

# One lock id for "the sequencer" across every process (pg_advisory_xact_lock takes a bigint).
SEQUENCER_LOCK_ID = 0x7469645F736571  # "tid_seq"
SEQUENCE_BATCH = 5000


def list_change_record(*, entry: HashEntry, op: str) -> ListChange:
    """Append an add or remove of ``entry`` to its list's feed, unsequenced, in the caller's
    transaction (the outbox); the sequencer is queued to run once that transaction commits."""
    from hashlists import tasks

    change = ListChange.objects.create(hash_list_id=entry.hash_list_id, entry=entry, op=op)
    queue_after_commit(tasks.list_changes_sequence)
    return change


def list_changes_sequence() -> int:
    """Give every committed, unsequenced change the next consecutive seq of its list.

    Guarantees: seqs on a list are 1, 2, 3, ... with no gap or repeat; a change gets its seq only
    after the transaction that wrote it committed; ``sequenced_at`` never goes backwards on a list.
    One sequencer runs at a time (a PostgreSQL advisory lock; SQLite's single writer on the
    embedded default). Safe to call at any time and any number of times: returns how many changes
    it sequenced, 0 when nothing was pending.
    """
    total = 0
    while True:
        sequenced = _sequence_batch()
        total += sequenced
        if sequenced < SEQUENCE_BATCH:
            return total


@transaction.atomic
def _sequence_batch() -> int:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [SEQUENCER_LOCK_ID])
    pending = list(
        ListChange.objects.filter(seq__isnull=True)
        .order_by("id")
        .values_list("id", "hash_list_id")[:SEQUENCE_BATCH]
    )
    if not pending:
        return 0
    list_ids = sorted({list_id for _, list_id in pending})
    now = timezone.now()
    # Each list continues from its highest seq. No counter is stored elsewhere, so no stale copy
    # of one (an admin form saving a list, say) can ever make the sequencer reuse a number.
    last = {
        row["hash_list_id"]: row
        for row in ListChange.objects.filter(hash_list_id__in=list_ids, seq__isnull=False)
        .values("hash_list_id")
        .annotate(seq=Max("seq"), at=Max("sequenced_at"))
    }
    next_seq = {list_id: last[list_id]["seq"] if list_id in last else 0 for list_id in list_ids}
    # A clock stepping backwards must not make a later change look older than an earlier one.
    stamps = {
        list_id: max(now, last[list_id]["at"]) if list_id in last else now for list_id in list_ids
    }
    changes = []
    for change_id, list_id in pending:
        next_seq[list_id] += 1
        changes.append(
            ListChange(pk=change_id, seq=next_seq[list_id], sequenced_at=stamps[list_id])
        )
    ListChange.objects.bulk_update(changes, ["seq", "sequenced_at"], batch_size=1000)
    # Partners following a list hear of its new highest seq once this transaction commits.
    from partners.webhooks import webhook_deliveries_queue

    for list_id in list_ids:
        webhook_deliveries_queue(hash_list_id=list_id, seq=next_seq[list_id])
    return len(changes)


# ------------------------------------------------------------------------------------------------
# Entries backed by cases
# ------------------------------------------------------------------------------------------------

# Removals that a new backing case undoes; a staff decision (or a misuse finding) is not undone
# by another report of the same hash: staff must review it.
SELF_HEALING_REMOVALS = {
    HashEntry.RemovalReason.WITHDRAWN,
    HashEntry.RemovalReason.NO_BACKING_CASE,
}


@dataclass(frozen=True)
class PublishableHash:
    hash_type: str
    value: str
    media_type: str
    quality: int | None
    frames: list[dict[str, Any]] | None


def media_item_publishable_hashes(item: "MediaItem") -> list[PublishableHash]:
    """The hashes of a reported file that may go on a list (DESIGN.md section 3).

    A featureless image (PDQ quality < 50) publishes nothing; a near-uniform pHash is left out;
    a video publishes its MD5 and its usable frames (quality >= 50) as one vPDQ entry, whose value
    is the SHA-256 of the canonical frame list.
    """
    if not item.publishable:
        return []
    if item.media_type == MediaType.IMAGE:
        hashes = [
            PublishableHash(HashType.MD5, item.md5, MediaType.IMAGE, None, None),
            PublishableHash(HashType.PDQ, item.pdq, MediaType.IMAGE, item.pdq_quality, None),
        ]
        if formats.phash_publishable(item.phash):
            hashes.append(PublishableHash(HashType.PHASH, item.phash, MediaType.IMAGE, None, None))
        return hashes
    frames = [f for f in item.vpdq or () if formats.pdq_publishable(f["q"])]
    return [
        PublishableHash(HashType.MD5, item.md5, MediaType.VIDEO, None, None),
        PublishableHash(
            HashType.VPDQ,
            vpdq_digest(frames),
            MediaType.VIDEO,
            min(f["q"] for f in frames),
            frames,
        ),
    ]


def vpdq_digest(frames: Sequence[dict[str, Any]]) -> str:
    canonical = json.dumps(list(frames), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def hash_entries_publish_for_items(
    *, hash_list: HashList, items: Iterable["MediaItem"]
) -> list[HashEntry]:
    """Put the publishable hashes of ``items`` on ``hash_list``, each backed by its item.

    Must run inside the caller's transaction (the case decision). Creates missing entries,
    re-activates entries whose removal a new backing case undoes (withdrawn, unbacked), and
    records an ``add`` change for every entry that became active. Idempotent: publishing the
    same items twice changes nothing. Concurrent publishers of the same hash are serialised by
    row locks taken in a fixed order.
    """
    wanted: dict[tuple[str, str], tuple[PublishableHash, list[MediaItem]]] = {}
    for item in items:
        for h in media_item_publishable_hashes(item):
            wanted.setdefault((h.hash_type, h.value), (h, []))[1].append(item)
    if not wanted:
        return []
    HashEntry.objects.bulk_create(
        [
            HashEntry(
                hash_list=hash_list,
                hash_type=h.hash_type,
                value=h.value,
                media_type=h.media_type,
                quality=h.quality,
                frames=h.frames,
                status=HashEntry.Status.REMOVED,
                removal_reason=HashEntry.RemovalReason.NO_BACKING_CASE,
            )
            # One insertion order for every writer, so concurrent publishers of overlapping
            # hashes queue behind each other instead of deadlocking.
            for h, _items in (wanted[key] for key in sorted(wanted))
        ],
        ignore_conflicts=True,  # created concurrently or earlier: locked and updated below
    )
    entries = _lock_entries(hash_list=hash_list, keys=wanted.keys())
    HashEntrySource.objects.bulk_create(
        [
            HashEntrySource(entry=entry, media_item=item)
            for entry in entries
            for item in wanted[(entry.hash_type, entry.value)][1]
        ],
        ignore_conflicts=True,
    )
    # A source withdrawn earlier (the same file on a case that was withdrawn, then accepted again)
    # backs the entry again.
    HashEntrySource.objects.filter(
        entry__in=entries, media_item__in=[i for _h, items_ in wanted.values() for i in items_]
    ).update(withdrawn_at=None)
    _entries_refresh(entries)
    return entries


def hash_entries_unback_items(*, items: Iterable["MediaItem"], reason: str) -> list[HashEntry]:
    """Stop ``items`` from backing their entries; remove every entry left with no backing.

    Must run inside the caller's transaction. ``reason`` is the removal reason given to entries
    that lose their last backing case (``withdrawn`` or ``no_backing_case``). Records a
    ``remove`` change for each entry removed. Idempotent.
    """
    item_ids = [i.pk for i in items]
    entry_ids = set(
        HashEntrySource.objects.filter(
            media_item_id__in=item_ids, withdrawn_at__isnull=True
        ).values_list("entry_id", flat=True)
    )
    if not entry_ids:
        return []
    entries = list(HashEntry.objects.select_for_update().filter(pk__in=entry_ids).order_by("pk"))
    HashEntrySource.objects.filter(media_item_id__in=item_ids, withdrawn_at__isnull=True).update(
        withdrawn_at=timezone.now()
    )
    _entries_refresh(entries, removal_reason=reason)
    return entries


def _lock_entries(*, hash_list: HashList, keys: Iterable[tuple[str, str]]) -> list[HashEntry]:
    condition = Q()
    for hash_type, value in keys:
        condition |= Q(hash_type=hash_type, value=value)
    return list(
        HashEntry.objects.select_for_update().filter(condition, hash_list=hash_list).order_by("pk")
    )


def _entries_refresh(entries: Sequence[HashEntry], *, removal_reason: str = "") -> None:
    """Recount each locked entry's backing cases; activate or remove it, recording the change."""
    counts = dict(
        HashEntrySource.objects.filter(entry__in=entries, withdrawn_at__isnull=True)
        .values("entry_id")
        .annotate(cases=Count("media_item__case_id", distinct=True))
        .values_list("entry_id", "cases")
    )
    for entry in entries:
        entry.backing_case_count = counts.get(entry.pk, 0)
        fields = ["backing_case_count", "updated_at"]
        if entry.backing_case_count and entry.status == HashEntry.Status.REMOVED:
            if entry.removal_reason in SELF_HEALING_REMOVALS:
                entry.status, entry.removal_reason = HashEntry.Status.ACTIVE, ""
                fields += ["status", "removal_reason"]
                list_change_record(entry=entry, op=ListChange.Op.ADD)
        elif not entry.backing_case_count and entry.status == HashEntry.Status.ACTIVE:
            entry.status = HashEntry.Status.REMOVED
            entry.removal_reason = removal_reason or HashEntry.RemovalReason.NO_BACKING_CASE
            fields += ["status", "removal_reason"]
            list_change_record(entry=entry, op=ListChange.Op.REMOVE)
        entry.save(update_fields=fields)


STAFF_REMOVAL_REASONS = (
    HashEntry.RemovalReason.STAFF,
    HashEntry.RemovalReason.FALSE_POSITIVE,
    HashEntry.RemovalReason.MISUSE,
)


@transaction.atomic
def hash_entry_remove(*, entry: HashEntry, staff: Any, reason: str, note: str = "") -> HashEntry:
    """Take an entry off its list by staff decision, with a reason (partners hear of it through a
    ``remove`` change). The decision stands: a later report of the same hash does not bring it
    back. Raises PermissionDenied without ``hashlists.change_hashentry``; ValidationError for an
    unknown reason or an entry already removed."""
    if not staff.has_perm("hashlists.change_hashentry"):
        raise PermissionDenied(_("Only supervisors can remove entries from a list."))
    if reason not in STAFF_REMOVAL_REASONS:
        raise ValidationError({"reason": _("Choose why the entry is removed.")})
    entry = HashEntry.objects.select_for_update().get(pk=entry.pk)
    if entry.status == HashEntry.Status.REMOVED:
        raise ValidationError({"status": _("This entry is already off the list.")})
    entry.status, entry.removal_reason = HashEntry.Status.REMOVED, reason
    entry.removal_note = note.strip()
    entry.flagged_at = None  # reviewed: it leaves the flagged queue
    entry._change_reason = f"removed by staff: {reason}"
    entry.save(
        update_fields=["status", "removal_reason", "removal_note", "flagged_at", "updated_at"]
    )
    list_change_record(entry=entry, op=ListChange.Op.REMOVE)
    return entry
