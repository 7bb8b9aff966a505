"""Reads of the StopNCII-compatible API: FetchHashes pages, built from the change feed.

What a page holds. A record is one hash (signal type and value) in its latest state: Active when
one of the partner's lists has it, Withdrawn when every list that had it removed it. A hash is
reported at the position of its latest sequenced change on any of the partner's lists, so that a
fetch from ``startTimestamp`` returns exactly the hashes whose state changed at or after that
second, each once, in feed order; a record fetched earlier is superseded by a later one of the
same hash, which is what the client expects ("if you see the same SignalType+Hash in a later
iteration, it should completely replace the previously observed record"). Only sequenced changes
count (DESIGN.md section 4), so an uncommitted or unsequenced change is invisible here too.

Serving several lists. A partner granted several lists reads them all through one base URL,
merged (Hasher-Matcher-Actioner and the threatexchange CLI hold one StopNCII configuration, so a
list per URL would leave the others unreachable). The merge order is (sequenced_at, list, seq);
a hash on two lists is one record whose ``caseNumbers`` name both entries with their own status.
A list granted later reaches a partner that fetches from the start (``startTimestamp`` 0); an
incremental fetch sees its changes from then on.

A fetch from the start (``startTimestamp`` before the second of every list's first change: the
client's default 10, or a checkpoint kept from a fetch that found nothing) leaves out the hashes
that were already withdrawn when it began, as a snapshot holds only active entries: a client
starting empty has nothing to delete. Hashes withdrawn while it runs are sent (the client may
have received them as Active on an earlier page). This matters in practice: python-threatexchange
(1.2.17, the current release) never deletes a Withdrawn record in its exchange layer
(``stop_ncii_api._get_delta_mapping`` compares the hash value with the withdrawn statuses, not the
status), so the threatexchange CLI and Hasher-Matcher-Actioner would otherwise import every hash
ever withdrawn, and keep matching it, on their first fetch. Incremental fetches send Withdrawn
records, which those tools ignore for the same reason; direct users of ``StopNCIIAPI`` see them.
A client that keeps its data must keep its checkpoint with it: restarting from the start with old
data would not hear of hashes withdrawn in between.

Why ``nextSetTimestamp`` never skips a change. The client only keeps whole seconds, and checkpoints
``nextSetTimestamp`` after every page. We hand out the second of the last change the page
covered, not the next second: a fetch from second S returns every change sequenced in S or later, so
resuming there re-sends the rest of S (harmless: records replace each other) and also gets any
change sequenced in S after this page was read. Every change not yet delivered comes later than
the last one delivered: on one list the sequencer numbers changes in time order and never stamps
a change earlier than the one before it; across lists, changes sequenced later are stamped later
(one sequencer at a time, reading the clock after it takes its lock). Within one fetch, the page
token holds each list's last seq, so paging is exact whatever the clock does.
"""

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.core import signing
from django.core.exceptions import ValidationError
from django.db.models import Exists, OuterRef, Q, Subquery
from django.utils.translation import gettext as _

from hashlists.models import HashEntry, HashList, HashType, ListChange, MediaType
from partners.compat import vocabulary
from partners.models import MatchReport, Partner

PAGE_SIZE_DEFAULT = 800  # the client's own default
PAGE_SIZE_MAX = 10_000
_TOKEN_SALT = "partners.compat.stopncii.page"  # noqa: S105 - a signing namespace, not a secret

# The entries this API serves (vocabulary.SIGNAL_TYPES), as a filter on changes.
_SERVED_CHANGES = Q(entry__hash_type=HashType.PDQ) | Q(
    entry__hash_type=HashType.MD5, entry__media_type=MediaType.VIDEO
)
_SERVED_ENTRIES = Q(hash_type=HashType.PDQ) | Q(hash_type=HashType.MD5, media_type=MediaType.VIDEO)


@dataclass(frozen=True)
class HashRecord:
    """One hash in its latest state (the client's StopNCIIHashRecord, serializers.py)."""

    last_modified: int  # whole seconds since the epoch, of the hash's latest change
    signal_type: str
    hash_value: str
    status: str
    case_numbers: dict[str, str]  # entry public id -> that entry's status
    feedbacks: list[dict] = field(default_factory=list)


@dataclass(frozen=True)
class HashRecordsPage:
    records: list[HashRecord]
    next_page_token: str | None
    next_set_timestamp: int
    has_more: bool


def stopncii_hash_records_page(
    *, partner: Partner, start_timestamp: int, page_size: int, page_token: str = ""
) -> HashRecordsPage:
    """One FetchHashes page for ``partner``: the hashes of its lists whose state changed in
    second ``start_timestamp`` or later, or, with ``page_token``, the page after the one that
    token came with (its start time then stands, whatever ``start_timestamp`` says).

    Only published lists granted to the partner are read (one granted no longer is skipped from
    the next page on). A fetch from the start leaves out the hashes already withdrawn when it
    began (module docstring), so a page may hold fewer records than ``page_size`` while more
    follow. Raises ValidationError (``nextPageToken``) for a token that was altered or given to
    another partner.
    """
    granted = set(
        HashList.objects.filter(published=True, readers=partner).values_list("pk", flat=True)
    )
    if page_token:
        start_timestamp, cursor, heads = _token_read(page_token, partner=partner)
        cursor = {list_id: seq for list_id, seq in cursor.items() if list_id in granted}
    else:
        since = datetime.fromtimestamp(start_timestamp, tz=UTC)
        positions = {list_id: _list_position(list_id=list_id, at=since) for list_id in granted}
        cursor = {list_id: after for list_id, (after, _first) in positions.items()}
        # From the start: every list's first change is in a later second than the start, so a
        # client that got anything from us before holds a later checkpoint.
        # (The last second a datetime holds has no next second: nothing is from the start.)
        next_second = (
            since + timedelta(seconds=1)
            if since < datetime.max.replace(tzinfo=UTC) - timedelta(seconds=1)
            else None
        )
        from_start = next_second is not None and all(
            first is None or first >= next_second for _after, first in positions.values()
        )
        heads = {list_id: _last_seq(list_id=list_id) for list_id in granted} if from_start else None

    rows = sorted(
        row
        for list_id, after in cursor.items()
        for row in _latest_changes(
            list_id=list_id, after=after, lists=list(cursor), limit=page_size + 1
        )
    )
    page, has_more = rows[:page_size], len(rows) > page_size
    for _at, list_id, seq, *_rest in page:
        cursor[list_id] = seq  # rows are in order: each list ends at its last row on the page
    return HashRecordsPage(
        records=_records(partner=partner, rows=page, lists=list(cursor), heads=heads),
        next_page_token=_token_write(
            partner=partner, start=start_timestamp, cursor=cursor, heads=heads
        )
        if has_more
        else None,
        next_set_timestamp=math.floor(page[-1][0].timestamp()) if page else start_timestamp,
        has_more=has_more,
    )


def _list_position(*, list_id: int, at: datetime) -> tuple[int, datetime | None]:
    """The last seq on the list sequenced before ``at`` (0 if none), and the time of the list's
    first change (None: no change yet). Seqs are gap-free and their times never go down along a
    list, so this walks back from the newest change and reads only the changes since ``at``; a
    time before the first change answers at once."""
    first = (
        ListChange.objects.filter(hash_list_id=list_id, seq=1)
        .values_list("sequenced_at", flat=True)
        .first()
    )
    if first is None or first >= at:
        return 0, first
    last = (
        ListChange.objects.filter(hash_list_id=list_id, seq__isnull=False, sequenced_at__lt=at)
        .order_by("-seq")
        .values_list("seq", flat=True)
        .first()
    )
    return last or 0, first


def _last_seq(*, list_id: int) -> int:
    last = (
        ListChange.objects.filter(hash_list_id=list_id, seq__isnull=False)
        .order_by("-seq")
        .values_list("seq", flat=True)
        .first()
    )
    return last or 0


def _latest_changes(
    *, list_id: int, after: int, lists: list[int], limit: int
) -> Iterable[tuple[datetime, int, int, str, str, str]]:
    """The served changes on one list after seq ``after`` that are their hash's latest on any of
    ``lists``, in seq order: ``(sequenced_at, list id, seq, hash_type, value, media_type)``.

    One walk of the (list, seq) index; for each change, an index probe by (hash type, value) for
    a later change of the same hash on any of the lists, in the merge order (time, list, seq).
    """
    later = ListChange.objects.filter(
        seq__isnull=False,
        hash_list_id__in=lists,
        entry__hash_type=OuterRef("entry__hash_type"),
        entry__value=OuterRef("entry__value"),
        entry__media_type=OuterRef("entry__media_type"),
    ).filter(
        Q(sequenced_at__gt=OuterRef("sequenced_at"))
        | Q(sequenced_at=OuterRef("sequenced_at"), hash_list_id__gt=OuterRef("hash_list_id"))
        | Q(hash_list_id=OuterRef("hash_list_id"), seq__gt=OuterRef("seq"))
    )
    return (
        ListChange.objects.filter(_SERVED_CHANGES, hash_list_id=list_id, seq__gt=after)
        .filter(~Exists(later))
        .order_by("seq")
        .values_list(
            "sequenced_at",
            "hash_list_id",
            "seq",
            "entry__hash_type",
            "entry__value",
            "entry__media_type",
        )[:limit]
    )


def _records(
    *,
    partner: Partner,
    rows: list[tuple[datetime, int, int, str, str, str]],
    lists: list[int],
    heads: dict[int, int] | None,
) -> list[HashRecord]:
    """The records for a page's rows: each hash's entries on ``lists`` with the status of their
    latest sequenced change, and the partner's own latest outcome on the hash. With ``heads``
    (a fetch from the start: each list's last seq when it began), a hash withdrawn by then is
    left out."""
    if not rows:
        return []
    keys = {(hash_type, value, media_type) for _at, _l, _s, hash_type, value, media_type in rows}
    latest_op = (
        ListChange.objects.filter(entry=OuterRef("pk"), seq__isnull=False)
        .order_by("-seq")
        .values("op")[:1]
    )
    entries: dict[tuple[str, str, str], list[tuple[int, str, str]]] = {}
    key_of_entry: dict[int, tuple[str, str, str]] = {}
    for pk, public_id, hash_type, value, media_type, op in (
        HashEntry.objects.filter(_by_value(keys), hash_list_id__in=lists)
        .annotate(op=Subquery(latest_op))
        .filter(op__isnull=False)
        .order_by("pk")
        .values_list("pk", "public_id", "hash_type", "value", "media_type", "op")
    ):
        key = (hash_type, value, media_type)
        if key in keys:
            entries.setdefault(key, []).append((pk, str(public_id), op))
            key_of_entry[pk] = key

    own: dict[tuple[str, str, str], tuple[datetime, str]] = {}
    for entry_id, action, action_at in MatchReport.objects.filter(
        partner=partner, entry_id__in=list(key_of_entry)
    ).values_list("entry_id", "action", "action_at"):
        key = key_of_entry[entry_id]
        if key not in own or action_at > own[key][0]:
            own[key] = (action_at, action)

    records = []
    for at, list_id, seq, hash_type, value, media_type in rows:
        key = (hash_type, value, media_type)
        cases = {public_id: vocabulary.STATUS_OF_OP[op] for _pk, public_id, op in entries[key]}
        active = vocabulary.ACTIVE in cases.values()
        if not active and heads is not None and seq <= heads.get(list_id, 0):
            continue
        feedbacks = []
        if key in own:
            feedback, tags = vocabulary.FEEDBACK_FOR_ACTION[own[key][1]]
            feedbacks.append({"feedbackValue": feedback, "tags": tags, "source": partner.name})
        records.append(
            HashRecord(
                last_modified=math.floor(at.timestamp()),
                signal_type=vocabulary.SIGNAL_TYPE_OF[(hash_type, media_type)],
                hash_value=value,
                status=vocabulary.ACTIVE if active else vocabulary.WITHDRAWN,
                case_numbers=cases,
                feedbacks=feedbacks,
            )
        )
    return records


def _by_value(keys: Iterable[tuple[str, str, str]]) -> Q:
    """Entries with any of these (hash type, value, media type), one IN list per type and media
    type, so that each uses the (list, hash type, value) index."""
    values: dict[tuple[str, str], set[str]] = {}
    for hash_type, value, media_type in keys:
        values.setdefault((hash_type, media_type), set()).add(value)
    condition = Q(pk__in=[])
    for (hash_type, media_type), wanted in values.items():
        condition |= Q(hash_type=hash_type, media_type=media_type, value__in=wanted)
    return condition


def _token_write(
    *, partner: Partner, start: int, cursor: dict[int, int], heads: dict[int, int] | None
) -> str:
    """An opaque, signed page token: the fetch's start time, each list's last seq so far and,
    for a fetch from the start, each list's last seq when it began."""
    payload = {"p": partner.pk, "t": start, "c": sorted(cursor.items())}
    if heads is not None:
        payload["h"] = sorted(heads.items())
    return signing.dumps(payload, salt=_TOKEN_SALT, compress=True)


def _token_read(
    token: str, *, partner: Partner
) -> tuple[int, dict[int, int], dict[int, int] | None]:
    try:
        payload = signing.loads(token, salt=_TOKEN_SALT)
        owner, start = payload["p"], int(payload["t"])
        cursor = {int(k): int(v) for k, v in payload["c"]}
        heads = {int(k): int(v) for k, v in payload["h"]} if "h" in payload else None
    except (signing.BadSignature, KeyError, TypeError, ValueError):
        owner = None
    if owner != partner.pk:  # altered, or another partner's: the same answer
        raise ValidationError(
            {
                "nextPageToken": [
                    _(
                        "This page token is not valid: start again without it (or from your last "
                        "nextSetTimestamp)."
                    )
                ]
            }
        )
    return start, cursor, heads


def stopncii_entries_for_hashes(
    *, partner: Partner, hashes: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], list[tuple[int, str]]]:
    """The entries FetchHashes could have shown ``partner`` for each (signal type, value): on its
    published lists, of a served type, with at least one sequenced change. Each as
    ``(pk, public id)``, in id order; a hash with none is left out."""
    wanted: dict[tuple[str, str], str] = {}
    for signal_type, value in hashes:
        hash_type, media_type = vocabulary.SIGNAL_TYPES[signal_type]
        wanted[(hash_type, media_type, value)] = signal_type
    if not wanted:
        return {}
    visible = ListChange.objects.filter(entry=OuterRef("pk"), seq__isnull=False)
    found: dict[tuple[str, str], list[tuple[int, str]]] = {}
    for pk, public_id, hash_type, media_type, value in (
        HashEntry.objects.filter(
            _SERVED_ENTRIES,
            Exists(visible),
            hash_list__published=True,
            hash_list__readers=partner,
            value__in={value for _t, _m, value in wanted},
        )
        .order_by("pk")
        .values_list("pk", "public_id", "hash_type", "media_type", "value")
    ):
        signal_type = wanted.get((hash_type, media_type, value))
        if signal_type is not None:
            found.setdefault((signal_type, value), []).append((pk, str(public_id)))
    return found
