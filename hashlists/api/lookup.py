"""Hosted lookup on the partner API (DESIGN.md section 5): ``POST /api/v1/lookup``.

For platforms too small to run an index of their own: up to 1,000 hashes in, the matching entries
of the lists granted to the partner out. The request is checked whole before anything is looked
up (one bad item is a 400 naming it, e.g. ``hashes.4.value``); hashlists.lookup does the matching.
"""

from typing import Any

from django.conf import settings
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
)
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from hashlists import lookup
from hashlists.api.views import PartnerApi
from hashlists.models import HashType, MediaType
from tidkit import formats
from tidkit.errors import HashFormatError
from tidportal.api import body_limit_enforce
from tidportal.api_schema import PARTNER_ERRORS, error_responses


class LookupFrameSerializer(serializers.Serializer):
    """One frame of a video's vPDQ hash."""

    t = serializers.FloatField(min_value=0, help_text="Seconds from the start of the video.")
    pdq = serializers.CharField(help_text="The frame's PDQ hash: 64 lowercase hex characters.")
    q = serializers.IntegerField(
        min_value=0,
        max_value=100,
        help_text="The frame's PDQ quality, 0-100. Frames under 50 are left out of matching.",
    )


@extend_schema_field(LookupFrameSerializer(many=True))
class LookupFramesField(serializers.Field):
    """A vPDQ frame list in its canonical form (tidkit.formats.validate_vpdq), checked whole."""

    def to_internal_value(self, data: object) -> list[dict[str, Any]]:
        try:
            return formats.validate_vpdq(data)
        except HashFormatError as exc:
            raise serializers.ValidationError(str(exc)) from None

    def to_representation(self, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return value


class LookupHashSerializer(serializers.Serializer):
    hash_type = serializers.ChoiceField(
        choices=HashType.choices, help_text="What kind of hash `value` (or `frames`) is."
    )
    value = serializers.CharField(
        required=False,
        trim_whitespace=False,
        help_text="md5, pdq, phash: the hash as lowercase hex (32, 64 and 16 characters). "
        "Not for vpdq.",
    )
    frames = LookupFramesField(
        required=False,
        help_text="vpdq only: the video's frames, one a second from t=0, in time order.",
    )
    ref = serializers.CharField(
        required=False,
        max_length=200,
        trim_whitespace=False,
        help_text="Your own reference for this hash (say, your content id); echoed back as is.",
    )
    max_distance = serializers.IntegerField(
        required=False,
        min_value=0,
        help_text="Match only at this Hamming distance or closer; at most the type's threshold "
        "(md5 0, pdq 31, phash 8; for vpdq, the distance at which two frames match: 31), which "
        "is also the default.",
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        hash_type = attrs["hash_type"]
        errors: dict[str, str] = {}
        if hash_type == HashType.VPDQ:
            if "frames" not in attrs:
                errors["frames"] = _("A vpdq hash is a list of frames.")
            if "value" in attrs:
                errors["value"] = _("A vpdq hash has frames, not a value.")
        else:
            if "frames" in attrs:
                errors["frames"] = _("Only a vpdq hash has frames.")
            try:
                formats.validate_hex(attrs.get("value"), hash_type)
            except HashFormatError:
                errors["value"] = _(
                    "A %(type)s hash is exactly %(n)d lowercase hexadecimal characters."
                ) % {"type": hash_type, "n": formats.HEX_LENGTHS[hash_type]}
        threshold = lookup.MATCH_DISTANCES[hash_type]
        if attrs.get("max_distance", 0) > threshold:
            errors["max_distance"] = _(
                "At most %(n)d for %(type)s: a lookup can be stricter than the list's threshold, "
                "not looser."
            ) % {"n": threshold, "type": hash_type}
        if errors:
            raise serializers.ValidationError(errors)
        attrs.setdefault("max_distance", threshold)
        return attrs


class HashLookupSerializer(serializers.Serializer):
    hashes = serializers.ListField(
        child=LookupHashSerializer(),
        min_length=1,
        max_length=lookup.MAX_HASHES,
        help_text=f"The hashes to look up: 1 to {lookup.MAX_HASHES:,}. One invalid hash makes the "
        "whole request a 400 naming it.",
        error_messages={
            "min_length": gettext_lazy("Send at least one hash."),
            "max_length": gettext_lazy("At most {max_length} hashes in one request."),
        },
    )
    lists = serializers.ListField(
        child=serializers.SlugField(),
        required=False,
        min_length=1,
        help_text="Look only in these lists (by slug); default every list granted to you. A list "
        "not granted is a 404, as if it did not exist.",
    )

    def validate_hashes(self, hashes: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if sum(len(h.get("frames", ())) for h in hashes) > lookup.MAX_FRAMES:
            raise serializers.ValidationError(
                _("At most %(n)d video frames in all in one request.") % {"n": lookup.MAX_FRAMES}
            )
        return hashes


class LookupMatchSerializer(serializers.Serializer):
    id = serializers.UUIDField(help_text="The entry's opaque public id, as in the change feed.")
    list = serializers.SlugField(help_text="The list the entry is on.")
    hash_type = serializers.ChoiceField(choices=HashType.choices, help_text="The entry's type.")
    distance = serializers.IntegerField(
        help_text="Bits that differ between your hash and the entry's (0 for md5). For vpdq, "
        "which matches by share of frames: the largest distance between a matched frame of the "
        "listed video and the nearest frame of yours, as a match report gives it.",
    )
    quality = serializers.IntegerField(
        allow_null=True, help_text="The entry's PDQ quality (vpdq: its lowest frame's); or null."
    )
    media_type = serializers.ChoiceField(
        choices=MediaType.choices, help_text="What kind of file the entry came from."
    )
    query_match_percent = serializers.FloatField(
        required=False,
        help_text="vpdq only: the share of your video's usable frames (quality >= 50, counted "
        "once each) within the frame distance of some frame of the listed video.",
    )
    listed_match_percent = serializers.FloatField(
        required=False,
        help_text="vpdq only: the share of the listed video's usable frames matched by some frame "
        "of yours. A video matches when this is 80 or more.",
    )


class LookupResultSerializer(serializers.Serializer):
    ref = serializers.CharField(allow_null=True, help_text="Your `ref` for this hash, or null.")
    matches = LookupMatchSerializer(
        many=True,
        help_text="The active entries this hash matches: nearest first (vpdq: highest "
        "listed_match_percent, then query_match_percent, first); empty for none.",
    )


class LookupListSeqSerializer(serializers.Serializer):
    list = serializers.SlugField(help_text="A list that was searched.")
    seq = serializers.IntegerField(
        help_text="Its change feed's seq that the answer reflects: every change up to it is in "
        "(an entry removed later never matches, even before its removal reaches the feed)."
    )


class LookupResponseSerializer(serializers.Serializer):
    lists = LookupListSeqSerializer(many=True, help_text="The lists searched.")
    results = LookupResultSerializer(many=True, help_text="One per hash sent, in the same order.")


_PDQ = "f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22"
_EXAMPLE_REQUEST = {
    "hashes": [
        {"hash_type": "pdq", "value": _PDQ, "ref": "upload/8812"},
        {"hash_type": "md5", "value": "0cc175b9c0f1b6a831c399e269772661", "ref": "upload/8813"},
        {"hash_type": "phash", "value": "c3e4b2a19d8f7e60", "max_distance": 4},
        {
            "hash_type": "vpdq",
            "ref": "video/311",
            "frames": [
                {"t": 0, "pdq": _PDQ, "q": 92},
                {
                    "t": 1,
                    "pdq": "f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b23",
                    "q": 88,
                },  # noqa: E501
            ],
        },
    ]
}
_EXAMPLE_RESPONSE = {
    "lists": [{"list": "take-it-down", "seq": 48213}],
    "results": [
        {
            "ref": "upload/8812",
            "matches": [
                {
                    "id": "3f1c2a9e-7b4d-4c1e-9a52-8d6f0b1e2c34",
                    "list": "take-it-down",
                    "hash_type": "pdq",
                    "distance": 6,
                    "quality": 100,
                    "media_type": "image",
                }
            ],
        },
        {"ref": "upload/8813", "matches": []},
        {"ref": None, "matches": []},
        {
            "ref": "video/311",
            "matches": [
                {
                    "id": "8b0e4f6a-2d1c-4e7b-b3a5-0c9d8e7f6a51",
                    "list": "take-it-down",
                    "hash_type": "vpdq",
                    "distance": 4,
                    "quality": 88,
                    "media_type": "video",
                    "query_match_percent": 100.0,
                    "listed_match_percent": 85.71,
                }
            ],
        },
    ],
}


class HashLookupApi(PartnerApi):
    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        # Django refuses a larger body anyway (DATA_UPLOAD_MAX_MEMORY_SIZE, 2.5 MB by default,
        # room for MAX_FRAMES frames at ~95 bytes each): say so in the API's own error shape.
        if settings.DATA_UPLOAD_MAX_MEMORY_SIZE is not None:
            body_limit_enforce(request, settings.DATA_UPLOAD_MAX_MEMORY_SIZE)
        super().initial(request, *args, **kwargs)

    @extend_schema(
        operation_id="lookup",
        summary="Look hashes up in the lists",
        description="Hosted matching for platforms that do not run an index of their own: each "
        "hash is compared with the active entries of the lists granted to you (or those named "
        "in `lists`) at the matching defaults, md5 exact, pdq within 31 bits, phash within 8, "
        "and vpdq when at least 80% of a listed video's usable frames are within 31 bits of "
        "your video's usable frames (frames of quality under 50 are left out on both sides). "
        "`max_distance` makes one hash stricter. Entries added to a list match within seconds "
        "of appearing in its change feed; removed entries never match. Needs `lists:read`.",
        request=HashLookupSerializer,
        examples=[OpenApiExample("Images and a video", value=_EXAMPLE_REQUEST, request_only=True)],
        responses={
            200: OpenApiResponse(
                LookupResponseSerializer,
                description="One result per hash, in the order sent.",
                examples=[OpenApiExample("Two matches", value=_EXAMPLE_RESPONSE)],
            ),
            **error_responses(400, 404, 413, *PARTNER_ERRORS),
        },
    )
    def post(self, request: Request) -> Response:
        payload = HashLookupSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        hashes = payload.validated_data["hashes"]
        queries = [
            lookup.LookupQuery(
                hash_type=h["hash_type"],
                max_distance=h["max_distance"],
                value=h.get("value", ""),
                frames=lookup.vpdq_query_frames(h.get("frames", ())),
            )
            for h in hashes
        ]
        answer = lookup.hashes_lookup_for_partner(
            partner=request.user.partner,
            queries=queries,
            list_slugs=payload.validated_data.get("lists"),
        )
        # Built as plain data: at 1,000 hashes an output serializer would cost more than the
        # lookup itself. LookupResponseSerializer documents the same shape.
        return Response(
            {
                "lists": [{"list": slug, "seq": seq} for slug, seq in answer.seqs.items()],
                "results": [
                    {"ref": h.get("ref"), "matches": [_match(m) for m in matches]}
                    for h, matches in zip(hashes, answer.matches, strict=True)
                ],
            }
        )


def _match(m: lookup.LookupMatch) -> dict[str, Any]:
    data = {
        "id": str(m.public_id),
        "list": m.list_slug,
        "hash_type": m.hash_type,
        "distance": m.distance,
        "quality": m.quality,
        "media_type": m.media_type,
    }
    if m.hash_type == HashType.VPDQ:
        data["query_match_percent"] = m.query_match_percent
        data["listed_match_percent"] = m.listed_match_percent
    return data
