"""Management commands: create_partner and accept_case, through call_command."""

import re
from io import StringIO

import pytest
from django.contrib.auth.models import Group
from django.core.management import CommandError, call_command

from cases.models import Case
from cases.services import case_create
from hashlists.models import HashEntry, ListChange
from partners.models import ApiKey, Partner
from partners.selectors import api_key_get_for_raw_key


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


def test_create_partner_with_a_webhook_gets_a_signing_secret(default_list):
    out = run(
        "create_partner",
        "Hooked",
        "--lists",
        "take-it-down",
        "--scopes",
        "lists:read",
        "--webhook-url",
        "https://hooks.example.org/tid",
    )
    partner = Partner.objects.get(name="Hooked")
    assert partner.webhook_url == "https://hooks.example.org/tid"
    assert len(partner.webhook_secret) >= 40 and partner.webhook_secret in out


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
