from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from hashlists.models import HashEntry
from partners.models import ApiKey, MatchReport, Partner
from partners.selectors import api_key_get_for_raw_key
from partners.services import api_key_create, partner_create


def test_partner_create_grants_the_lists_given(partner, default_list):
    assert partner.slug == "example-platform" and partner.is_active
    assert list(partner.readable_lists.all()) == [default_list]


def test_partner_names_are_unique(partner):
    with pytest.raises(ValidationError) as info:
        partner_create(name="Example Platform")
    assert "name" in info.value.message_dict
    assert Partner.objects.count() == 1


def test_a_new_key_is_shown_once_and_stored_only_as_a_digest(partner):
    key, raw = api_key_create(partner=partner, name="scanner", scopes=["lists:read"])
    assert raw.startswith(f"tid_{key.prefix}_") and len(raw) == 4 + 12 + 1 + 40
    stored = ApiKey.objects.get(pk=key.pk)
    assert raw not in str(stored.__dict__.values()) and raw.split("_")[2] not in stored.digest
    assert api_key_get_for_raw_key(raw_key=raw) == key


def test_keys_are_unique_and_unpredictable(partner):
    raws = {
        api_key_create(partner=partner, name=f"k{n}", scopes=["lists:read"])[1] for n in range(20)
    }
    assert len(raws) == 20 and len({r.split("_")[1] for r in raws}) == 20


@pytest.mark.parametrize(
    "mangle",
    [
        lambda raw: raw[:-1] + ("A" if raw[-1] != "A" else "B"),  # wrong secret
        lambda raw: raw.replace("tid_", "xyz_", 1),
        lambda raw: raw.split("_")[0] + "_" + raw.split("_")[1],  # no secret
        lambda raw: "",
        lambda raw: "tid_zzzzzzzzzzzz_" + raw.split("_", 2)[2],  # unknown prefix
    ],
)
def test_anything_but_the_exact_key_fails(partner, mangle):
    _key, raw = api_key_create(partner=partner, name="scanner", scopes=["lists:read"])
    assert api_key_get_for_raw_key(raw_key=mangle(raw)) is None


def test_revoked_expired_and_suspended_keys_fail_at_once(partner):
    key, raw = api_key_create(partner=partner, name="a", scopes=["lists:read"])
    key.revoked_at = timezone.now()
    key.save()
    assert api_key_get_for_raw_key(raw_key=raw) is None

    key, raw = api_key_create(
        partner=partner,
        name="b",
        scopes=["lists:read"],
        expires_at=timezone.now() - timedelta(seconds=1),
    )
    assert api_key_get_for_raw_key(raw_key=raw) is None

    key, raw = api_key_create(partner=partner, name="c", scopes=["lists:read"])
    assert api_key_get_for_raw_key(raw_key=raw) == key
    Partner.objects.filter(pk=partner.pk).update(status="suspended")
    assert api_key_get_for_raw_key(raw_key=raw) is None


@pytest.mark.parametrize("scopes", [[], ["lists:write"], ["lists:read", "admin"]])
def test_keys_need_known_scopes(partner, scopes):
    with pytest.raises(ValidationError) as info:
        api_key_create(partner=partner, name="k", scopes=scopes)
    assert "scopes" in info.value.message_dict
    assert ApiKey.objects.count() == 0


def test_a_partner_reports_each_client_ref_once(partner, default_list):
    entry = HashEntry.objects.create(
        hash_list=default_list, hash_type="md5", value="0" * 32, media_type="image"
    )
    now = timezone.now()
    fields = {
        "partner": partner,
        "entry": entry,
        "client_ref": "r-1",
        "hash_type": "md5",
        "matched_at": now,
        "action": "removed",
        "action_at": now,
    }
    MatchReport.objects.create(**fields)
    with pytest.raises(IntegrityError), transaction.atomic():
        MatchReport.objects.create(**fields)
    other = partner_create(name="Other Platform")
    MatchReport.objects.create(**{**fields, "partner": other})  # another partner's r-1 is its own
    with pytest.raises(IntegrityError), transaction.atomic():
        MatchReport.objects.create(**{**fields, "client_ref": "r-2", "action": "deleted"})
