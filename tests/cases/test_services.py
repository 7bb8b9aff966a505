import re

import pytest
from django.contrib.auth.hashers import check_password
from django.core.exceptions import ValidationError

from cases.models import CASE_NUMBER_PATTERN, Case, MediaItem
from cases.services import case_create


def video_item(q=90):
    return {
        "media_type": "video",
        "md5": "0" * 32,
        "vpdq": [{"t": 0, "pdq": "ab" * 32, "q": q}, {"t": 1, "pdq": "cd" * 32, "q": q}],
    }


def test_case_create_stores_hashes_and_returns_a_pin_shown_once(db, image_item, default_list):
    case, pin = case_create(
        reporter="self", under_18_when_made=True, items=[image_item, video_item()]
    )
    case.refresh_from_db()
    assert re.fullmatch(CASE_NUMBER_PATTERN, case.case_number)
    assert case.status == Case.Status.RECEIVED and case.hash_list == default_list
    assert re.fullmatch(r"\d{8}", pin)
    assert pin not in case.pin_hash and check_password(pin, case.pin_hash)
    image, video = case.items.order_by("id")
    assert (image.md5, image.pdq, image.pdq_quality, image.phash) == (
        image_item["md5"],
        image_item["pdq"],
        image_item["pdq_quality"],
        image_item["phash"],
    )
    assert image.publishable and video.publishable
    assert video.vpdq == video_item()["vpdq"] and video.pdq == ""


def test_case_numbers_are_random_not_sequential(db, image_item, default_list):
    numbers = [
        case_create(reporter="self", under_18_when_made=True, items=[image_item])[0].case_number
        for _ in range(5)
    ]
    assert len(set(numbers)) == 5
    assert numbers != sorted(numbers) or numbers != sorted(numbers, reverse=True)


def test_featureless_media_is_kept_but_not_publishable(db, image_item, default_list):
    flat = {**image_item, "pdq_quality": 0, "phash": "0" * 16}
    case, _ = case_create(
        reporter="parent", under_18_when_made=True, items=[flat, video_item(q=10)]
    )
    assert [item.publishable for item in case.items.order_by("id")] == [False, False]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"reporter": "stranger"}, "reporter"),
        ({"under_18_when_made": False}, "under_18_when_made"),
        ({"items": []}, "items"),
        ({"items": "not a list"}, "items"),
        ({"items": [{"media_type": "image"}]}, "items.0.md5"),
        ({"items": ["IMAGE"]}, "items.0.item"),
        ({"items": [{"media_type": "audio", "md5": "0" * 32}]}, "items.0.media_type"),
    ],
)
def test_bad_reports_name_the_field_and_store_nothing(db, image_item, changes, field):
    payload = {"reporter": "self", "under_18_when_made": True, "items": [image_item], **changes}
    with pytest.raises(ValidationError) as info:
        case_create(**payload)
    assert field in info.value.message_dict
    assert Case.objects.count() == 0 and MediaItem.objects.count() == 0


def test_one_bad_item_among_good_ones_rejects_the_whole_report(db, image_item):
    bad = {**image_item, "pdq": image_item["pdq"].upper()}
    extra = {**image_item, "surprise": True}
    with pytest.raises(ValidationError) as info:
        case_create(
            reporter="self",
            under_18_when_made=True,
            items=[image_item, bad, {**image_item, "md5": "f" * 32}, extra],
        )
    assert set(info.value.message_dict) == {"items.1.pdq", "items.3.surprise"}
    assert Case.objects.count() == 0 and MediaItem.objects.count() == 0


def test_an_image_may_not_carry_video_fields(db, image_item):
    with pytest.raises(ValidationError) as info:
        case_create(
            reporter="self",
            under_18_when_made=True,
            items=[{**image_item, "vpdq": video_item()["vpdq"]}],
        )
    assert "items.0.vpdq" in info.value.message_dict
