"""Turn reported items (as the browser's ``hashFile`` returns them) into MediaItem fields.

Used by the public API and by services alike, so that one rule decides what a valid report is.
Errors name the item and field (``items.2.pdq``) so that a 400 tells the client exactly what.
"""

from collections.abc import Mapping, Sequence
from typing import Any

from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _

from tidkit import formats
from tidkit.errors import HashFormatError

MAX_ITEMS_PER_REPORT = 200
# Ten hours of video in one report at one frame per second. With ~95 bytes of JSON a frame this
# is what sizes the request body limit (cases.api: MAX_BODY_BYTES).
MAX_FRAMES_PER_REPORT = 36_000

IMAGE_KEYS = {"media_type", "md5", "pdq", "pdq_quality", "phash"}
VIDEO_KEYS = {"media_type", "md5", "vpdq"}


def media_items_clean(items: object) -> list[dict[str, Any]]:
    """Validate a list of reported items; return MediaItem field dicts, or raise ValidationError.

    Every item is checked before any is accepted, and every problem is reported at once.
    """
    if not isinstance(items, Sequence) or isinstance(items, str | bytes) or not items:
        raise ValidationError({"items": [_("Choose at least one image or video.")]})
    if len(items) > MAX_ITEMS_PER_REPORT:
        raise ValidationError(
            {
                "items": [
                    _("At most %(n)d files can be reported at once.") % {"n": MAX_ITEMS_PER_REPORT}
                ]
            }
        )
    errors: dict[str, list[str]] = {}
    cleaned: list[dict[str, Any]] = []
    seen: dict[tuple[str, str], int] = {}
    for index, item in enumerate(items):
        try:
            fields = media_item_clean(item)
        except ValidationError as exc:
            for field, messages in exc.message_dict.items():
                errors[f"items.{index}.{field}"] = messages
            continue
        key = (fields["media_type"], fields["md5"])
        if key in seen:
            errors[f"items.{index}.md5"] = [
                _("This is the same file as item %(n)d.") % {"n": seen[key] + 1}
            ]
        seen.setdefault(key, index)
        cleaned.append(fields)
    frames = sum(len(item["vpdq"] or ()) for item in cleaned)
    if frames > MAX_FRAMES_PER_REPORT:
        errors["items"] = [
            _("The videos are too long to report at once (over %(hours)d hours in total).")
            % {"hours": MAX_FRAMES_PER_REPORT // 3600}
        ]
    if errors:
        raise ValidationError(errors)
    return cleaned


def media_item_clean(item: object) -> dict[str, Any]:
    """Validate one item; return MediaItem fields including the derived ``publishable`` flag."""
    if not isinstance(item, Mapping):
        raise ValidationError({"item": [_("Each item is an object with its hashes.")]})
    media_type = item.get("media_type")
    if media_type not in ("image", "video"):
        raise ValidationError({"media_type": [_('Use "image" or "video".')]})
    allowed = IMAGE_KEYS if media_type == "image" else VIDEO_KEYS
    errors: dict[str, list[str]] = {}
    for key in sorted(set(item) - allowed):
        errors[key] = [_("Unexpected field for a %(type)s.") % {"type": media_type}]
    for key in sorted(allowed - set(item)):
        errors[key] = [_("This field is required.")]
    if errors:
        raise ValidationError(errors)

    def check(field: str, fn: Any, *args: Any) -> Any:
        try:
            return fn(item[field], *args)
        except HashFormatError as exc:
            errors[field] = [str(exc)]
            return None

    md5 = check("md5", formats.validate_hex, formats.MD5)
    if media_type == "image":
        pdq = check("pdq", formats.validate_hex, formats.PDQ)
        quality = check("pdq_quality", formats.validate_quality)
        phash = check("phash", formats.validate_hex, formats.PHASH)
        if errors:
            raise ValidationError(errors)
        return {
            "media_type": "image",
            "md5": md5,
            "pdq": pdq,
            "pdq_quality": quality,
            "phash": phash,
            "vpdq": None,
            # A featureless image (PDQ quality < 50) is kept on the case but never published.
            "publishable": formats.pdq_publishable(quality),
        }
    frames = check("vpdq", formats.validate_vpdq)
    if errors:
        raise ValidationError(errors)
    return {
        "media_type": "video",
        "md5": md5,
        "pdq": "",
        "pdq_quality": None,
        "phash": "",
        "vpdq": frames,
        "publishable": any(formats.pdq_publishable(f["q"]) for f in frames),
    }
