"""Match reports: partners tell us what their scans found and what they did about it.

Services (writes) and selectors (reads) for MatchReport, DESIGN.md section 5. The HTTP API
(partners/api) and the StopNCII-compatible feedback endpoint both call these: they parse and
shape-check their own input, then hand plain Python values (strings, aware datetimes, numbers)
to ``match_reports_submit`` and ``match_report_outcome_record``, which check what the values
mean (the entry, the threshold, the times, idempotency) and write.

Outcomes. A report is created with any action. A later outcome (PATCH) may move it from
``pending_review`` to a final action, or from one final action to another (a correction: a
platform that restricted content may later remove it). Nothing goes back to ``pending_review``,
and repeating the current action changes nothing (so a retried request is harmless).

Flagging. When two or more distinct partners currently call an active entry ``not_relevant``,
the entry is flagged for staff review (``HashEntry.flagged_at``, the "flagged" filter in the
admin). The flag is set once and stays until staff review the entry; a partner that later
corrects its outcome does not clear it.
"""

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import Count, Q, QuerySet
from django.http import Http404
from django.utils import timezone
from django.utils.translation import gettext as _

from hashlists.models import HashEntry, HashType
from partners.models import MatchReport, Partner
from tidkit import formats

MAX_BATCH = 1_000
# How far in the future a partner's clock may be from ours before its times are refused.
CLOCK_SKEW = timedelta(minutes=5)
# Distinct partners calling an entry not relevant before staff are asked to look at it.
FLAG_DISTINCT_PARTNERS = 2

Action = MatchReport.Action
FINAL_ACTIONS = frozenset(
    {Action.REMOVED, Action.RESTRICTED, Action.NO_ACTION, Action.NOT_RELEVANT}
)
# As plain sets: TextChoices.values builds a new list on every call, and these are checked per item.
ACTIONS = frozenset(Action.values)
HASH_TYPES = frozenset(HashType.values)
CLIENT_REF_MAX = MatchReport._meta.get_field("client_ref").max_length
CONTENT_REF_MAX = MatchReport._meta.get_field("content_ref").max_length


@dataclass(frozen=True)
class MatchSubmitItem:
    """What happened to one item of a batch: its report's public id, and whether this request
    created it (False: the partner had already sent this ``client_ref``)."""

    client_ref: str
    id: uuid.UUID
    created: bool


@dataclass(frozen=True)
class MatchSubmitResult:
    items: list[MatchSubmitItem]  # in the order of the request

    @property
    def created_count(self) -> int:
        return sum(item.created for item in self.items)

    @property
    def existing_count(self) -> int:
        return len(self.items) - self.created_count


# ------------------------------------------------------------------------------------------------
# Services
# ------------------------------------------------------------------------------------------------


@transaction.atomic
def match_reports_submit(
    *, partner: Partner, items: Sequence[Mapping[str, Any]], error_prefix: str = "matches"
) -> MatchSubmitResult:
    """Record a batch of 1 to MAX_BATCH match reports from ``partner``, all or nothing.

    Each item is a mapping with ``client_ref`` (the partner's idempotency key), the entry as
    ``entry_id`` (its public UUID) or as ``hash_type`` + ``value``, ``distance``, ``matched_at``
    and ``action``, and optionally ``content_ref``, ``action_at`` (default: ``matched_at``) and,
    for vpdq, ``listed_match_percent`` (required, at least the 80% rule) and
    ``query_match_percent``. Times are aware datetimes.

    The whole batch is checked before anything is written. Raises ValidationError keyed by item
    and field (``{"matches.3.distance": [...]}``, the prefix is ``error_prefix``) for: an entry
    that is unknown or on no list the partner may read (the same message for both), a hash on
    several of its lists (send entry_id), a distance beyond the type's threshold, times in the
    future or an action before the match, and a ``client_ref`` repeated within the batch.

    Idempotent: an item whose ``client_ref`` the partner already sent creates nothing and
    answers with the existing report's id (its stored content stands; outcomes change through
    ``match_report_outcome_record``). Two requests racing with the same ``client_ref`` both
    succeed with one row between them: the unique constraint decides, without an error.
    Flags entries that distinct partners now call not relevant. Queries per batch do not grow
    with its size: one for the partner's lists, one for entries by id, one per hash type by
    value, one for the refs already stored, one INSERT that returns what it stored (on
    PostgreSQL), one more only when a concurrent request stored some refs first, and two when
    not-relevant reports may flag entries (plus a save for each entry flagged).
    """
    now = timezone.now()
    if not 1 <= len(items) <= MAX_BATCH:
        raise ValidationError({error_prefix: batch_size_message()})
    errors: dict[str, list[str]] = {}

    def fail(index: int, field: str, message: str) -> None:
        errors.setdefault(f"{error_prefix}.{index}.{field}", []).append(message)

    parsed = [_item_check(item, index, now, fail) for index, item in enumerate(items)]

    first_seen: dict[str, int] = {}
    for index, item in enumerate(parsed):
        ref = item["client_ref"]
        if ref is None:
            continue
        if ref in first_seen:
            fail(
                index,
                "client_ref",
                _("Repeated in this batch (first at item %(index)d).") % {"index": first_seen[ref]},
            )
        else:
            first_seen[ref] = index

    entries = _entries_resolve(partner=partner, items=parsed, fail=fail)
    for index, item in enumerate(parsed):
        entry = entries.get(index)
        if entry is not None:
            _match_check(item, entry["hash_type"], index, fail)
    if errors:
        raise ValidationError(errors)

    rows = {
        item["client_ref"]: {
            "public_id": uuid.uuid4(),
            "entry_id": entries[index]["pk"],
            "client_ref": item["client_ref"],
            "hash_type": entries[index]["hash_type"],
            "distance": item["distance"],
            "listed_match_percent": item["listed_match_percent"],
            "query_match_percent": item["query_match_percent"],
            "content_ref": item["content_ref"],
            "matched_at": item["matched_at"],
            "action": item["action"],
            "action_at": item["action_at"],
        }
        for index, item in enumerate(parsed)
    }
    created = _match_reports_insert(partner=partner, rows=rows)
    return MatchSubmitResult(
        [
            MatchSubmitItem(client_ref=ref, id=rows[ref]["public_id"], created=ref in created)
            for ref in (item["client_ref"] for item in parsed)
        ]
    )


def _match_reports_insert(*, partner: Partner, rows: dict[str, dict[str, Any]]) -> set[str]:
    """Insert the reports (column values by client_ref) whose client_ref is new for
    ``partner``; set every row's ``public_id`` to the stored one. Returns the client_refs this
    call created.

    Rows go in sorted by client_ref so that two requests racing over the same refs wait for
    each other in the same order (no deadlock); ON CONFLICT DO NOTHING makes the loser of a race
    skip the row the winner committed, and reading back gives it the winner's id.
    """
    existing = dict(
        MatchReport.objects.filter(partner=partner, client_ref__in=list(rows)).values_list(
            "client_ref", "public_id"
        )
    )
    new = [rows[ref] for ref in sorted(rows) if ref not in existing]
    created: set[str] = set()
    if new:
        if connection.vendor == "postgresql":
            created = _insert_returning_created(partner=partner, rows=new)
        else:  # the embedded SQLite default
            MatchReport.objects.bulk_create(
                [MatchReport(partner=partner, **row) for row in new], ignore_conflicts=True
            )
            stored = dict(
                MatchReport.objects.filter(
                    partner=partner, client_ref__in=[row["client_ref"] for row in new]
                ).values_list("client_ref", "public_id")
            )
            created = {
                row["client_ref"] for row in new if stored[row["client_ref"]] == row["public_id"]
            }
        lost = [row["client_ref"] for row in new if row["client_ref"] not in created]
        if lost:  # a concurrent request stored these first: answer with its ids
            existing.update(
                MatchReport.objects.filter(partner=partner, client_ref__in=lost).values_list(
                    "client_ref", "public_id"
                )
            )
    for ref, public_id in existing.items():
        rows[ref]["public_id"] = public_id
    _entries_flag_if_disputed(
        entry_ids=[
            rows[ref]["entry_id"] for ref in created if rows[ref]["action"] == Action.NOT_RELEVANT
        ]
    )
    return created


# The insert that ingestion speed depends on (DESIGN.md section 5's bulk reports): one statement
# whose rows travel as one array per column, returning the rows it inserted. bulk_create spends
# more time preparing 1,000 rows value by value than PostgreSQL spends storing them, and cannot
# say which rows ON CONFLICT DO NOTHING skipped.
_INSERT_SQL = """
INSERT INTO partners_matchreport (
    partner_id, created_at, updated_at, public_id, entry_id, client_ref, hash_type, distance,
    listed_match_percent, query_match_percent, content_ref, matched_at, action, action_at
)
SELECT %s, %s, %s, u.* FROM unnest(
    %s::uuid[], %s::bigint[], %s::text[], %s::text[], %s::integer[],
    %s::double precision[], %s::double precision[], %s::text[], %s::timestamptz[], %s::text[],
    %s::timestamptz[]
) AS u
ON CONFLICT (partner_id, client_ref) DO NOTHING
RETURNING client_ref
"""
_INSERT_FIELDS = (
    "public_id",
    "entry_id",
    "client_ref",
    "hash_type",
    "distance",
    "listed_match_percent",
    "query_match_percent",
    "content_ref",
    "matched_at",
    "action",
    "action_at",
)


def _insert_returning_created(*, partner: Partner, rows: Sequence[dict[str, Any]]) -> set[str]:
    now = timezone.now()
    params: list[Any] = [partner.pk, now, now]
    params += [[row[name] for row in rows] for name in _INSERT_FIELDS]
    with connection.cursor() as cursor:
        cursor.execute(_INSERT_SQL, params)
        return {ref for (ref,) in cursor.fetchall()}


@transaction.atomic
def match_report_outcome_record(
    *, partner: Partner, report_id: uuid.UUID | str, action: str, action_at: datetime | None = None
) -> MatchReport:
    """Record a later outcome of one of ``partner``'s reports (the takedown confirmation).

    ``action`` is a final action; ``action_at`` defaults to now and may be neither before the
    match nor in the future. Legal moves: ``pending_review`` to any final action, and one final
    action to another (a correction). Repeating the current action changes nothing. Raises
    Http404 for a report that is not the partner's (the same as a missing one) and
    ValidationError (``action`` or ``action_at``) for anything else refused. Flags the entry
    when this makes two distinct partners call it not relevant.
    """
    now = timezone.now()
    report = match_report_get_for_partner(partner=partner, report_id=report_id, for_update=True)
    errors: dict[str, list[str]] = {}
    if action == Action.PENDING_REVIEW:
        errors["action"] = [_("A report cannot go back to pending review.")]
    elif action not in FINAL_ACTIONS:
        errors["action"] = [
            _("Choose one of: %(actions)s.") % {"actions": ", ".join(sorted(FINAL_ACTIONS))}
        ]
    at = action_at or now
    if timezone.is_naive(at):
        errors["action_at"] = [_("Give a time zone.")]
    elif at > now + CLOCK_SKEW:
        errors["action_at"] = [_("This time is in the future.")]
    elif at < report.matched_at:
        errors["action_at"] = [_("An action cannot come before the match.")]
    if errors:
        raise ValidationError(errors)
    if report.action == action:
        return report
    report.action, report.action_at = action, at
    report.save(update_fields=["action", "action_at", "updated_at"])
    if action == Action.NOT_RELEVANT:
        _entries_flag_if_disputed(entry_ids=[report.entry_id])
    return report


def _entries_flag_if_disputed(*, entry_ids: Sequence[int]) -> list[HashEntry]:
    """Flag each active, unflagged entry of ``entry_ids`` that FLAG_DISTINCT_PARTNERS or more
    distinct partners now call not relevant. Returns the entries flagged by this call.

    Runs inside the caller's transaction, after its reports are written. The entries are
    locked first (in id order) and counted after the lock is granted, so of two partners
    reporting at once, the second to commit counts the first's report: a flag is never missed.
    The lock is FOR NO KEY UPDATE: at commit, the foreign keys of a batch's reports take FOR
    KEY SHARE locks on every entry they name, which a plain FOR UPDATE held by another batch
    would block, deadlocking two batches that each lock an entry the other one names.
    """
    ids = sorted(set(entry_ids))
    if not ids:
        return []
    candidates = list(
        HashEntry.objects.select_for_update(no_key=True)
        .filter(pk__in=ids, status=HashEntry.Status.ACTIVE, flagged_at__isnull=True)
        .order_by("pk")
    )
    if not candidates:
        return []
    disputed = set(
        MatchReport.objects.filter(
            entry_id__in=[entry.pk for entry in candidates], action=Action.NOT_RELEVANT
        )
        .values("entry_id")
        .annotate(partners=Count("partner_id", distinct=True))
        .filter(partners__gte=FLAG_DISTINCT_PARTNERS)
        .values_list("entry_id", flat=True)
    )
    now = timezone.now()
    flagged = []
    for entry in candidates:
        if entry.pk in disputed:
            entry.flagged_at = now
            entry._change_reason = "flagged: partners report matches as not relevant"
            entry._history_user = None  # a partner, not a staff user (the middleware's guess)
            entry.save(update_fields=["flagged_at", "updated_at"])
            flagged.append(entry)
    return flagged


def batch_size_message() -> str:
    return _("Send from 1 to %(max)d matches at a time.") % {"max": MAX_BATCH}


# ------------------------------------------------------------------------------------------------
# Checks behind match_reports_submit
# ------------------------------------------------------------------------------------------------


def _item_check(item: Mapping[str, Any], index: int, now: datetime, fail: Any) -> dict[str, Any]:
    """The item's values, checked one by one (what can be known without the database)."""
    ref = item.get("client_ref")
    if not isinstance(ref, str) or not ref.strip():
        fail(index, "client_ref", _("Give your own reference for this match."))
        ref = None
    elif len(ref) > CLIENT_REF_MAX:
        fail(
            index,
            "client_ref",
            _("At most %(max)d characters.") % {"max": CLIENT_REF_MAX},
        )
        ref = None

    entry_id = item.get("entry_id")
    hash_type, value = item.get("hash_type"), item.get("value")
    if entry_id is not None and (hash_type is not None or value is not None):
        fail(index, "entry_id", _("Give entry_id, or hash_type and value, not both."))
        entry_id = hash_type = value = None  # nothing to look up
    elif entry_id is None and (hash_type is None or value is None):
        field = (
            "value" if hash_type is not None else "hash_type" if value is not None else "entry_id"
        )
        fail(index, field, _("Give entry_id, or hash_type and value."))
    elif entry_id is not None and not isinstance(entry_id, uuid.UUID):
        try:
            entry_id = uuid.UUID(str(entry_id))
        except ValueError:
            entry_id = None
            fail(index, "entry_id", _unknown_entry())
    elif hash_type is not None and hash_type not in HASH_TYPES:
        fail(
            index,
            "hash_type",
            _("Choose one of: %(types)s.") % {"types": ", ".join(HashType.values)},
        )

    distance = item.get("distance")
    if isinstance(distance, bool) or not isinstance(distance, int) or distance < 0:
        fail(index, "distance", _("A whole number, 0 or more."))
        distance = None

    content_ref = item.get("content_ref") or ""
    if not isinstance(content_ref, str) or len(content_ref) > CONTENT_REF_MAX:
        fail(index, "content_ref", _("At most %(max)d characters.") % {"max": CONTENT_REF_MAX})

    action = item.get("action")
    if action not in ACTIONS:
        fail(index, "action", _("Choose one of: %(actions)s.") % {"actions": ", ".join(Action)})

    matched_at = _time_check(item.get("matched_at"), index, "matched_at", now, fail)
    action_at = item.get("action_at")
    if action_at is None:
        action_at = matched_at
    else:
        action_at = _time_check(action_at, index, "action_at", now, fail)
        if matched_at and action_at and action_at < matched_at:
            fail(index, "action_at", _("An action cannot come before the match."))

    percents = {}
    for field in ("listed_match_percent", "query_match_percent"):
        percent = item.get(field)
        if percent is not None and (
            isinstance(percent, bool)
            or not isinstance(percent, int | float)
            or not 0 <= percent <= 100
        ):
            fail(index, field, _("A percentage from 0 to 100."))
            percent = None
        percents[field] = percent

    return {
        "client_ref": ref,
        "entry_id": entry_id,
        "hash_type": hash_type,
        "value": value,
        "distance": distance,
        "content_ref": content_ref,
        "action": action,
        "matched_at": matched_at,
        "action_at": action_at,
        **percents,
    }


def _time_check(value: Any, index: int, field: str, now: datetime, fail: Any) -> datetime | None:
    if not isinstance(value, datetime):
        fail(index, field, _("Give a date and time."))
        return None
    if timezone.is_naive(value):
        fail(index, field, _("Give a time zone."))
        return None
    if value > now + CLOCK_SKEW:
        fail(index, field, _("This time is in the future."))
        return None
    return value


def _unknown_entry() -> str:
    # One message for "no such entry" and "not on a list you may read": nothing is revealed.
    return _("No entry with this id or hash is on a list you may read.")


def _entries_resolve(
    *, partner: Partner, items: Sequence[dict[str, Any]], fail: Any
) -> dict[int, dict[str, Any]]:
    """The entry each item names, by item index, among the lists ``partner`` may read.

    Items naming no such entry get an error (the same one whether it does not exist or is on a
    list not granted). A hash that is on several of the partner's lists is ambiguous: the item
    must name the entry by id.
    """
    readable = list(partner.readable_lists.filter(published=True).values_list("pk", flat=True))
    fields = ("pk", "public_id", "hash_type", "value")
    entries = HashEntry.objects.filter(hash_list_id__in=readable)

    by_id_wanted = {item["entry_id"] for item in items if item["entry_id"] is not None}
    by_id = (
        {
            row["public_id"]: row
            for row in entries.filter(public_id__in=by_id_wanted).values(*fields)
        }
        if by_id_wanted and readable
        else {}
    )
    by_value_wanted: dict[str, set[str]] = {}
    for item in items:
        hash_type, value = item["hash_type"], item["value"]
        if item["entry_id"] is None and hash_type in HASH_TYPES and isinstance(value, str):
            by_value_wanted.setdefault(hash_type, set()).add(value)
    by_value: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for hash_type, values in by_value_wanted.items():
        if not readable:
            break
        for row in entries.filter(hash_type=hash_type, value__in=values).values(*fields):
            by_value.setdefault((hash_type, row["value"]), []).append(row)

    found: dict[int, dict[str, Any]] = {}
    for index, item in enumerate(items):
        if item["entry_id"] is not None:
            row = by_id.get(item["entry_id"])
            if row is None:
                fail(index, "entry_id", _unknown_entry())
            else:
                found[index] = row
        elif item["hash_type"] in HASH_TYPES and item["value"] is not None:
            rows = by_value.get((item["hash_type"], item["value"]), [])
            if not rows:
                fail(index, "value", _unknown_entry())
            elif len(rows) > 1:
                fail(
                    index, "value", _("This hash is on more than one of your lists: send entry_id.")
                )
            else:
                found[index] = rows[0]
    return found


def _match_check(item: Mapping[str, Any], hash_type: str, index: int, fail: Any) -> None:
    """The distance within the type's threshold, and the vPDQ frame percentages."""
    limit = formats.MATCH_DISTANCES[hash_type]
    distance = item["distance"]
    if distance is not None and distance > limit:
        if limit == 0:
            message = _("A %(type)s match is exact: the distance is 0.") % {"type": hash_type}
        else:
            message = _("At most %(max)d for a %(type)s match.") % {"max": limit, "type": hash_type}
        fail(index, "distance", message)
    listed, query = item["listed_match_percent"], item["query_match_percent"]
    if hash_type == HashType.VPDQ:
        if listed is None:
            fail(
                index,
                "listed_match_percent",
                _("Required for a vpdq match: the share of the listed video's frames matched."),
            )
        elif listed < formats.VPDQ_MATCH_PERCENT:
            fail(
                index,
                "listed_match_percent",
                _("A vpdq match needs at least %(pct)d%% of the listed video's frames.")
                % {"pct": formats.VPDQ_MATCH_PERCENT},
            )
    else:
        for field, percent in (("listed_match_percent", listed), ("query_match_percent", query)):
            if percent is not None:
                fail(index, field, _("Only for vpdq matches."))


# ------------------------------------------------------------------------------------------------
# Selectors
# ------------------------------------------------------------------------------------------------


def match_report_get_for_partner(
    *, partner: Partner, report_id: uuid.UUID | str, for_update: bool = False
) -> MatchReport:
    """One of ``partner``'s reports by its public id. Raises Http404 for a malformed id, a
    missing report and another partner's report alike."""
    try:
        public_id = report_id if isinstance(report_id, uuid.UUID) else uuid.UUID(str(report_id))
    except ValueError:
        raise Http404 from None
    reports = MatchReport.objects.select_related("entry__hash_list")
    if for_update:
        reports = reports.select_for_update(of=("self",))
    report = reports.filter(partner=partner, public_id=public_id).first()
    if report is None:
        raise Http404  # the same answer for "missing" and "not yours"
    return report


def match_reports_for_partner(
    *,
    partner: Partner,
    action: str | None = None,
    matched_since: datetime | None = None,
    matched_before: datetime | None = None,
    after: tuple[datetime, uuid.UUID] | None = None,
    limit: int = 100,
) -> list[MatchReport]:
    """``partner``'s own reports, newest match first, at most ``limit`` + 1 (the extra one
    tells the caller there is more).

    ``matched_since`` is inclusive and ``matched_before`` exclusive, so consecutive windows
    neither overlap nor leave gaps. ``after`` is the (matched_at, public_id) of the last report
    of the previous page: keyset pagination in a total order, stable while reports are added.
    """
    reports: QuerySet[MatchReport] = MatchReport.objects.filter(partner=partner)
    if action:
        reports = reports.filter(action=action)
    if matched_since:
        reports = reports.filter(matched_at__gte=matched_since)
    if matched_before:
        reports = reports.filter(matched_at__lt=matched_before)
    if after:
        at, public_id = after
        reports = reports.filter(Q(matched_at__lt=at) | Q(matched_at=at, public_id__lt=public_id))
    return list(
        reports.select_related("entry__hash_list").order_by("-matched_at", "-public_id")[
            : limit + 1
        ]
    )
