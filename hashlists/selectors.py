"""Reads on hash lists, scoped to the partner asking (same 404 for "missing" and "not yours")."""

from collections.abc import Iterator
from typing import Any

from django.db.models import Max, QuerySet
from django.http import Http404

from hashlists.models import HashList, ListChange, Snapshot
from partners.models import Partner


def hash_lists_for_partner(*, partner: Partner) -> QuerySet[HashList]:
    return (
        HashList.objects.filter(published=True, readers=partner)
        .annotate(last_seq=Max("changes__seq"))
        .order_by("slug")
    )


def hash_list_get_for_partner(*, partner: Partner, slug: str) -> HashList:
    hash_list = HashList.objects.filter(published=True, readers=partner, slug=slug).first()
    if hash_list is None:
        raise Http404  # the same answer for a list that does not exist and one not granted
    return hash_list


def snapshot_get_for_partner(*, partner: Partner, slug: str, seq: int | None = None) -> Snapshot:
    hash_list = hash_list_get_for_partner(partner=partner, slug=slug)
    snapshots = Snapshot.objects.filter(hash_list=hash_list)
    snapshot = (
        snapshots.filter(seq=seq).first() if seq is not None else snapshots.order_by("-seq").first()
    )
    if snapshot is None:
        raise Http404
    return snapshot


def list_changes_page(*, hash_list: HashList, after: int, limit: int) -> Iterator[tuple[Any, ...]]:
    """Sequenced changes with seq > ``after``, in order, at most ``limit`` + 1 rows (the extra
    one tells the caller there is more). Keyset pagination on the unique (list, seq) index;
    unsequenced rows are invisible. Streamed from the database in chunks."""
    rows = (
        ListChange.objects.filter(hash_list=hash_list, seq__gt=after)
        .order_by("seq")
        .values_list(
            "seq",
            "op",
            "entry__public_id",
            "entry__hash_type",
            "entry__value",
            "entry__media_type",
            "entry__quality",
            "entry__frames",
            "sequenced_at",
        )[: limit + 1]
    )
    return rows.iterator(chunk_size=2_000)
