"""Case work in the admin, as staff do it: actions, forms, panels, search, filters, queries."""

import pytest
from django.urls import reverse

from cases import services
from cases.models import Case
from hashlists.models import HashEntry, ListChange
from partners.models import Partner
from partners.selectors import api_key_get_for_raw_key
from partners.services import api_key_create
from tests.conftest import staff_with
from tests.helpers import flip

CHANGELIST = "admin:cases_case_changelist"


@pytest.fixture
def make_case(db, default_list, image_item):
    counter = iter(range(1, 10_000))

    def make(**changes):
        item = {**image_item, "md5": f"{next(counter):032x}", **changes}
        return services.case_create(reporter="self", under_18_when_made=True, items=[item])[0]

    return make


def act(client, action, cases, **extra):
    data = {"action": action, "_selected_action": [c.pk for c in cases], **extra}
    return client.post(reverse(CHANGELIST), data, follow=True)


def test_a_reviewer_assigns_accepts_and_the_hashes_go_live(client, reviewer, make_case):
    case = make_case()
    client.force_login(reviewer)
    act(client, "assign_to_me", [case])
    assert Case.objects.get(pk=case.pk).assigned_to == reviewer
    page = act(client, "accept", [case]).content.decode()
    assert "1 case(s) accepted." in page
    assert HashEntry.objects.filter(status="active").count() == 3


def test_rejecting_asks_for_a_reason_first(client, reviewer, make_case):
    case = make_case()
    client.force_login(reviewer)
    form = act(client, "reject", [case]).content.decode()
    assert 'name="reason"' in form and Case.objects.get(pk=case.pk).status == "received"
    act(client, "reject", [case], apply="1", reason="not_explicit", note="Not in scope.")
    case.refresh_from_db()
    assert case.status == "not_accepted" and case.rejection_reason == "not_explicit"
    assert case.notes.get().text == "Not in scope."


def test_marking_a_duplicate_by_case_number(client, reviewer, make_case):
    original, copy = make_case(), make_case()
    client.force_login(reviewer)
    bad = act(client, "mark_duplicate", [copy], apply="1", original="TID-0000-0000")
    assert "There is no case with that number." in bad.content.decode()
    act(client, "mark_duplicate", [copy], apply="1", original=original.case_number.lower())
    copy.refresh_from_db()
    assert copy.status == "duplicate" and copy.duplicate_of == original


def test_an_illegal_transition_is_refused_with_a_message(client, reviewer, make_case):
    case = make_case()
    services.case_withdraw(case=case)
    client.force_login(reviewer)
    page = act(client, "accept", [case]).content.decode()
    assert "only cases received or in review can be decided" in page
    assert Case.objects.get(pk=case.pk).status == "withdrawn"


def test_bulk_accept_is_for_supervisors(client, reviewer, staff_user, make_case):
    cases = [make_case() for _ in range(3)]
    client.force_login(reviewer)
    page = act(client, "accept", cases).content.decode()
    assert "Only supervisors can accept several cases at once." in page
    assert not Case.objects.filter(status="accepted").exists()
    client.force_login(staff_user)
    assert "3 case(s) accepted." in act(client, "accept", cases).content.decode()


def test_reviewers_cannot_reopen_or_remove_entries(client, reviewer, make_case):
    case = make_case()
    services.case_accept(case=case, staff=reviewer)
    client.force_login(reviewer)
    response = act(client, "reopen", [case])
    assert Case.objects.get(pk=case.pk).status == "accepted"
    entry = HashEntry.objects.first()
    client.post(
        reverse("admin:hashlists_hashentry_changelist"),
        {
            "action": "remove_from_list",
            "_selected_action": [entry.pk],
            "apply": "1",
            "reason": "staff",
        },
    )
    assert HashEntry.objects.get(pk=entry.pk).status == "active"
    assert response.status_code == 200


def test_a_supervisor_removes_an_entry_with_a_reason_and_partners_hear_of_it(
    client, staff_user, make_case, django_capture_on_commit_callbacks
):
    case = make_case()
    with django_capture_on_commit_callbacks(execute=True):
        services.case_accept(case=case, staff=staff_user)
    entry = HashEntry.objects.get(hash_type="pdq")
    client.force_login(staff_user)
    with django_capture_on_commit_callbacks(execute=True):
        client.post(
            reverse("admin:hashlists_hashentry_changelist"),
            {
                "action": "remove_from_list",
                "_selected_action": [entry.pk],
                "apply": "1",
                "reason": "false_positive",
                "note": "Reported by two platforms.",
            },
        )
    entry.refresh_from_db()
    assert (entry.status, entry.removal_reason) == ("removed", "false_positive")
    last = ListChange.objects.order_by("-seq").first()
    assert (last.entry, last.op, last.seq) == (entry, "remove", 4)
    assert entry.history.latest().history_user == staff_user


def test_a_partner_manager_suspends_a_partner_and_its_keys_fail(client, django_user_model, partner):
    _key, raw = api_key_create(partner=partner, name="k", scopes=["lists:read"])
    manager = staff_with(
        django_user_model,
        "pm",
        "partners.view_partner",
        "partners.change_partner",
        "partners.suspend_partner",
    )
    client.force_login(manager)
    client.post(
        reverse("admin:partners_partner_changelist"),
        {"action": "suspend", "_selected_action": [partner.pk]},
    )
    assert Partner.objects.get(pk=partner.pk).status == "suspended"
    assert api_key_get_for_raw_key(raw_key=raw) is None


def test_the_case_page_shows_near_duplicates_and_the_misuse_flag(
    client, staff_user, make_case, image_item
):
    listed = make_case()
    services.case_accept(case=listed, staff=staff_user)
    near = make_case(pdq=flip(image_item["pdq"], 12))
    services.case_near_duplicates_refresh(case=near)
    Case.objects.filter(pk=near.pk).update(misuse_suspected=True)
    client.force_login(staff_user)
    page = client.get(reverse("admin:cases_case_change", args=[near.pk])).content.decode()
    assert listed.case_number in page and "Misuse suspected" in page
    assert "pdq d=0" in page or "pdq d=12" in page or "phash d=0" in page
    filtered = client.get(reverse(CHANGELIST), {"near": "yes"}).content.decode()
    assert near.case_number in filtered and listed.case_number in filtered


def test_searching_by_a_pdq_finds_cases_within_31_bits(client, staff_user, make_case, image_item):
    close = make_case(pdq=flip(image_item["pdq"], 20))
    far = make_case(pdq=flip(image_item["pdq"], 60), phash=flip(image_item["phash"], 30))
    client.force_login(staff_user)
    page = client.get(reverse(CHANGELIST), {"q": image_item["pdq"]}).content.decode()
    assert close.case_number in page and far.case_number not in page


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"assigned": "me"}, {"mine"}),
        ({"assigned": "none"}, {"new", "video"}),
        ({"media": "video"}, {"video"}),
        ({"status": "in_review"}, {"mine"}),
    ],
)
def test_queue_filters(client, reviewer, make_case, params, expected):
    cases = {"mine": make_case(), "new": make_case()}
    video = {"media_type": "video", "md5": "f" * 32, "vpdq": [{"t": 0, "pdq": "ab" * 32, "q": 90}]}
    cases["video"] = services.case_create(reporter="self", under_18_when_made=True, items=[video])[
        0
    ]
    services.case_assign(case=cases["mine"], staff=reviewer)
    client.force_login(reviewer)
    page = client.get(reverse(CHANGELIST), params).content.decode()
    shown = {name for name, case in cases.items() if case.case_number in page}
    assert shown == expected


@pytest.mark.parametrize("count", [5, 40])
def test_the_queue_and_a_case_page_take_a_bounded_number_of_queries(
    client, staff_user, make_case, count, django_assert_max_num_queries
):
    cases = [make_case() for _ in range(count)]
    for case in cases[: count // 2]:
        services.case_accept(case=case, staff=staff_user)
    client.force_login(staff_user)
    with django_assert_max_num_queries(20):
        assert client.get(reverse(CHANGELIST)).status_code == 200
    with django_assert_max_num_queries(45):
        assert client.get(reverse("admin:cases_case_change", args=[cases[0].pk])).status_code == 200


def test_a_case_can_be_assigned_only_to_people_who_work_cases(
    client, reviewer, staff_user, django_user_model, make_case
):
    staff_with(django_user_model, "pm", "partners.view_partner")
    case = make_case()
    client.force_login(staff_user)
    page = client.get(reverse("admin:cases_case_change", args=[case.pk])).content.decode()
    options = page.split('name="assigned_to"')[1].split("</select>")[0]
    assert ">reviewer<" in options and ">supervisor<" in options and ">pm<" not in options
    assert "add_id_assigned_to" not in page
