"""Management commands: create_partner, accept_case and seed_demo, through call_command."""

import re
from io import StringIO

import pytest
from django.contrib.auth.models import Group
from django.core.management import CommandError, call_command
from django.db.models import CheckConstraint, Count, F, Max, Min, OuterRef, Q, Subquery
from django.test import override_settings
from django.utils import timezone

from cases.models import Case, MediaItem, NearDuplicatePair
from cases.near_duplicates import case_near_duplicates
from cases.services import case_create
from hashlists.models import HashEntry, HashEntrySource, HashList, ListChange
from partners.models import ApiKey, MatchReport, Partner
from partners.selectors import api_key_get_for_raw_key
from tidkit import formats


def run(*args, **options) -> str:
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO(), **options)
    return out.getvalue()


# ------------------------------------------------------------------------------------------------
# create_partner
# ------------------------------------------------------------------------------------------------


def test_create_partner_makes_the_partner_and_one_key_shown_once(default_list):
    out = run(
        "create_partner",
        "Example Videos",
        "--lists",
        "take-it-down",
        "--scopes",
        "lists:read",
        "matches:write",
        "--email",
        "tns@example.org",
    )
    partner = Partner.objects.get(name="Example Videos")
    assert partner.slug == "example-videos" and partner.contact_email == "tns@example.org"
    assert list(partner.readable_lists.all()) == [default_list] and partner.is_active
    raw = re.search(r"tid_[0-9a-z]{12}_[0-9A-Za-z]{40}", out).group(0)
    key = api_key_get_for_raw_key(raw_key=raw)
    assert key is not None and key.partner == partner
    assert key.scopes == ["lists:read", "matches:write"]
    assert "shown once" in out and raw not in key.digest and partner.webhook_url == ""


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--lists", "no-such-list", "--scopes", "lists:read"], "Unknown hash list(s): no-such"),
        (["--lists", "take-it-down", "--scopes", "lists:write"], "scopes: Choose one or more"),
        (
            ["--lists", "take-it-down", "--scopes", "lists:read", "--email", "not-an-address"],
            "contact_email",
        ),
        (
            ["--lists", "take-it-down", "--scopes", "lists:read", "--webhook-url", "nope"],
            "webhook_url",
        ),
    ],
    ids=["unknown list", "unknown scope", "bad email", "bad webhook url"],
)
def test_create_partner_refuses_bad_input_and_leaves_nothing_behind(
    default_list, arguments, message
):
    with pytest.raises(CommandError, match=re.escape(message)):
        run("create_partner", "Half Made", *arguments)
    # The unknown scope and the bad webhook URL fail after the partner row was written: the
    # transaction takes it back, history included.
    assert not Partner.objects.exists() and not ApiKey.objects.exists()
    assert not Partner.history.exists()


def test_create_partner_refuses_a_duplicate_name(partner):
    with pytest.raises(CommandError, match="name: Partner with this Name already exists"):
        run("create_partner", partner.name, "--lists", "take-it-down", "--scopes", "lists:read")
    assert Partner.objects.count() == 1 and not ApiKey.objects.exists()


# ------------------------------------------------------------------------------------------------
# accept_case
# ------------------------------------------------------------------------------------------------


@pytest.fixture
def received_case(default_list, image_item):
    case, _pin = case_create(reporter="self", under_18_when_made=True, items=[image_item])
    return case


def staff_in(django_user_model, username, group_name):
    user = django_user_model.objects.create_user(username=username, password="pw", is_staff=True)
    user.groups.add(Group.objects.get(name=group_name))
    return user


def test_accept_case_accepts_and_publishes_as_the_named_reviewer(received_case, django_user_model):
    reviewer = staff_in(django_user_model, "alice", "Case reviewer")
    # Typed as a person might: lower case, no dashes.
    typed = received_case.case_number.lower().replace("-", "")
    out = run("accept_case", typed, "--by", "alice")
    received_case.refresh_from_db()
    assert received_case.status == Case.Status.ACCEPTED
    assert received_case.decided_by == reviewer and received_case.decided_at is not None
    entries = HashEntry.objects.filter(sources__media_item__case=received_case)
    assert entries.count() == 3 and set(entries.values_list("status", flat=True)) == {"active"}
    assert ListChange.objects.filter(entry__in=entries, op="add").count() == 3
    assert f"Accepted {received_case.case_number} as alice: 3 hash entries are active" in out


@pytest.mark.parametrize(
    ("case_number", "username", "message"),
    [
        ("TID-0000-0000", "alice", "No case 'TID-0000-0000'"),
        (None, "nobody", "No user 'nobody'"),
        (None, "pat", "User 'pat' may not decide cases"),
    ],
    ids=["unknown case", "unknown user", "not allowed to decide"],
)
def test_accept_case_names_what_is_wrong(
    received_case, django_user_model, case_number, username, message
):
    staff_in(django_user_model, "alice", "Case reviewer")
    staff_in(django_user_model, "pat", "Partner manager")
    with pytest.raises(CommandError, match=re.escape(message)):
        run("accept_case", case_number or received_case.case_number, "--by", username)
    received_case.refresh_from_db()
    assert received_case.status == Case.Status.RECEIVED and not HashEntry.objects.exists()


def test_accept_case_refuses_an_illegal_transition(received_case, django_user_model):
    staff_in(django_user_model, "alice", "Supervisor")
    run("accept_case", received_case.case_number, "--by", "alice")
    with pytest.raises(CommandError, match="cannot be accepted \\(it is Accepted\\)"):
        run("accept_case", received_case.case_number, "--by", "alice")
    assert ListChange.objects.count() == 3  # nothing published twice


# ------------------------------------------------------------------------------------------------
# seed_demo
# ------------------------------------------------------------------------------------------------

SEED = {"cases": 300, "entries": 400, "seed": 11, "batch_size": 70}


@pytest.fixture
def seeded(default_list):
    return run("seed_demo", **SEED)


def every_check_constraint_holds(model) -> None:
    for constraint in model._meta.constraints:
        if isinstance(constraint, CheckConstraint):
            broken = model.objects.exclude(constraint.condition).count()
            assert broken == 0, f"{model.__name__}: {constraint.name} broken by {broken} rows"


def assert_feed_is_gap_free(hash_list) -> None:
    changes = list(
        ListChange.objects.filter(hash_list=hash_list)
        .order_by("seq")
        .values_list("seq", "sequenced_at")
    )
    assert [seq for seq, _at in changes] == list(range(1, len(changes) + 1))
    stamps = [at for _seq, at in changes]
    assert stamps == sorted(stamps) and stamps[-1] <= timezone.now()


def test_seed_demo_writes_valid_consistent_rows(seeded, default_list):
    for model in (Case, MediaItem, HashEntry, HashEntrySource, ListChange, MatchReport):
        every_check_constraint_holds(model)
    # Every status, with decisions after reports and reasons where the constraint wants them.
    statuses = dict(Case.objects.values_list("status").annotate(n=Count("pk")))
    assert set(statuses) == set(Case.Status.values) and sum(statuses.values()) == 300
    assert not Case.objects.filter(decided_at__lt=F("created_at")).exists()
    assert not Case.objects.filter(withdrawn_at__lt=F("created_at")).exists()
    assert not Case.objects.filter(duplicate_of__created_at__gt=F("created_at")).exists()
    span = Case.objects.aggregate(first=Min("created_at"), last=Max("created_at"))
    assert (span["last"] - span["first"]).days >= 80 and span["last"] <= timezone.now()
    assert Case.objects.filter(status="not_accepted").exclude(rejection_reason="").exists()

    items = MediaItem.objects.all()
    per_case = Case.objects.annotate(n=Count("items")).aggregate(lo=Min("n"), hi=Max("n"))
    assert per_case == {"lo": 1, "hi": 5}
    images = list(items.filter(media_type="image").values_list("pdq", "pdq_quality", "phash"))
    qualities = [q for _pdq, q, _phash in images]
    assert sum(q >= 70 for q in qualities) > 0.8 * len(qualities) and min(qualities) < 50
    assert all(8 <= formats.bit_count(phash) <= 56 for _pdq, _q, phash in images)
    assert items.filter(media_type="video").exists()
    for item in items.filter(media_type="video"):
        assert formats.validate_vpdq(item.vpdq) == item.vpdq
    # Near-duplicate families: different cases reported images within PDQ match distance.
    pdqs = [int(pdq, 16) for pdq, _q, _phash in images]
    near = sum(
        1
        for i, a in enumerate(pdqs)
        for b in pdqs[i + 1 :]
        if 0 < (a ^ b).bit_count() <= formats.PDQ_MATCH_DISTANCE
    )
    assert near > 10
    # ... recorded as the near-duplicate search finds them, with counts and misuse flags.
    recorded = set(NearDuplicatePair.objects.values_list("case_id", "other_id"))
    assert len(recorded) > 10
    found = {
        (case.pk, hit.case.pk)
        for case in Case.objects.prefetch_related("items")
        for hit in case_near_duplicates(case=case).cases
    }
    assert recorded == found
    for case in Case.objects.filter(near_duplicate_cases__gt=0):
        assert case.near_duplicate_cases == sum(1 for a, _b in recorded if a == case.pk)
    assert Case.objects.filter(near_duplicate_cases__gt=0).count() == len({a for a, _ in found})

    # Accepted cases' publishable files are on the list, backed by them, after the decision.
    accepted_items = items.filter(case__status="accepted", publishable=True)
    assert not accepted_items.filter(entry_sources__isnull=True).exists()
    assert not HashEntrySource.objects.exclude(media_item__case__status="accepted").exists()
    backed = HashEntry.objects.filter(sources__isnull=False).distinct()
    for entry in backed.annotate(cases=Count("sources__media_item__case", distinct=True)):
        assert entry.backing_case_count == entry.cases
    first_add = ListChange.objects.filter(entry=OuterRef("entry"), op="add").values("sequenced_at")
    assert not HashEntrySource.objects.filter(
        media_item__case__decided_at__gt=Subquery(first_add[:1])
    ).exists()
    volume = HashEntry.objects.filter(sources__isnull=True)
    # Older list volume counts one unseeded case each, as an active entry must.
    assert volume.count() == 400 and not volume.exclude(backing_case_count=1).exists()
    assert set(HashEntry.objects.values_list("status", flat=True)) == {"active"}

    # The feed: one add per entry, numbered 1..n with times that never go backwards.
    assert_feed_is_gap_free(default_list)
    assert ListChange.objects.count() == HashEntry.objects.count()
    assert not HashEntry.objects.annotate(n=Count("changes")).exclude(n=1).exists()

    # Partners' reports follow publication and are never in the future.
    reports = MatchReport.objects.annotate(published=Subquery(first_add[:1]))
    assert reports.filter(action="removed").exists()
    assert not reports.filter(matched_at__lt=F("published")).exists()
    assert not reports.filter(
        Q(action_at__lt=F("matched_at")) | Q(action_at__gt=timezone.now())
    ).exists()
    flagged = HashEntry.objects.filter(flagged_at__isnull=False)
    for entry in flagged.annotate(
        partners=Count(
            "match_reports__partner", filter=Q(match_reports__action="not_relevant"), distinct=True
        )
    ):
        assert entry.partners >= 2
    assert Partner.objects.count() == 4


def test_seed_demo_prints_a_summary(seeded):
    assert "cases        300 (" in seeded and "older list volume" in seeded
    assert re.search(r"the list's feed is at seq [\d,]+", seeded)
    pin = re.search(r"opens with the PIN (\d{8})", seeded).group(1)
    from django.contrib.auth.hashers import check_password

    assert check_password(pin, Case.objects.first().pin_hash)


def test_seed_demo_again_with_the_same_seed_backs_the_listed_hashes(seeded, default_list):
    entries_before = HashEntry.objects.count()
    again = run("seed_demo", cases=SEED["cases"], seed=SEED["seed"], batch_size=SEED["batch_size"])
    # The same hashes: the new cases back the listed entries instead of duplicating them.
    assert HashEntry.objects.count() == entries_before
    assert "already listed, now also backed by these cases: " in again
    assert HashEntry.objects.filter(backing_case_count__gte=2).exists()
    assert Case.objects.count() == 600 and Partner.objects.count() == 4
    assert_feed_is_gap_free(default_list)
    for entry in HashEntry.objects.filter(sources__isnull=False).annotate(
        cases=Count("sources__media_item__case", distinct=True)
    ):
        assert entry.backing_case_count == entry.cases


def test_seed_demo_continues_an_existing_feed(default_list, received_case, django_user_model):
    staff_in(django_user_model, "alice", "Supervisor")
    run("accept_case", received_case.case_number, "--by", "alice")
    from hashlists.services import list_changes_sequence

    list_changes_sequence()
    run("seed_demo", cases=20, entries=30, seed=3)
    assert_feed_is_gap_free(default_list)
    assert ListChange.objects.filter(seq__isnull=True).count() == 0


def test_seed_demo_never_runs_in_production(default_list):
    with (
        override_settings(SETTINGS_MODULE="tidportal.settings.production"),
        pytest.raises(CommandError, match="never runs in production"),
    ):
        run("seed_demo", cases=1)
    assert not Case.objects.exists()


def test_seed_demo_needs_the_default_list(db):
    HashList.objects.all().delete()
    with pytest.raises(CommandError, match="run migrate"):
        run("seed_demo", cases=1)
