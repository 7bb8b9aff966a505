"""The supervisors' dashboard in the admin (DESIGN.md section 7).

Selectors aggregate in the database (grouped counts and window functions), so the page costs a
fixed number of queries however many cases, entries and match reports there are; only grouped
rows (days, weeks, partners, status values) and a handful of percentile rows come back.
The charts are drawn on the server as inline SVG: the admin's Content-Security-Policy allows no
script, and staff pages make no third-party request.
"""

import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from fractions import Fraction
from typing import Any

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db import connection
from django.db.models import (
    Aggregate,
    Count,
    DurationField,
    ExpressionWrapper,
    F,
    Min,
    Q,
    QuerySet,
    Window,
)
from django.db.models.functions import Abs, Least, RowNumber, TruncDate, TruncWeek
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.formats import date_format, number_format
from django.utils.functional import Promise
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy as _lazy
from django.utils.translation import ngettext

from cases.models import Case
from hashlists.models import ListChange
from partners.models import MatchReport

StrOrPromise = str | Promise

REPORT_DAYS = 30
WEEKS = 12
# Partners beyond this many (the least active) share one "all other partners" row, so that the
# page stays readable as the programme grows.
PARTNER_ROWS = 8
MEDIAN = Fraction(1, 2)
P90 = Fraction(9, 10)

# Buckets for the time from publication to the first reported removal, [lower, upper), each
# with a label for the data table and a short one that fits under its bar.
REMOVAL_BUCKETS: list[tuple[timedelta, timedelta | None, StrOrPromise, StrOrPromise]] = [
    (timedelta(0), timedelta(hours=1), _lazy("under 1 hour"), _lazy("<1 h")),
    (timedelta(hours=1), timedelta(hours=6), _lazy("1 to 6 hours"), _lazy("1–6 h")),
    (timedelta(hours=6), timedelta(days=1), _lazy("6 to 24 hours"), _lazy("6–24 h")),
    (timedelta(days=1), timedelta(days=3), _lazy("1 to 3 days"), _lazy("1–3 d")),
    (timedelta(days=3), timedelta(days=7), _lazy("3 to 7 days"), _lazy("3–7 d")),
    (timedelta(days=7), timedelta(days=28), _lazy("1 to 4 weeks"), _lazy("1–4 wk")),
    (timedelta(days=28), None, _lazy("4 weeks or more"), _lazy("4+ wk")),
]


# ------------------------------------------------------------------------------------------------
# Selectors
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DayCount:
    day: date
    count: int


@dataclass(frozen=True)
class StatusCount:
    status: str
    label: str
    count: int


@dataclass(frozen=True)
class WeekMedian:
    week: date  # the Monday that starts it
    decided: int
    median: timedelta | None


@dataclass(frozen=True)
class DecisionTimes:
    decided: int  # every decided case, all time
    median: timedelta | None
    weeks: list[WeekMedian]


@dataclass(frozen=True)
class WeekActivity:
    week: date
    matches: int
    removals: int


@dataclass(frozen=True)
class PartnerActivity:
    name: str
    weeks: list[WeekActivity]

    @property
    def matches(self) -> int:
        return sum(w.matches for w in self.weeks)

    @property
    def removals(self) -> int:
        return sum(w.removals for w in self.weeks)


@dataclass(frozen=True)
class BucketCount:
    lower: timedelta
    upper: timedelta | None
    label: str
    short_label: str
    count: int


@dataclass(frozen=True)
class RemovalTimes:
    entries: int  # entries with a removal reported after they went on a list
    median: timedelta | None
    p90: timedelta | None
    buckets: list[BucketCount]


def week_start(day: date) -> date:
    """The Monday of ``day``'s week, as TruncWeek (ISO weeks) counts them."""
    return day - timedelta(days=day.weekday())


def recent_weeks(*, now: datetime, weeks: int = WEEKS) -> list[date]:
    """The Mondays of the last ``weeks`` weeks, oldest first, the current (partial) week last."""
    this_week = week_start(timezone.localdate(now))
    return [this_week - timedelta(weeks=n) for n in range(weeks - 1, -1, -1)]


def _local_midnight(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, datetime.min.time()))


def case_reports_per_day(*, now: datetime, days: int = REPORT_DAYS) -> list[DayCount]:
    """Reports received on each of the last ``days`` days (today included), oldest first, with
    the days that had none as zeros. One query."""
    today = timezone.localdate(now)
    first = today - timedelta(days=days - 1)
    counts = dict(
        Case.objects.filter(created_at__gte=_local_midnight(first))
        .annotate(day=TruncDate("created_at"))
        .values("day")
        .annotate(n=Count("pk"))
        .order_by()
        .values_list("day", "n")
    )
    return [
        DayCount(day=first + timedelta(days=n), count=counts.get(first + timedelta(days=n), 0))
        for n in range(days)
    ]


def case_counts_by_status() -> list[StatusCount]:
    """How many cases are in each status now, every status listed (zeros too). One query."""
    counts = dict(
        Case.objects.values("status").annotate(n=Count("pk")).order_by().values_list("status", "n")
    )
    return [
        StatusCount(status=value, label=str(label), count=counts.get(value, 0))
        for value, label in Case.Status.choices
    ]


@dataclass(frozen=True)
class Ranked:
    """Percentiles of one partition, and how many rows it has."""

    size: int
    values: dict[Fraction, Any]


def _percentiles(
    queryset: QuerySet[Any],
    *,
    value: str,
    fractions: Sequence[Fraction],
    partition: str | None = None,
) -> dict[Any, Ranked]:
    """Percentiles of the annotation ``value`` over ``queryset`` (per ``partition`` if given;
    else under the key None), interpolated between the two nearest ranks as PostgreSQL's
    percentile_cont does. Partitions without rows are absent.

    Portable (PostgreSQL and the embedded SQLite) and bounded: the database numbers the rows of
    each partition with window functions and returns only the one or two rows on either side of
    each wanted position, so one query brings back at most 2 x len(fractions) rows per partition.
    """
    over: dict[str, Any] = {"partition_by": [F(partition)]} if partition else {}
    denominator = math.lcm(*(f.denominator for f in fractions))
    ranked = queryset.order_by().annotate(
        _rank=Window(RowNumber(), order_by=F(value).asc(), **over),
        _rows=Window(Count("pk"), **over),
    )
    # The wanted position of fraction f among n rows is x = f * (n - 1) (0-based); the rows with
    # |(rank - 1) - x| < 1 are floor(x) and ceil(x). Scaled by the common denominator the test is
    # integer arithmetic, and one LEAST keeps a single conjunctive filter, which is what Django
    # supports on window functions.
    distances = [
        Abs(
            denominator * (F("_rank") - 1)
            - (f.numerator * denominator // f.denominator) * (F("_rows") - 1)
        )
        for f in fractions
    ]
    nearest = distances[0] if len(distances) == 1 else Least(*distances)
    columns = ["_rank", "_rows", value, *([partition] if partition else [])]
    rows = (
        ranked.annotate(_distance=nearest).filter(_distance__lt=denominator).values_list(*columns)
    )
    by_partition: dict[Any, dict[int, Any]] = defaultdict(dict)
    sizes: dict[Any, int] = {}
    for rank, size, row_value, *partition_key in rows:
        key = partition_key[0] if partition else None
        by_partition[key][rank - 1] = row_value
        sizes[key] = size
    result: dict[Any, Ranked] = {}
    for key, values in by_partition.items():
        wanted: dict[Fraction, Any] = {}
        for f in fractions:
            position = f * (sizes[key] - 1)
            low = math.floor(position)
            wanted[f] = values[low]
            if position != low:
                wanted[f] += (values[low + 1] - values[low]) * float(position - low)
        result[key] = Ranked(size=sizes[key], values=wanted)
    return result


def _decision_time() -> ExpressionWrapper:
    return ExpressionWrapper(F("decided_at") - F("created_at"), output_field=DurationField())


def case_decision_times(*, now: datetime, weeks: int = WEEKS) -> DecisionTimes:
    """Median time from report to decision: over every decided case, and per week of decision
    for the last ``weeks`` weeks. Two queries. Cases count as decided once they carry a decision
    time (accepted, not accepted, duplicate), even if later withdrawn."""
    decided = Case.objects.filter(decided_at__isnull=False).annotate(decision_time=_decision_time())
    overall = _percentiles(decided, value="decision_time", fractions=[MEDIAN]).get(None)
    mondays = recent_weeks(now=now, weeks=weeks)
    recent = decided.filter(decided_at__gte=_local_midnight(mondays[0])).annotate(
        week=TruncWeek("decided_at")
    )
    per_week = {
        timezone.localdate(week): ranked
        for week, ranked in _percentiles(
            recent, value="decision_time", fractions=[MEDIAN], partition="week"
        ).items()
    }
    return DecisionTimes(
        decided=overall.size if overall else 0,
        median=overall.values[MEDIAN] if overall else None,
        weeks=[
            WeekMedian(
                week=monday,
                decided=per_week[monday].size if monday in per_week else 0,
                median=per_week[monday].values[MEDIAN] if monday in per_week else None,
            )
            for monday in mondays
        ],
    )


def match_report_activity_per_partner(
    *, now: datetime, weeks: int = WEEKS, rows: int = PARTNER_ROWS
) -> list[PartnerActivity]:
    """Matches (by week matched) and removals (reports with action ``removed``, by week of the
    action) per partner over the last ``weeks`` weeks, the most active partners first; partners
    beyond ``rows`` are summed into one last row. Partners with no activity are left out.
    Two queries."""
    mondays = recent_weeks(now=now, weeks=weeks)
    since = _local_midnight(mondays[0])
    matches = (
        MatchReport.objects.filter(matched_at__gte=since)
        .annotate(week=TruncWeek("matched_at"))
        .values("partner_id", "partner__name", "week")
        .annotate(n=Count("pk"))
        .order_by()
        .values_list("partner_id", "partner__name", "week", "n")
    )
    removals = (
        MatchReport.objects.filter(action=MatchReport.Action.REMOVED, action_at__gte=since)
        .annotate(week=TruncWeek("action_at"))
        .values("partner_id", "partner__name", "week")
        .annotate(n=Count("pk"))
        .order_by()
        .values_list("partner_id", "partner__name", "week", "n")
    )
    names: dict[int, str] = {}
    counts: dict[int, dict[date, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    for column, result in enumerate((matches, removals)):
        for partner_id, name, week, n in result:
            names[partner_id] = name
            counts[partner_id][timezone.localdate(week)][column] += n
    partners = [
        PartnerActivity(
            name=names[partner_id],
            weeks=[
                WeekActivity(week=m, matches=by_week[m][0], removals=by_week[m][1]) for m in mondays
            ],
        )
        for partner_id, by_week in counts.items()
    ]
    partners.sort(key=lambda p: (-p.matches, -p.removals, p.name))
    if len(partners) <= rows:
        return partners
    rest = partners[rows - 1 :]
    other = PartnerActivity(
        name=ngettext("%(count)d other partner", "All %(count)d other partners", len(rest))
        % {"count": len(rest)},
        weeks=[
            WeekActivity(
                week=m,
                matches=sum(p.weeks[i].matches for p in rest),
                removals=sum(p.weeks[i].removals for p in rest),
            )
            for i, m in enumerate(mondays)
        ],
    )
    return [*partners[: rows - 1], other]


def _ordered_percentiles(
    queryset: QuerySet[Any], *, value: str, fractions: Sequence[Fraction], size: int
) -> dict[Fraction, Any]:
    """Percentiles of ``value`` over the ``size`` rows of ``queryset``, interpolated like
    percentile_cont: one query per fraction, each returning the (at most) two rows around its
    position. For querysets that group rows, where window functions are not available."""
    ordered = queryset.order_by(value).values_list(value, flat=True)
    result: dict[Fraction, Any] = {}
    for f in fractions:
        position = f * (size - 1)
        low = math.floor(position)
        rows = list(ordered[low : low + 2])
        if not rows:  # rows went away since they were counted
            continue
        result[f] = rows[0]
        if position != low and len(rows) == 2:
            result[f] += (rows[1] - rows[0]) * float(position - low)
    return result


class PercentileCont(Aggregate):
    """PostgreSQL's percentile_cont(fraction) WITHIN GROUP (ORDER BY expression)."""

    function = "percentile_cont"
    template = "%(function)s(%(fraction)s) WITHIN GROUP (ORDER BY %(expressions)s)"

    def __init__(self, expression: str, *, fraction: Fraction, output_field: Any) -> None:
        # A constant of ours, never user input: written into the SQL as a literal.
        super().__init__(expression, fraction=float(fraction), output_field=output_field)


def hash_entry_removal_times() -> RemovalTimes:
    """Time from an entry's publication to the first removal a partner reported for it.

    Publication is the entry's first ``add`` change that the sequencer numbered (when partners
    could first see it); removal is its earliest match report with action ``removed``. Only
    entries with both count; a removal reported before publication (a partner that had the hash
    from elsewhere) says nothing about our list and is left out. One query on PostgreSQL (with
    percentile_cont); SQLite has no percentile function, so there two more read two rows each.
    """
    # One row per entry with a reported removal, grouped in the database. Filtering on the
    # changes (an inner join) lets PostgreSQL join them to the reports directly by entry_id.
    timed = (
        MatchReport.objects.filter(
            action=MatchReport.Action.REMOVED,
            entry__changes__op=ListChange.Op.ADD,
            entry__changes__sequenced_at__isnull=False,
        )
        .values("entry_id")
        .annotate(removed_at=Min("action_at"), published_at=Min("entry__changes__sequenced_at"))
        .annotate(
            delay=ExpressionWrapper(
                F("removed_at") - F("published_at"), output_field=DurationField()
            )
        )
        .filter(delay__gte=timedelta(0))
    )
    # aggregate() over a grouped queryset runs on it as a subquery: each delay is computed once.
    aggregates: dict[str, Any] = {"total": Count("entry_id")}
    for index, (lower, upper, _label, _short) in enumerate(REMOVAL_BUCKETS):
        condition = Q(delay__gte=lower) if upper is None else Q(delay__gte=lower, delay__lt=upper)
        aggregates[f"b{index}"] = Count("entry_id", filter=condition)
    in_sql = connection.vendor == "postgresql"
    if in_sql:
        for name, fraction in (("median", MEDIAN), ("p90", P90)):
            aggregates[name] = PercentileCont(
                "delay", fraction=fraction, output_field=DurationField()
            )
    counts = timed.order_by().aggregate(**aggregates)
    if in_sql:
        percentiles = {MEDIAN: counts["median"], P90: counts["p90"]}
    elif counts["total"]:
        # Django cannot put a window function over a grouped query (see _percentiles).
        percentiles = _ordered_percentiles(
            timed, value="delay", fractions=[MEDIAN, P90], size=counts["total"]
        )
    else:
        percentiles = {}
    return RemovalTimes(
        entries=counts["total"],
        median=percentiles.get(MEDIAN),
        p90=percentiles.get(P90),
        buckets=[
            BucketCount(
                lower=lower,
                upper=upper,
                label=str(label),
                short_label=str(short),
                count=counts[f"b{index}"],
            )
            for index, (lower, upper, label, short) in enumerate(REMOVAL_BUCKETS)
        ],
    )


# ------------------------------------------------------------------------------------------------
# Formatting
# ------------------------------------------------------------------------------------------------


def duration_text(value: timedelta | None) -> str:
    """A duration as staff read it: "45 min", "2 h", "5 h 30 min", "3 d 4 h"."""
    if value is None:
        return "—"
    minutes = max(0, round(value.total_seconds() / 60))
    if minutes < 60:
        return _("%(minutes)d min") % {"minutes": minutes}
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        if minutes:
            return _("%(hours)d h %(minutes)d min") % {"hours": hours, "minutes": minutes}
        return _("%(hours)d h") % {"hours": hours}
    days, hours = divmod(hours, 24)
    if hours:
        return _("%(days)d d %(hours)d h") % {"days": days, "hours": hours}
    return _("%(days)d d") % {"days": days}


def _count_text(n: float) -> str:
    return number_format(round(n), force_grouping=True)


def _hours_text(hours: float) -> str:
    return duration_text(timedelta(hours=hours)) if hours else "0"


# ------------------------------------------------------------------------------------------------
# Chart geometry (drawn by templates/admin/dashboard.html)
# ------------------------------------------------------------------------------------------------

# About the width a chart gets in a dashboard card, so that its text shows at its CSS size.
CHART_WIDTH = 420
PLOT_LEFT = 52  # room for the value axis' labels
PLOT_RIGHT = 8
PLOT_TOP = 12
PLOT_BOTTOM = 26  # room for the category labels


def _px(value: float) -> str:
    """SVG coordinates as plain text: never localised (a decimal comma would break the SVG)."""
    return f"{value:.1f}".removesuffix(".0")


@dataclass(frozen=True)
class Rect:
    x: str
    y: str
    width: str
    height: str
    css: str
    title: str


@dataclass(frozen=True)
class Text:
    x: str
    y: str
    text: str
    anchor: str = "middle"
    css: str = ""


@dataclass(frozen=True)
class Gridline:
    x1: str
    x2: str
    y: str
    label: Text


@dataclass(frozen=True)
class Series:
    name: str
    css: str
    values: Sequence[float]


@dataclass
class Chart:
    """One SVG chart: its size, shapes and a one-sentence text alternative."""

    width: int
    height: int
    description: str
    rects: list[Rect] = field(default_factory=list)
    texts: list[Text] = field(default_factory=list)
    gridlines: list[Gridline] = field(default_factory=list)
    legend: list[Series] = field(default_factory=list)


def count_ceiling(value: float) -> float:
    """The top of a count axis: the smallest 1, 2, 4 or 5 times a power of ten at or above
    ``value``, so that its half (the middle gridline) is a whole number too, never 0.5."""
    if value <= 1:
        return 2
    exponent = math.floor(math.log10(value))
    for step in (1, 2, 4, 5, 10):
        if step * 10**exponent >= value:
            return step * 10**exponent
    return 10 ** (exponent + 1)  # pragma: no cover - the loop ends at 10 x 10^exponent


# Tops of a duration axis in hours; each one's half is a round duration too (3 h, 12 h, 3 days).
HOURS_CEILINGS = (1, 2, 4, 6, 8, 12, 24, 48, 96, 144, 336, 672)


def hours_ceiling(value: float) -> float:
    """The top of a duration axis (in hours) at or above ``value``."""
    for ceiling in HOURS_CEILINGS:
        if ceiling >= value:
            return ceiling
    return math.ceil(value / 336) * 336  # whole fortnights, halving to whole weeks


def column_chart(
    *,
    categories: Sequence[str],
    series: Sequence[Series],
    description: str,
    value_text: Callable[[float], str],
    ceiling: Callable[[float], float] = count_ceiling,
    label_every: int = 1,
    titles: Sequence[str] | None = None,
    height: int = 200,
) -> Chart:
    """Vertical bars, one group per category and one bar per series, with three gridlines.

    ``titles`` (one per category) prefix each bar's tooltip; ``value_text`` formats values.
    """
    chart = Chart(width=CHART_WIDTH, height=height, description=description)
    if len(series) > 1:
        chart.legend = list(series)
    plot_width = CHART_WIDTH - PLOT_LEFT - PLOT_RIGHT
    plot_height = height - PLOT_TOP - PLOT_BOTTOM
    top = ceiling(max((v for s in series for v in s.values), default=0))
    for tick in (0, top / 2, top):
        y = PLOT_TOP + plot_height * (1 - tick / top)
        chart.gridlines.append(
            Gridline(
                x1=_px(PLOT_LEFT),
                x2=_px(CHART_WIDTH - PLOT_RIGHT),
                y=_px(y),
                label=Text(x=_px(PLOT_LEFT - 6), y=_px(y + 4), text=value_text(tick), anchor="end"),
            )
        )
    slot = plot_width / max(len(categories), 1)
    bar_width = slot * 0.8 / max(len(series), 1)
    for index, category in enumerate(categories):
        left = PLOT_LEFT + index * slot + slot * 0.1
        for position, one in enumerate(series):
            value = one.values[index]
            bar_height = plot_height * value / top
            title = titles[index] if titles else category
            if len(series) > 1:
                title = f"{title}, {one.name}"
            chart.rects.append(
                Rect(
                    x=_px(left + position * bar_width),
                    y=_px(PLOT_TOP + plot_height - bar_height),
                    width=_px(max(bar_width - 1, 1)),
                    height=_px(bar_height),
                    css=one.css,
                    title=f"{title}: {value_text(value)}",
                )
            )
        # Label every ``label_every``-th category counting back from the last (today, this
        # week), so that the most recent one is always named.
        if (len(categories) - 1 - index) % label_every == 0:
            chart.texts.append(
                Text(x=_px(PLOT_LEFT + (index + 0.5) * slot), y=_px(height - 8), text=category)
            )
    return chart


def bar_chart(*, rows: Sequence[tuple[str, int]], description: str, css: str = "bar") -> Chart:
    """Horizontal bars, one per row, labelled on the left with the count on the right."""
    row_height = 26
    label_width = 100
    height = PLOT_TOP + row_height * len(rows) + 4
    chart = Chart(width=CHART_WIDTH, height=height, description=description)
    largest = max((n for _label, n in rows), default=0) or 1
    room = CHART_WIDTH - label_width - 56  # leave space for the count after the longest bar
    for index, (label, n) in enumerate(rows):
        y = PLOT_TOP + index * row_height
        width = room * n / largest
        chart.texts.append(
            Text(x=_px(label_width - 8), y=_px(y + 15), text=label, anchor="end", css="label")
        )
        chart.rects.append(
            Rect(
                x=_px(label_width),
                y=_px(y + 2),
                width=_px(width),
                height=_px(row_height - 8),
                css=css,
                title=f"{label}: {_count_text(n)}",
            )
        )
        chart.texts.append(
            Text(
                x=_px(label_width + width + 6),
                y=_px(y + 15),
                text=_count_text(n),
                anchor="start",
                css="value",
            )
        )
    return chart


# ------------------------------------------------------------------------------------------------
# The page
# ------------------------------------------------------------------------------------------------


def _day_label(day: date) -> str:
    return date_format(day, "j M")


def _reports_chart(days: list[DayCount]) -> Chart | None:
    total = sum(d.count for d in days)
    if not total:
        return None
    busiest = max(days, key=lambda d: (d.count, d.day))
    return column_chart(
        categories=[_day_label(d.day) for d in days],
        titles=[date_format(d.day, "D j M") for d in days],
        series=[Series(_("Reports"), "bar", [d.count for d in days])],
        description=_(
            "%(total)s reports in the last %(days)d days; the busiest day was %(day)s "
            "with %(count)s."
        )
        % {
            "total": _count_text(total),
            "days": len(days),
            "day": date_format(busiest.day, "j F"),
            "count": _count_text(busiest.count),
        },
        value_text=_count_text,
        label_every=5,
    )


def _status_chart(statuses: list[StatusCount]) -> Chart | None:
    if not sum(s.count for s in statuses):
        return None
    return bar_chart(
        rows=[(s.label, s.count) for s in statuses],
        description="; ".join(f"{s.label}: {_count_text(s.count)}" for s in statuses) + ".",
    )


def _decision_chart(times: DecisionTimes) -> Chart | None:
    if not any(w.decided for w in times.weeks):
        return None
    hours = [w.median.total_seconds() / 3600 if w.median else 0 for w in times.weeks]
    return column_chart(
        categories=[_day_label(w.week) for w in times.weeks],
        titles=[
            ngettext(
                "Week of %(day)s, %(count)s case decided",
                "Week of %(day)s, %(count)s cases decided",
                w.decided,
            )
            % {"day": _day_label(w.week), "count": _count_text(w.decided)}
            for w in times.weeks
        ],
        series=[Series(_("median"), "bar", hours)],
        description=_(
            "Median time from report to decision for cases decided in each of the last "
            "%(weeks)d weeks, from %(first)s (week of %(first_week)s) to %(last)s (this week)."
        )
        % {
            "weeks": len(times.weeks),
            "first": duration_text(times.weeks[0].median),
            "first_week": _day_label(times.weeks[0].week),
            "last": duration_text(times.weeks[-1].median),
        },
        value_text=_hours_text,
        ceiling=hours_ceiling,
        label_every=2,
    )


def _partner_chart(partner: PartnerActivity) -> Chart:
    return column_chart(
        categories=[_day_label(w.week) for w in partner.weeks],
        titles=[_("Week of %(day)s") % {"day": _day_label(w.week)} for w in partner.weeks],
        series=[
            Series(_("Matches"), "bar-matches", [w.matches for w in partner.weeks]),
            Series(_("Removals"), "bar-removals", [w.removals for w in partner.weeks]),
        ],
        description=_(
            "%(partner)s, last %(weeks)d weeks: %(matches)s matches and %(removals)s removals."
        )
        % {
            "partner": partner.name,
            "weeks": len(partner.weeks),
            "matches": _count_text(partner.matches),
            "removals": _count_text(partner.removals),
        },
        value_text=_count_text,
        label_every=2,
        height=140,
    )


def _removal_chart(times: RemovalTimes) -> Chart | None:
    if not times.entries:
        return None
    return column_chart(
        categories=[b.short_label for b in times.buckets],
        titles=[b.label for b in times.buckets],
        series=[Series(_("Entries"), "bar", [b.count for b in times.buckets])],
        description=_(
            "%(entries)s entries had a removal reported: half within %(median)s of going on "
            "the list, 90%% within %(p90)s."
        )
        % {
            "entries": _count_text(times.entries),
            "median": duration_text(times.median),
            "p90": duration_text(times.p90),
        },
        value_text=_count_text,
    )


def dashboard_view(request: HttpRequest) -> HttpResponse:
    """The dashboard page. Wrapped by ``admin.site.admin_view`` (tidportal.admin_site), which
    sends anyone who is not active staff to the login page; here, staff also need to be allowed
    to see cases (case reviewers and supervisors are; partner managers are not: 403)."""
    if not request.user.has_perm("cases.view_case"):
        raise PermissionDenied
    now = timezone.now()  # one instant for every figure on the page
    days = case_reports_per_day(now=now)
    statuses = case_counts_by_status()
    decisions = case_decision_times(now=now)
    partners = match_report_activity_per_partner(now=now)
    removals = hash_entry_removal_times()
    counts = {s.status: s.count for s in statuses}
    waiting = counts[Case.Status.RECEIVED] + counts[Case.Status.IN_REVIEW]
    context = {
        **admin.site.each_context(request),
        "title": _("Dashboard"),
        "now": now,
        "report_days": REPORT_DAYS,
        "weeks": WEEKS,
        "total_cases": sum(counts.values()),
        "waiting_count": waiting,
        "waiting": _count_text(waiting),
        "reports_in_window": _count_text(sum(d.count for d in days)),
        "days": days,
        "reports_chart": _reports_chart(days),
        "statuses": statuses,
        "status_chart": _status_chart(statuses),
        "decisions": decisions,
        "decided_text": _count_text(decisions.decided),
        "decision_median": duration_text(decisions.median),
        "decision_weeks": [(w, duration_text(w.median)) for w in decisions.weeks],
        "decision_chart": _decision_chart(decisions),
        "partners": [
            {
                "activity": p,
                "chart": _partner_chart(p),
                "matches": _count_text(p.matches),
                "removals": _count_text(p.removals),
            }
            for p in partners
        ],
        "removals": removals,
        "removal_entries": _count_text(removals.entries),
        "removal_median": duration_text(removals.median),
        "removal_p90": duration_text(removals.p90),
        "removal_buckets": removals.buckets,
        "removal_chart": _removal_chart(removals),
        "case_changelist": reverse("admin:cases_case_changelist"),
    }
    return TemplateResponse(request, "admin/dashboard.html", context)
