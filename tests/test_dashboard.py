"""The supervisors' dashboard: figures computed from known rows, empty states, access, cost."""

import re
import secrets
from datetime import datetime, time, timedelta
from itertools import count

import numpy as np
import pytest
from django.contrib.auth.models import Group
from django.urls import reverse
from django.utils import timezone

from cases.dashboard import (
    case_counts_by_status,
    case_decision_times,
    case_reports_per_day,
    hash_entry_removal_times,
    match_report_activity_per_partner,
    week_start,
)
from cases.models import Case
from hashlists.models import HashEntry, ListChange
from partners.models import MatchReport
from partners.services import partner_create

_seq = count(1)


def staff_in(django_user_model, group_name):
    user = django_user_model.objects.create_user(
        username=group_name.replace(" ", "-"), password="pw", is_staff=True
    )
    user.groups.add(Group.objects.get(name=group_name))
    return user


@pytest.fixture
def supervisor_client(client, django_user_model, db):
    client.force_login(staff_in(django_user_model, "Supervisor"))
    return client


def at_day(days_ago: int, hour: int = 12) -> datetime:
    """Noon (or ``hour``) of a day relative to today, in the site's time zone."""
    day = timezone.localdate() - timedelta(days=days_ago)
    return timezone.make_aware(datetime.combine(day, time(hour)))


def make_case(hash_list, *, created_at, status="received", decided_after=None):
    reason = Case.RejectionReason.NOT_ELIGIBLE if status == Case.Status.NOT_ACCEPTED else ""
    case = Case.objects.create(
        reporter="self",
        under_18_when_made=True,
        hash_list=hash_list,
        pin_hash="x",
        status=status,
        rejection_reason=reason,
    )
    decided_at = created_at + decided_after if decided_after is not None else None
    # created_at is set on insert (auto_now_add): move it to the crafted time afterwards.
    Case.objects.filter(pk=case.pk).update(created_at=created_at, decided_at=decided_at)
    return case


def make_entry(hash_list, *, published_at=None):
    entry = HashEntry.objects.create(
        hash_list=hash_list, hash_type="md5", value=secrets.token_hex(16), media_type="image"
    )
    if published_at is not None:
        ListChange.objects.create(
            hash_list=hash_list, entry=entry, op="add", seq=next(_seq), sequenced_at=published_at
        )
    return entry


def report(partner, entry, *, matched_at, action="pending_review", action_at=None):
    return MatchReport.objects.create(
        partner=partner,
        entry=entry,
        client_ref=secrets.token_hex(8),
        hash_type=entry.hash_type,
        matched_at=matched_at,
        action=action,
        action_at=action_at or matched_at,
    )


@pytest.fixture
def known_rows(default_list, partner):
    """Three reports yesterday decided after 1, 2 and 5 hours (median: exactly 2 hours), one
    today still waiting; two entries whose first removals came 3 and 5 hours after publication
    (median 4 hours, p90 4 h 48 min); partners reporting matches and removals."""
    yesterday = at_day(1, hour=8)
    make_case(
        default_list, created_at=yesterday, status="accepted", decided_after=timedelta(hours=1)
    )
    make_case(
        default_list, created_at=yesterday, status="accepted", decided_after=timedelta(hours=2)
    )
    make_case(
        default_list, created_at=yesterday, status="not_accepted", decided_after=timedelta(hours=5)
    )
    make_case(default_list, created_at=at_day(0, hour=0))
    other = partner_create(name="Other Platform", readable_lists=[default_list])

    published = at_day(3)
    first = make_entry(default_list, published_at=published)
    second = make_entry(default_list, published_at=published + timedelta(hours=1))
    matched_only = make_entry(default_list, published_at=published)
    early = make_entry(default_list, published_at=published)
    unpublished = make_entry(default_list)

    report(partner, first, matched_at=published + timedelta(hours=2), action="removed",
           action_at=published + timedelta(hours=3))  # fmt: skip
    report(
        other,
        first,
        matched_at=published + timedelta(hours=9),
        action="removed",
        action_at=published + timedelta(hours=10),
    )  # fmt: skip  (not the first removal)
    report(
        partner,
        second,
        matched_at=published + timedelta(hours=5),
        action="removed",
        action_at=published + timedelta(hours=6),
    )  # fmt: skip  (5 h after it went out)
    report(partner, matched_only, matched_at=published + timedelta(hours=1))
    # Removed before it was on our list (the partner had the hash already): says nothing.
    report(other, early, matched_at=published - timedelta(hours=2), action="removed")
    report(other, unpublished, matched_at=published, action="removed")
    return {"partner": partner, "other": other}


def test_selectors_compute_the_figures_from_known_rows(known_rows):
    now = timezone.now()

    days = case_reports_per_day(now=now)
    assert len(days) == 30 and days[-1].day == timezone.localdate()
    assert [d.count for d in days[-2:]] == [3, 1] and sum(d.count for d in days) == 4

    statuses = {s.status: s.count for s in case_counts_by_status()}
    assert statuses == {
        "received": 1,
        "in_review": 0,
        "accepted": 2,
        "not_accepted": 1,
        "duplicate": 0,
        "withdrawn": 0,
    }

    decisions = case_decision_times(now=now)
    assert decisions.decided == 3 and decisions.median == timedelta(hours=2)
    decided_week = week_start(timezone.localdate() - timedelta(days=1))
    week = next(w for w in decisions.weeks if w.week == decided_week)
    assert (week.decided, week.median) == (3, timedelta(hours=2))
    assert len(decisions.weeks) == 12 and decisions.weeks[-1].week == week_start(
        timezone.localdate()
    )

    partners = {p.name: p for p in match_report_activity_per_partner(now=now)}
    assert (partners["Example Platform"].matches, partners["Example Platform"].removals) == (3, 2)
    assert (partners["Other Platform"].matches, partners["Other Platform"].removals) == (3, 3)

    removals = hash_entry_removal_times()
    assert removals.entries == 2
    assert removals.median == timedelta(hours=4)
    assert removals.p90 == timedelta(hours=4, minutes=48)
    assert [b.count for b in removals.buckets] == [0, 2, 0, 0, 0, 0, 0]


def test_dashboard_shows_the_figures_to_a_supervisor(supervisor_client, known_rows):
    response = supervisor_client.get(reverse("admin_dashboard"))
    assert response.status_code == 200
    page = response.content.decode()
    assert re.search(r'id="kpi-decision-median">2 h<', page)
    assert re.search(r'id="kpi-removal-median">4 h<', page)
    assert "90% within <strong>4 h 48 min</strong>" in page
    assert "Median <strong>2 h</strong> over 3 decided cases." in page
    # Each chart is an SVG with a text alternative, and its data is in a table.
    # reports, statuses, decisions, removals, and one per partner
    charts = re.findall(r'<svg class="chart"[^>]*\srole="img"\s+aria-label="([^"]+)"', page)
    assert len(charts) == 6 and all(len(label) > 20 for label in charts)
    assert page.count("<summary>Show the data</summary>") == 6
    yesterday = (timezone.localdate() - timedelta(days=1)).strftime("%a %-d %b %Y")
    assert re.search(rf"<td>{yesterday}</td><td class=\"num\">3</td>", page)
    assert "3 matches, 2 removed" in page and "3 matches, 3 removed" in page
    assert "No reports yet" not in page
    # One case from today is still waiting: the label agrees with the number.
    assert re.search(r'in_review">1</a>\s*<span class="kpi-label">case waiting for a', page)


def test_dashboard_explains_what_will_appear_when_there_is_no_data(supervisor_client):
    page = supervisor_client.get(reverse("admin_dashboard")).content.decode()
    assert "No reports yet." in page
    assert "No decisions yet." in page
    assert "No removals reported yet." in page
    assert "No matches reported by partners in the last 12 weeks." in page
    assert '<svg class="chart"' not in page
    assert re.search(r'in_review">0</a>\s*<span class="kpi-label">cases waiting for a', page)


def test_dashboard_says_when_the_last_30_days_were_quiet(supervisor_client, default_list):
    make_case(default_list, created_at=at_day(45))
    page = supervisor_client.get(reverse("admin_dashboard")).content.decode()
    assert "No reports in the last 30 days." in page and "No reports yet." not in page


def test_dashboard_markup_has_no_inline_style_or_script(supervisor_client, known_rows):
    page = supervisor_client.get(reverse("admin_dashboard")).content.decode()
    main = page[page.index('<div id="content-main" class="tid-dash">') :]
    main = main[: main.index('<div id="footer">')] if '<div id="footer">' in main else main
    assert "style=" not in main and "<script" not in main
    assert "tid/admin-dashboard.css" in page


@pytest.mark.parametrize(
    ("group_name", "status_code"),
    [("Supervisor", 200), ("Case reviewer", 200), ("Partner manager", 403)],
)
def test_only_staff_who_may_see_cases_see_the_dashboard(
    client, django_user_model, db, group_name, status_code
):
    client.force_login(staff_in(django_user_model, group_name))
    assert client.get(reverse("admin_dashboard")).status_code == status_code


def test_anonymous_visitors_are_sent_to_the_admin_login(client, db):
    response = client.get(reverse("admin_dashboard"))
    assert response.status_code == 302 and reverse("admin:login") in response["Location"]


def test_the_dashboard_needs_the_second_factor_where_staff_log_in_with_one(
    supervisor_client, settings
):
    settings.TID_STAFF_OTP_REQUIRED = True  # the session logged in with a password alone
    response = supervisor_client.get(reverse("admin_dashboard"))
    assert response.status_code == 302 and reverse("admin:login") in response["Location"]


@pytest.mark.parametrize(
    ("group_name", "linked"), [("Supervisor", True), ("Partner manager", False)]
)
def test_the_admin_index_links_to_the_dashboard(client, django_user_model, db, group_name, linked):
    client.force_login(staff_in(django_user_model, group_name))
    page = client.get(reverse("admin:index")).content.decode()
    assert (f'href="{reverse("admin_dashboard")}"' in page) is linked


def volume(default_list, partners, scale):
    """``scale`` times a mix of every kind of row the dashboard reads."""
    now = timezone.now()
    rng = np.random.default_rng(scale)
    for n in range(scale):
        created = now - timedelta(days=int(rng.integers(0, 80)), hours=int(rng.integers(0, 24)))
        status = ["received", "accepted", "not_accepted", "withdrawn"][n % 4]
        decided = (
            timedelta(hours=int(rng.integers(1, 72)))
            if status in {"accepted", "not_accepted"}
            else None
        )
        make_case(default_list, created_at=created, status=status, decided_after=decided)
        entry = make_entry(default_list, published_at=created)
        for partner in partners[: 1 + n % len(partners)]:
            delay = timedelta(hours=int(rng.integers(1, 200)))
            report(partner, entry, matched_at=created + delay, action="removed",
                   action_at=created + delay * 2)  # fmt: skip


@pytest.mark.parametrize("scale", [1, 40])
def test_the_number_of_queries_does_not_grow_with_the_data(
    supervisor_client, default_list, partner, django_assert_max_num_queries, scale
):
    partners = [partner] + [
        partner_create(name=f"Platform {n}", readable_lists=[default_list]) for n in range(11)
    ]
    volume(default_list, partners, scale)
    # Session, user, permissions, then one query per figure (8) whatever the volume.
    with django_assert_max_num_queries(13):
        response = supervisor_client.get(reverse("admin_dashboard"))
    assert response.status_code == 200


def test_percentiles_interpolate_like_numpy(default_list, partner):
    published = at_day(20)
    delays = np.random.default_rng(7).integers(1, 10_000, size=37)
    for minutes in delays:
        entry = make_entry(default_list, published_at=published)
        removed = published + timedelta(minutes=int(minutes))
        report(partner, entry, matched_at=removed, action="removed", action_at=removed)
    times = hash_entry_removal_times()
    assert times.entries == 37
    for got, q in ((times.median, 50), (times.p90, 90)):
        want = float(np.percentile(delays, q))  # linear interpolation, as percentile_cont
        assert got.total_seconds() / 60 == pytest.approx(want)


def test_decision_medians_are_per_week_of_decision(default_list):
    now = timezone.now()
    this_monday = week_start(timezone.localdate())
    monday = timezone.make_aware(datetime.combine(this_monday - timedelta(weeks=2), time(9)))
    for hours in (1, 2, 3, 10):  # even count: the median is halfway between 2 and 3
        make_case(
            default_list, created_at=monday, status="accepted", decided_after=timedelta(hours=hours)
        )
    make_case(
        default_list,
        created_at=monday + timedelta(weeks=1),
        status="accepted",
        decided_after=timedelta(minutes=30),
    )
    times = case_decision_times(now=now)
    weeks = {w.week: w for w in times.weeks}
    assert weeks[this_monday - timedelta(weeks=2)].median == timedelta(hours=2, minutes=30)
    assert weeks[this_monday - timedelta(weeks=1)].median == timedelta(minutes=30)
    assert weeks[this_monday].median is None and weeks[this_monday].decided == 0
    assert times.median == timedelta(hours=2) and times.decided == 5


def test_partners_beyond_the_rows_shown_are_summed(default_list, partner):
    now = timezone.now()
    entry = make_entry(default_list, published_at=at_day(2))
    partners = [partner] + [
        partner_create(name=f"Platform {n}", readable_lists=[default_list]) for n in range(3)
    ]
    for n, one in enumerate(partners):
        for _ in range(n + 1):
            report(one, entry, matched_at=at_day(1), action="removed")
    rows = match_report_activity_per_partner(now=now, rows=3)
    assert [(r.name, r.matches) for r in rows] == [
        ("Platform 2", 4),
        ("Platform 1", 3),
        ("All 2 other partners", 3),
    ]
