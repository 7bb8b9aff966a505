"""Shapes of the match-report part of the partner API (DESIGN.md section 5).

These check shape and type only; what the values mean (which entry, the threshold, the times,
idempotency) is checked by partners.matches, which the StopNCII-compatible API shares.
"""

import base64
import binascii
import json
import uuid
from datetime import datetime
from typing import Any

from django.utils.dateparse import parse_datetime
from django.utils.translation import gettext_lazy as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from hashlists.models import HashType
from partners.matches import (
    CLIENT_REF_MAX,
    CONTENT_REF_MAX,
    FINAL_ACTIONS,
    MAX_BATCH,
    batch_size_message,
)
from partners.models import MatchReport
from tidkit import formats
from tidkit.errors import HashFormatError

ACTION_TEXT = (
    "`pending_review`: the content is held or queued for your review; `removed`: taken down; "
    "`restricted`: kept but limited (hidden, age-gated, not shareable); `no_action`: reviewed "
    "and left up; `not_relevant`: the content is not what the entry lists (a false match)."
)


class MatchReportItemListSerializer(serializers.ListSerializer):
    def to_internal_value(self, data: Any) -> list[dict[str, Any]]:
        # The batch size is an error on `matches` itself (DRF would name it
        # `matches.non_field_errors`), checked before any item is.
        if isinstance(data, list) and not 1 <= len(data) <= MAX_BATCH:
            raise serializers.ValidationError([batch_size_message()])
        return super().to_internal_value(data)


class MatchReportItemSerializer(serializers.Serializer):
    """One match found on the platform, as a partner reports it."""

    class Meta:
        list_serializer_class = MatchReportItemListSerializer

    client_ref = serializers.CharField(
        max_length=CLIENT_REF_MAX,
        trim_whitespace=False,
        help_text="Your own unique reference for this match: the idempotency key. Sending the "
        "same client_ref again (in this batch or any later one) creates nothing new and answers "
        "with the report already stored.",
    )
    entry_id = serializers.UUIDField(
        required=False,
        help_text="The entry matched, by its opaque id as the change feed and snapshots give it "
        "(`id`). Send this, or `hash_type` and `value`.",
    )
    hash_type = serializers.ChoiceField(
        choices=HashType.choices,
        required=False,
        help_text="With `value`: the entry matched, by its hash type and listed value.",
    )
    value = serializers.CharField(
        required=False,
        max_length=64,
        trim_whitespace=False,
        help_text="With `hash_type`: the entry's value exactly as listed (lowercase hex; for "
        "vpdq, the entry's value, not the frames).",
    )
    distance = serializers.IntegerField(
        min_value=0,
        max_value=256,
        help_text="Hamming distance between your content's hash and the entry: 0 for md5, at "
        f"most {formats.PDQ_MATCH_DISTANCE} for pdq, at most {formats.PHASH_MATCH_DISTANCE} "
        f"for phash; for vpdq, the largest PDQ distance between matched frames (at most "
        f"{formats.VPDQ_FRAME_DISTANCE}).",
    )
    listed_match_percent = serializers.FloatField(
        required=False,
        min_value=0,
        max_value=100,
        help_text="vpdq only, required there: the share of the listed video's frames (quality "
        f">= {formats.PDQ_MIN_QUALITY}) that your video matched; at least "
        f"{formats.VPDQ_MATCH_PERCENT:.0f}.",
    )
    query_match_percent = serializers.FloatField(
        required=False,
        min_value=0,
        max_value=100,
        help_text="vpdq only, optional: the share of your video's frames that matched the "
        "listed video.",
    )
    content_ref = serializers.CharField(
        required=False,
        allow_blank=True,
        default="",
        max_length=CONTENT_REF_MAX,
        trim_whitespace=False,
        help_text="Your reference to the content (opaque to us): how you find it again. Put no "
        "personal data here.",
    )
    matched_at = serializers.DateTimeField(
        help_text="When you found the match (ISO 8601 with a time zone; not in the future)."
    )
    action = serializers.ChoiceField(
        choices=MatchReport.Action.choices, help_text=f"What you did. {ACTION_TEXT}"
    )
    action_at = serializers.DateTimeField(
        required=False,
        help_text="When you did it; default `matched_at`. Not before `matched_at`, not in the "
        "future.",
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        has_id = "entry_id" in attrs
        has_type, has_value = "hash_type" in attrs, "value" in attrs
        if has_id and (has_type or has_value):
            raise serializers.ValidationError(
                {"entry_id": [_("Give entry_id, or hash_type and value, not both.")]}
            )
        if not has_id and not (has_type and has_value):
            field = "value" if has_type else "hash_type" if has_value else "entry_id"
            raise serializers.ValidationError(
                {field: [_("Give entry_id, or hash_type and value.")]}
            )
        if has_value:
            # vpdq entries are listed by the SHA-256 of their frames: 64 hex, like pdq.
            as_type = formats.PDQ if attrs["hash_type"] == HashType.VPDQ else attrs["hash_type"]
            try:
                formats.validate_hex(attrs["value"], as_type)
            except HashFormatError:
                raise serializers.ValidationError(
                    {
                        "value": [
                            _("Enter %(n)d lowercase hexadecimal characters.")
                            % {"n": formats.HEX_LENGTHS[as_type]}
                        ]
                    }
                ) from None
        return attrs


class MatchReportBatchSerializer(serializers.Serializer):
    matches = MatchReportItemSerializer(
        many=True,
        min_length=1,
        max_length=MAX_BATCH,
        help_text=f"1 to {MAX_BATCH} matches. The whole batch is checked first: if any item is "
        "not valid, nothing is stored and the 400 names each bad item by index and field.",
    )


class MatchSubmitItemResultSerializer(serializers.Serializer):
    client_ref = serializers.CharField(help_text="Your reference, as sent.")
    id = serializers.UUIDField(
        help_text="The report's opaque id: use it with GET and PATCH /api/v1/matches/{id}."
    )
    created = serializers.BooleanField(
        help_text="True if this request stored it; false if you had already sent this "
        "client_ref (the report stored then is unchanged: change its outcome with PATCH)."
    )


class MatchSubmitResponseSerializer(serializers.Serializer):
    results = MatchSubmitItemResultSerializer(
        many=True, help_text="One per item, in the order of the request."
    )
    created = serializers.IntegerField(help_text="How many reports this request stored.")
    existing = serializers.IntegerField(help_text="How many were already stored (replays).")


class MatchReportSerializer(serializers.Serializer):
    """A stored match report, as the partner that sent it sees it."""

    id = serializers.UUIDField(source="public_id", help_text="The report's opaque id.")
    client_ref = serializers.CharField(help_text="Your reference, as sent.")
    entry_id = serializers.UUIDField(
        source="entry.public_id", help_text="The opaque id of the entry matched."
    )
    list = serializers.CharField(
        source="entry.hash_list.slug", help_text="The slug of the entry's list."
    )
    hash_type = serializers.ChoiceField(
        choices=HashType.choices, help_text="The entry's hash type."
    )
    distance = serializers.IntegerField(help_text="The distance you reported.")
    listed_match_percent = serializers.FloatField(
        allow_null=True, help_text="vpdq only: the share of the listed video's frames matched."
    )
    query_match_percent = serializers.FloatField(
        allow_null=True, help_text="vpdq only: the share of your video's frames matched."
    )
    content_ref = serializers.CharField(help_text="Your content reference, as sent.")
    matched_at = serializers.DateTimeField(help_text="When you found the match.")
    action = serializers.ChoiceField(
        choices=MatchReport.Action.choices, help_text=f"The current outcome. {ACTION_TEXT}"
    )
    action_at = serializers.DateTimeField(help_text="When the current outcome was reached.")
    created_at = serializers.DateTimeField(help_text="When we stored the report.")
    updated_at = serializers.DateTimeField(help_text="When the report last changed.")


class MatchReportOutcomeSerializer(serializers.Serializer):
    action = serializers.ChoiceField(
        choices=MatchReport.Action.choices,
        help_text="The new outcome: one of "
        + ", ".join(f"`{a}`" for a in sorted(FINAL_ACTIONS))
        + ". From `pending_review` any of them; from one of them, another (a correction). "
        "Nothing goes back to `pending_review`; sending the current action again changes "
        "nothing.",
    )
    action_at = serializers.DateTimeField(
        required=False,
        help_text="When it happened; default now. Not before the match, not in the future.",
    )


@extend_schema_field(OpenApiTypes.STR)
class CursorField(serializers.Field):
    """An opaque page cursor: the (matched_at, id) of the last report of the previous page."""

    default_error_messages = {"invalid": _("This cursor is not valid: use `next` as given.")}

    def to_internal_value(self, data: Any) -> tuple[datetime, uuid.UUID]:
        try:
            padded = str(data) + "=" * (-len(str(data)) % 4)
            at, public_id = json.loads(base64.urlsafe_b64decode(padded))
            parsed, public_id = parse_datetime(at), uuid.UUID(public_id)
        except (ValueError, TypeError, AttributeError, binascii.Error):
            self.fail("invalid")
        if parsed is None or parsed.tzinfo is None:
            self.fail("invalid")
        return parsed, public_id

    def to_representation(self, value: tuple[datetime, uuid.UUID]) -> str:
        return encode_cursor(*value)


def encode_cursor(at: datetime, public_id: uuid.UUID) -> str:
    raw = json.dumps([at.isoformat(), str(public_id)], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


class MatchReportListQuerySerializer(serializers.Serializer):
    action = serializers.ChoiceField(
        choices=MatchReport.Action.choices,
        required=False,
        help_text="Only reports whose current outcome is this.",
    )
    matched_since = serializers.DateTimeField(
        required=False, help_text="Only matches at or after this time (inclusive)."
    )
    matched_before = serializers.DateTimeField(
        required=False, help_text="Only matches before this time (exclusive)."
    )
    cursor = CursorField(
        required=False,
        help_text="The `next_cursor` of the previous page (or follow `next`, which carries it).",
    )
    limit = serializers.IntegerField(
        min_value=1, max_value=1_000, default=100, help_text="Reports per page, at most 1000."
    )


class MatchReportPageSerializer(serializers.Serializer):
    results = MatchReportSerializer(
        many=True, help_text="Your reports, newest match first (ties broken by id)."
    )
    next = serializers.URLField(
        allow_null=True,
        help_text="The URL of the next page with the same filters; null on the last page.",
    )
    next_cursor = serializers.CharField(
        allow_null=True, help_text="The cursor of the next page; null on the last page."
    )
