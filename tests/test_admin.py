"""The admin as staff use it: every model reachable, hashes read-only, roles enforced."""

import re

import pytest
from django.apps import apps
from django.contrib import admin
from django.contrib.auth.models import Group
from django.urls import reverse

from cases.services import case_create
from partners.models import ApiKey
from partners.selectors import api_key_get_for_raw_key
from partners.services import api_key_create


@pytest.fixture
def superuser_client(client, django_user_model):
    user = django_user_model.objects.create_superuser(username="root", password="pw")
    client.force_login(user)
    return client


@pytest.fixture
def demo_rows(default_list, partner, image_item):
    case, _pin = case_create(reporter="self", under_18_when_made=True, items=[image_item])
    api_key_create(partner=partner, name="k", scopes=["lists:read"])
    return case


def registered_models():
    return [
        m
        for m in apps.get_models()
        if m in admin.site._registry and m._meta.app_label in {"cases", "hashlists", "partners"}
    ]


def test_every_model_is_in_the_admin():
    names = {m.__name__ for m in registered_models()}
    assert names >= {
        "Case",
        "MediaItem",
        "HashList",
        "HashEntry",
        "ListChange",
        "Snapshot",
        "Partner",
        "ApiKey",
        "MatchReport",
        "WebhookDelivery",
    }


@pytest.mark.parametrize("model", registered_models(), ids=lambda m: m.__name__)
def test_every_changelist_loads_with_search_and_filters(superuser_client, demo_rows, model):
    url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
    assert superuser_client.get(url).status_code == 200
    assert superuser_client.get(url, {"q": "0" * 32}).status_code == 200
    obj = model.objects.first()
    if obj is not None:
        change = reverse(
            f"admin:{model._meta.app_label}_{model._meta.model_name}_change", args=[obj.pk]
        )
        assert superuser_client.get(change).status_code == 200


def test_case_search_finds_a_case_by_any_of_its_hashes(superuser_client, demo_rows, image_item):
    url = reverse("admin:cases_case_changelist")
    for value in (demo_rows.case_number, image_item["md5"], image_item["pdq"], image_item["phash"]):
        page = superuser_client.get(url, {"q": value}).content.decode()
        assert demo_rows.case_number in page, value
    assert demo_rows.case_number not in superuser_client.get(url, {"q": "f" * 32}).content.decode()


def test_hashes_and_decisions_are_read_only_on_the_case_page(superuser_client, demo_rows):
    url = reverse("admin:cases_case_change", args=[demo_rows.pk])
    page = superuser_client.get(url).content.decode()
    assert 'name="status"' not in page and 'name="items-0-md5"' not in page
    assert 'name="assigned_to"' in page


def test_creating_an_api_key_in_the_admin_shows_the_secret_once(superuser_client, partner):
    response = superuser_client.post(
        reverse("admin:partners_apikey_add"),
        {"partner": partner.pk, "name": "scanner", "scopes": ["lists:read", "matches:write"]},
        follow=True,
    )
    assert response.status_code == 200
    raw = re.search(r"tid_[0-9a-z]{12}_[0-9A-Za-z]{40}", response.content.decode()).group(0)
    key = ApiKey.objects.get()
    assert api_key_get_for_raw_key(raw_key=raw) == key and key.scopes == [
        "lists:read",
        "matches:write",
    ]
    again = superuser_client.get(reverse("admin:partners_apikey_change", args=[key.pk]))
    assert raw not in again.content.decode()


def test_revoking_keys_from_the_admin_works_at_once(superuser_client, partner):
    key, raw = api_key_create(partner=partner, name="k", scopes=["lists:read"])
    superuser_client.post(
        reverse("admin:partners_apikey_changelist"),
        {"action": "revoke", "_selected_action": [key.pk]},
    )
    assert api_key_get_for_raw_key(raw_key=raw) is None


def staff_in(django_user_model, group_name):
    user = django_user_model.objects.create_user(username=group_name, password="pw", is_staff=True)
    user.groups.add(Group.objects.get(name=group_name))
    return user


@pytest.mark.parametrize(
    ("group_name", "allowed", "denied"),
    [
        (
            "Case reviewer",
            ["cases_case", "hashlists_hashentry", "partners_matchreport"],
            ["partners_apikey", "partners_webhookdelivery"],
        ),
        (
            "Supervisor",
            ["cases_case", "hashlists_hashentry", "partners_webhookdelivery"],
            ["partners_apikey"],
        ),
        (
            "Partner manager",
            ["partners_partner", "partners_apikey", "partners_webhookdelivery"],
            ["cases_case", "cases_mediaitem"],
        ),
    ],
)
def test_roles_see_only_their_part_of_the_admin(
    client, django_user_model, demo_rows, group_name, allowed, denied
):
    client.force_login(staff_in(django_user_model, group_name))
    for name in allowed:
        assert client.get(reverse(f"admin:{name}_changelist")).status_code == 200, name
    for name in denied:
        assert client.get(reverse(f"admin:{name}_changelist")).status_code == 403, name


def test_a_case_reviewer_cannot_create_api_keys(client, django_user_model, partner):
    client.force_login(staff_in(django_user_model, "Case reviewer"))
    response = client.post(
        reverse("admin:partners_apikey_add"),
        {"partner": partner.pk, "name": "x", "scopes": ["lists:read"]},
    )
    assert response.status_code == 403 and ApiKey.objects.count() == 0


def test_case_history_records_who_changed_what(superuser_client, demo_rows, django_user_model):
    reviewer = django_user_model.objects.get(username="root")
    url = reverse("admin:cases_case_change", args=[demo_rows.pk])
    page = superuser_client.get(url).content.decode()
    data = {
        "assigned_to": reviewer.pk,
        "notes-TOTAL_FORMS": 1,
        "notes-INITIAL_FORMS": 0,
        "notes-0-text": "Checked the near-duplicates.",
        "_save": "Save",
    }
    for prefix in ("items",):
        data.update({f"{prefix}-TOTAL_FORMS": 1, f"{prefix}-INITIAL_FORMS": 1})
    data["items-0-id"] = demo_rows.items.get().pk
    data["items-0-case"] = demo_rows.pk
    assert "notes-0-text" in page
    response = superuser_client.post(url, data)
    assert response.status_code == 302, response.content.decode()[:2000]
    demo_rows.refresh_from_db()
    assert demo_rows.assigned_to == reviewer
    assert demo_rows.notes.get().author == reviewer
    latest = demo_rows.history.latest()
    assert latest.history_user == reviewer and latest.assigned_to_id == reviewer.pk
    history = superuser_client.get(reverse("admin:cases_case_history", args=[demo_rows.pk]))
    assert history.status_code == 200 and "root" in history.content.decode()
