"""Reads on cases, scoped to who asks."""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Count, Q
from django.db.models.functions import Coalesce
from django.utils.translation import gettext as _

from cases.models import Case, NearDuplicatePair
from partners.models import MatchReport

# What a reporter sees of each status: plain words, no staff names or internal notes.
REPORTER_STATUS_LABELS = {
    Case.Status.RECEIVED: lambda: _("Received: waiting for review"),
    Case.Status.IN_REVIEW: lambda: _("In review"),
    Case.Status.ACCEPTED: lambda: _("Active on the list: participating platforms can find copies"),
    Case.Status.NOT_ACCEPTED: lambda: _("Not accepted"),
    Case.Status.DUPLICATE: lambda: _("Already covered by an earlier report"),
    Case.Status.WITHDRAWN: lambda: _("Withdrawn"),
}
TIMELINE_EVENT = {
    Case.Status.RECEIVED: "received",
    Case.Status.IN_REVIEW: "in_review",
    Case.Status.ACCEPTED: "active",
    Case.Status.NOT_ACCEPTED: "not_accepted",
    Case.Status.DUPLICATE: "duplicate",
    Case.Status.WITHDRAWN: "withdrawn",
}
# Files that arrive this long after the report are shown as a separate "files added" event.
ADDED_LATER = timedelta(minutes=1)


@dataclass(frozen=True)
class TimelineEvent:
    event: str
    label: str
    at: datetime


@dataclass(frozen=True)
class ReporterCaseStatus:
    case_number: str
    status: str
    status_label: str
    rejection_reason: str | None
    rejection_reason_label: str | None
    timeline: list[TimelineEvent]
    platforms_matched: int
    platforms_removed: int
    images: int
    videos: int
    can_add_items: bool
    can_withdraw: bool


def case_status_for_reporter(*, case: Case) -> ReporterCaseStatus:
    """What the reporter of ``case`` may see: status, timeline and platform counts.

    The caller has already checked the PIN (services.case_access_for_reporter). Nothing about
    staff, other cases or partners' identities is included: only how many distinct platforms
    reported a match on the case's hashes and how many removed content.
    """
    from cases.services import CASE_OPEN_FOR_ITEMS

    # "Found a copy" leaves out reports the platform itself called not relevant (the content was
    # not this); "removed" counts removals only: restricted content is still up.
    platforms = MatchReport.objects.filter(entry__sources__media_item__case=case).aggregate(
        matched=Count("partner", distinct=True, filter=~Q(action=MatchReport.Action.NOT_RELEVANT)),
        removed=Count("partner", distinct=True, filter=Q(action=MatchReport.Action.REMOVED)),
    )
    counts = case.items.aggregate(
        images=Count("pk", filter=Q(media_type="image")),
        videos=Count("pk", filter=Q(media_type="video")),
    )
    reason = case.rejection_reason or None
    return ReporterCaseStatus(
        case_number=case.case_number,
        status=case.status,
        status_label=str(REPORTER_STATUS_LABELS[case.status]()),
        rejection_reason=reason,
        rejection_reason_label=str(Case.RejectionReason(reason).label) if reason else None,
        timeline=case_timeline_for_reporter(case=case),
        platforms_matched=platforms["matched"],
        platforms_removed=platforms["removed"],
        images=counts["images"],
        videos=counts["videos"],
        can_add_items=case.status in CASE_OPEN_FOR_ITEMS,
        can_withdraw=case.status != Case.Status.WITHDRAWN,
    )


def case_timeline_for_reporter(*, case: Case) -> list[TimelineEvent]:
    """Each status the case entered, when, and when files were added later; oldest first."""
    events: list[TimelineEvent] = []
    previous = None
    for record in case.history.order_by("history_date", "history_id").only(
        "status", "history_date"
    ):
        if record.status != previous:
            status = Case.Status(record.status)
            events.append(
                TimelineEvent(
                    TIMELINE_EVENT[status],
                    str(REPORTER_STATUS_LABELS[status]()),
                    record.history_date,
                )
            )
            previous = record.status
    if not events:  # history is written with the case; this covers rows made without it
        events.append(
            TimelineEvent("received", str(REPORTER_STATUS_LABELS["received"]()), case.created_at)
        )
    added = (
        case.items.filter(created_at__gt=case.created_at + ADDED_LATER)
        .values_list("created_at", flat=True)
        .order_by("created_at")
    )
    last_added = None
    for at in added:
        if last_added is None or at - last_added > ADDED_LATER:
            events.append(TimelineEvent("files_added", _("More files added"), at))
        last_added = at
    return sorted(events, key=lambda e: e.at)


def near_duplicate_counts(*, case_ids: list[int]) -> list[tuple[int, int, bool]]:
    """(case id, how many other cases it is near, misuse suspected) for each of ``case_ids``
    with recorded near-duplicate pairs, in case id order. Misuse: near
    TID_MISUSE_NEAR_DUPLICATE_CASES or more unrelated cases (a duplicate and its original count
    once)."""
    rows = (
        NearDuplicatePair.objects.filter(case_id__in=case_ids)
        .values("case_id")
        .annotate(
            cases=Count("other_id", distinct=True),
            unrelated=Count(Coalesce("other__duplicate_of_id", "other_id"), distinct=True),
        )
        .order_by("case_id")
    )
    threshold = settings.TID_MISUSE_NEAR_DUPLICATE_CASES
    return [(row["case_id"], row["cases"], row["unrelated"] >= threshold) for row in rows]
