"""Reads on hash lists, scoped to the partner asking (same 404 for "missing" and "not yours")."""

import json
from collections.abc import Iterator
from datetime import UTC
from typing import Any

from django.db import connections
from django.db.backends.utils import CursorWrapper
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


# The feed's hot path on PostgreSQL: the database writes each change's JSON itself, so a page of
# 10,000 changes costs one indexed range scan and no per-row Python work.
_FEED_SQL = """
SELECT c.seq, (jsonb_build_object(
    'seq', c.seq, 'op', c.op, 'id', e.public_id, 'hash_type', e.hash_type, 'value', e.value,
    'media_type', e.media_type, 'quality', e.quality,
    'at', to_char(c.sequenced_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
) || CASE WHEN e.frames IS NULL THEN '{}'::jsonb
          ELSE jsonb_build_object('frames', e.frames) END)::text
FROM hashlists_listchange c JOIN hashlists_hashentry e ON e.id = c.entry_id
WHERE c.hash_list_id = %s AND c.seq > %s
ORDER BY c.seq
LIMIT %s
"""


def list_changes_page_json(
    *, hash_list: HashList, after: int, limit: int
) -> Iterator[tuple[int, str]]:
    """Like list_changes_page, as (seq, the change as JSON text): built by PostgreSQL when the
    database is PostgreSQL, in Python otherwise (the embedded SQLite default).

    On PostgreSQL the query runs before this returns, on the database reads are routed to now
    (the replica inside tidportal.db_router.replica_reads); the rows are then streamed from
    the client-side result."""
    database = connections[ListChange.objects.db]
    if database.vendor == "postgresql":
        cursor = database.cursor()
        cursor.execute(_FEED_SQL, [hash_list.pk, after, limit + 1])
        return _fetched(cursor)
    return _page_json_python(hash_list=hash_list, after=after, limit=limit)


def _fetched(cursor: CursorWrapper) -> Iterator[tuple[int, str]]:
    with cursor:
        while rows := cursor.fetchmany(2_000):
            yield from rows


def _page_json_python(*, hash_list: HashList, after: int, limit: int) -> Iterator[tuple[int, str]]:
    for seq, op, public_id, hash_type, value, media_type, quality, frames, at in list_changes_page(
        hash_list=hash_list, after=after, limit=limit
    ):
        change = {
            "seq": seq,
            "op": op,
            "id": str(public_id),
            "hash_type": hash_type,
            "value": value,
            "media_type": media_type,
            "quality": quality,
            "at": at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        }
        if frames is not None:
            change["frames"] = frames
        yield seq, json.dumps(change, separators=(",", ":"))
