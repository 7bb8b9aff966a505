"""The database itself enforces the invariants, whatever code writes."""

import pytest
from django.db import IntegrityError, transaction

from cases.models import Case, MediaItem
from hashlists.models import HashEntry, ListChange


def entry(hash_list, **fields):
    values = {
        "hash_type": "pdq",
        "value": "ab" * 32,
        "media_type": "image",
        "quality": 90,
        **fields,
    }
    return HashEntry.objects.create(hash_list=hash_list, **values)


def refused(**fields):
    def write(hash_list):
        return entry(hash_list, **fields)

    return write


@pytest.mark.parametrize(
    "fields",
    [
        {"value": "ab" * 31},  # PDQ of the wrong length
        {"value": "AB" * 32},  # not canonical
        {"hash_type": "phash", "value": "ab" * 32},
        {"hash_type": "md5", "value": "ab" * 8, "quality": None},
        {"hash_type": "sha1", "value": "ab" * 20},
        {"status": "gone"},
        {"status": "removed"},  # removed without a reason
        {"removal_reason": "staff"},  # a reason on an active entry
        {"quality": 101},
        {"hash_type": "vpdq", "media_type": "video", "frames": None},
        {"hash_type": "pdq", "media_type": "video"},
        {"frames": [{"t": 0, "pdq": "ab" * 32, "q": 90}]},
    ],
)
def test_malformed_entries_are_refused_by_the_database(default_list, fields):
    with pytest.raises(IntegrityError), transaction.atomic():
        entry(default_list, **fields)


def test_one_entry_per_list_type_and_value(default_list):
    entry(default_list)
    with pytest.raises(IntegrityError), transaction.atomic():
        entry(default_list)
    entry(default_list, hash_type="md5", value="ab" * 16, quality=None)  # other type: fine


def test_entry_public_ids_are_random_uuids(default_list):
    a, b = entry(default_list), entry(default_list, value="cd" * 32)
    assert a.public_id.version == 4 and a.public_id != b.public_id


def test_feed_sequence_numbers_are_unique_per_list(default_list):
    e = entry(default_list)
    from django.utils import timezone

    ListChange.objects.create(
        hash_list=default_list, entry=e, op="add", seq=1, sequenced_at=timezone.now()
    )
    with pytest.raises(IntegrityError), transaction.atomic():
        ListChange.objects.create(
            hash_list=default_list, entry=e, op="remove", seq=1, sequenced_at=timezone.now()
        )
    with pytest.raises(IntegrityError), transaction.atomic():
        ListChange.objects.create(hash_list=default_list, entry=e, op="add", seq=2)  # no time


@pytest.mark.parametrize(
    "fields",
    [
        {"under_18_when_made": False},
        {"status": "lost"},
        {"status": "not_accepted"},  # without a reason
        {"rejection_reason": "other"},  # a reason on a case that was not rejected
        {"case_number": "TID-0000-000I"},  # I is not in the alphabet
        {"status": "duplicate"},  # of nothing
    ],
)
def test_malformed_cases_are_refused_by_the_database(default_list, fields):
    values = {
        "reporter": "self",
        "under_18_when_made": True,
        "hash_list": default_list,
        "pin_hash": "x",
    }
    with pytest.raises(IntegrityError), transaction.atomic():
        Case.objects.create(**{**values, **fields})


@pytest.mark.parametrize(
    "fields",
    [
        {"md5": "0" * 31},
        {"pdq": ""},
        {"phash": "0" * 15},
        {"vpdq": [{"t": 0}]},  # an image with frames
        {"media_type": "video"},  # a video with image hashes
        {"pdq_quality": 120},
    ],
)
def test_malformed_media_items_are_refused_by_the_database(default_list, fields):
    case = Case.objects.create(
        reporter="self", under_18_when_made=True, hash_list=default_list, pin_hash="x"
    )
    values = {
        "media_type": "image",
        "md5": "0" * 32,
        "pdq": "ab" * 32,
        "pdq_quality": 80,
        "phash": "ab" * 8,
    }
    with pytest.raises(IntegrityError), transaction.atomic():
        MediaItem.objects.create(case=case, **{**values, **fields})


def test_default_list_and_staff_groups_come_from_migrations(default_list, django_user_model):
    from django.contrib.auth.models import Group

    assert default_list.published
    groups = {g.name: {p.codename for p in g.permissions.all()} for g in Group.objects.all()}
    assert {"review_case", "add_casenote"} <= groups["Case reviewer"]
    assert {"review_case", "bulk_accept_case", "change_hashentry"} <= groups["Supervisor"]
    assert {"add_apikey", "revoke_apikey", "suspend_partner"} <= groups["Partner manager"]
    assert (
        "add_apikey" not in groups["Case reviewer"]
        and "bulk_accept_case" not in groups["Case reviewer"]
    )
    assert "review_case" not in groups["Partner manager"]
