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
    for index, item in enumerate(items):
        try:
            cleaned.append(media_item_clean(item))
        except ValidationError as exc:
            for field, messages in exc.message_dict.items():
                errors[f"items.{index}.{field}"] = messages
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
            "publishable": formats.pdq_publishable(quality) or formats.phash_publishable(phash),
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
