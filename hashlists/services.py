"""Writes on hash lists and the change feed."""

from functools import partial

from django.db import connection, transaction
from django.db.models import Max
from django.utils import timezone

from hashlists.models import HashEntry, ListChange

# One lock id for "the sequencer" across every process (pg_advisory_xact_lock takes a bigint).
SEQUENCER_LOCK_ID = 0x7469645F736571  # "tid_seq"
SEQUENCE_BATCH = 5000


def list_change_record(*, entry: HashEntry, op: str) -> ListChange:
    """Append an add or remove of ``entry`` to its list's feed, unsequenced, in the caller's
    transaction (the outbox); the sequencer is queued to run once that transaction commits."""
    from hashlists import tasks

    change = ListChange.objects.create(hash_list_id=entry.hash_list_id, entry=entry, op=op)
    transaction.on_commit(partial(tasks.list_changes_sequence.delay))
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
    return len(changes)
