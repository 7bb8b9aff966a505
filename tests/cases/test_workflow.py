"""The case workflow, enforced by services whatever calls them (DESIGN.md section 7)."""

import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from cases import services
from cases.models import Case
from hashlists.models import HashEntry, ListChange
from tests.conftest import staff_with


@pytest.fixture
def case(db, default_list, image_item):
    return services.case_create(reporter="self", under_18_when_made=True, items=[image_item])[0]


@pytest.fixture
def partner_manager(db, django_user_model):
    return staff_with(django_user_model, "pm", "partners.view_partner", "partners.add_apikey")


def test_assign_puts_a_case_in_review_for_the_assignee(case, reviewer):
    services.case_assign(case=case, staff=reviewer)
    case.refresh_from_db()
    assert (case.status, case.assigned_to) == ("in_review", reviewer)


@pytest.mark.parametrize(
    ("decide", "status"),
    [
        (lambda c, s: services.case_accept(case=c, staff=s), "accepted"),
        (lambda c, s: services.case_reject(case=c, staff=s, reason="not_explicit"), "not_accepted"),
    ],
)
def test_decisions_record_who_and_when(case, reviewer, decide, status):
    decide(case, reviewer)
    case.refresh_from_db()
    assert case.status == status and case.decided_by == reviewer and case.decided_at
    record = case.history.latest()
    assert record.history_user_id is None or record.history_user_id == reviewer.pk
    assert record.history_change_reason


ILLEGAL = {
    "accept twice": (
        lambda c, s: services.case_accept(case=c, staff=s),
        lambda c, s: services.case_accept(case=c, staff=s),
    ),
    "reject an accepted case": (
        lambda c, s: services.case_accept(case=c, staff=s),
        lambda c, s: services.case_reject(case=c, staff=s, reason="other"),
    ),
    "assign a withdrawn case": (
        lambda c, s: services.case_withdraw(case=c),
        lambda c, s: services.case_assign(case=c, staff=s),
    ),
    "accept a withdrawn case": (
        lambda c, s: services.case_withdraw(case=c),
        lambda c, s: services.case_accept(case=c, staff=s),
    ),
    "reopen an undecided case": (
        lambda c, s: None,
        lambda c, s: services.case_reopen(case=c, staff=s),
    ),
}


@pytest.mark.parametrize("steps", ILLEGAL.values(), ids=ILLEGAL.keys())
def test_illegal_transitions_are_refused_with_a_clear_message(case, staff_user, steps):
    first, second = steps
    first(case, staff_user)
    status = Case.objects.get(pk=case.pk).status
    with pytest.raises(ValidationError) as info:
        second(case, staff_user)
    assert info.value.messages[0].endswith(".")
    assert Case.objects.get(pk=case.pk).status == status


def test_a_rejection_needs_a_reason_category(case, reviewer):
    with pytest.raises(ValidationError):
        services.case_reject(case=case, staff=reviewer, reason="")
    with pytest.raises(ValidationError):
        services.case_reject(case=case, staff=reviewer, reason="because")


def test_duplicates_point_at_the_first_original(db, default_list, image_item, reviewer):
    make = lambda: services.case_create(  # noqa: E731
        reporter="self", under_18_when_made=True, items=[image_item]
    )[0]
    original, second, third = make(), make(), make()
    services.case_mark_duplicate(case=second, staff=reviewer, original=original)
    services.case_mark_duplicate(case=third, staff=reviewer, original=second)
    third.refresh_from_db()
    assert third.duplicate_of == original
    with pytest.raises(ValidationError):
        services.case_mark_duplicate(case=original, staff=reviewer, original=third)


def test_staff_without_the_permission_cannot_decide(case, partner_manager):
    for action in (
        lambda: services.case_assign(case=case, staff=partner_manager),
        lambda: services.case_accept(case=case, staff=partner_manager),
        lambda: services.case_reject(case=case, staff=partner_manager, reason="other"),
    ):
        with pytest.raises(PermissionDenied):
            action()
    assert Case.objects.get(pk=case.pk).status == "received"


def test_only_supervisors_accept_in_bulk_and_reopen(case, reviewer, staff_user):
    with pytest.raises(PermissionDenied):
        services.case_accept_many(cases=[case], staff=reviewer)
    services.case_accept(case=case, staff=reviewer)
    with pytest.raises(PermissionDenied):
        services.case_reopen(case=case, staff=reviewer)
    services.case_reopen(case=case, staff=staff_user)
    assert Case.objects.get(pk=case.pk).status == "in_review"


def test_bulk_accept_goes_on_past_a_case_that_cannot_be_accepted(
    db, default_list, image_item, staff_user
):
    cases = [
        services.case_create(
            reporter="self", under_18_when_made=True, items=[{**image_item, "md5": f"{n:032x}"}]
        )[0]
        for n in range(3)
    ]
    services.case_withdraw(case=cases[1])
    accepted, problems = services.case_accept_many(cases=cases, staff=staff_user)
    assert accepted == 2 and len(problems) == 1 and cases[1].case_number in problems[0]


def test_accepting_publishes_and_reopening_unpublishes(
    case, staff_user, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        services.case_accept(case=case, staff=staff_user)
    entries = HashEntry.objects.filter(sources__media_item__case=case)
    assert set(entries.values_list("hash_type", "status")) == {
        ("md5", "active"),
        ("pdq", "active"),
        ("phash", "active"),
    }
    assert all(e.backing_case_count == 1 for e in entries)
    with django_capture_on_commit_callbacks(execute=True):
        services.case_reopen(case=case, staff=staff_user)
    assert set(entries.values_list("status", "removal_reason")) == {("removed", "no_backing_case")}
    with django_capture_on_commit_callbacks(execute=True):
        services.case_accept(case=case, staff=staff_user)  # the same hashes come back
    assert set(entries.values_list("status", flat=True)) == {"active"}
    ops = list(ListChange.objects.order_by("seq").values_list("seq", "op"))
    assert [seq for seq, _ in ops] == list(range(1, 10))
    assert [op for _, op in ops] == ["add"] * 3 + ["remove"] * 3 + ["add"] * 3


def test_a_featureless_image_publishes_nothing(db, default_list, image_item, staff_user):
    flat = {**image_item, "pdq_quality": 10}
    case, _pin = services.case_create(reporter="self", under_18_when_made=True, items=[flat])
    services.case_accept(case=case, staff=staff_user)
    assert HashEntry.objects.count() == 0


def test_a_staff_removal_is_not_undone_by_another_report(db, default_list, image_item, staff_user):
    first, _ = services.case_create(reporter="self", under_18_when_made=True, items=[image_item])
    services.case_accept(case=first, staff=staff_user)
    HashEntry.objects.filter(hash_type="pdq").update(status="removed", removal_reason="staff")
    second, _ = services.case_create(reporter="self", under_18_when_made=True, items=[image_item])
    services.case_accept(case=second, staff=staff_user)
    assert HashEntry.objects.get(hash_type="pdq").status == "removed"
    assert HashEntry.objects.get(hash_type="md5").backing_case_count == 2


def test_notes_are_internal_and_need_text(case, reviewer):
    note = services.case_note_add(case=case, staff=reviewer, text="  Looks genuine.  ")
    assert note.text == "Looks genuine." and note.author == reviewer
    with pytest.raises(ValidationError):
        services.case_note_add(case=case, staff=reviewer, text="   ")
