"""The hash-list part of the partner API (DESIGN.md section 5): lists, feed, snapshots, keys."""

import base64
from collections.abc import Iterator
from typing import Any

from django.core.files.storage import default_storage
from django.http import FileResponse, HttpResponse, StreamingHttpResponse
from django.urls import reverse
from django.utils.decorators import method_decorator
from django.views.decorators.gzip import gzip_page
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from hashlists import selectors, signing
from hashlists.api import serializers
from partners.api.authentication import ApiKeyAuthentication, HasScope, PartnerKeyThrottle
from tidportal.api_schema import PARTNER_ERRORS, error_responses, response_headers
from tidportal.db_router import replica_reads


class PartnerApi(APIView):
    authentication_classes = [ApiKeyAuthentication]
    permission_classes = [IsAuthenticated, HasScope]
    throttle_classes = [PartnerKeyThrottle]
    required_scope = "lists:read"


class SnapshotLookupMixin:
    def snapshot_or_not_modified(
        self, request: Request, slug: str
    ) -> tuple[Any, str, HttpResponse | None]:
        """The snapshot asked for (``?seq=``, default the newest), its ETag, and a 304 answer
        when the client already has it."""
        query = serializers.SnapshotQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        snapshot = selectors.snapshot_get_for_partner(
            partner=request.user.partner, slug=slug, seq=query.validated_data.get("seq")
        )
        etag = f'"{snapshot.sha256}"'
        unchanged = request.headers.get("If-None-Match") == etag
        return (
            snapshot,
            etag,
            HttpResponse(status=304, headers={"ETag": etag}) if unchanged else None,
        )


# What the OpenAPI document says about these endpoints (tidportal/api_docs.py serves it).
_EXAMPLE_ENTRY_ID = "3f1c2a9e-7b4d-4c1e-9a52-8d6f0b1e2c34"
_EXAMPLE_SHA256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
LIST_SLUG = OpenApiParameter(
    "slug",
    str,
    OpenApiParameter.PATH,
    pattern=r"^[-a-zA-Z0-9_]+$",
    description="The list's slug, as GET /api/v1/lists/ names it.",
    examples=[OpenApiExample("The default list", value="take-it-down")],
)
IF_NONE_MATCH = OpenApiParameter(
    "If-None-Match",
    str,
    OpenApiParameter.HEADER,
    description="The ETag of the snapshot you already have: if it is still the one asked for, "
    "the answer is a 304 with no body.",
    examples=[
        OpenApiExample(
            "The ETag of a snapshot",
            value=f'"{_EXAMPLE_SHA256}"',
        )
    ],
)
SNAPSHOT_SEQ_INVALID = {"seq": ["A valid integer is required."]}
NOT_MODIFIED = OpenApiResponse(
    description="Not modified: the snapshot asked for is the one named by If-None-Match."
)
SNAPSHOT_ETAG = {"ETag": "The quoted SHA-256 of the snapshot file; send it in If-None-Match."}
SNAPSHOT_NOT_FOUND = (
    "The list is not granted to this partner or does not exist, or it has no snapshot (yet, or "
    "at that seq)."
)


class HashListListApi(PartnerApi):
    @extend_schema(
        operation_id="lists_list",
        summary="The lists this partner may read",
        description="Published lists granted to the key's partner, by slug. Needs `lists:read`.",
        responses={
            200: OpenApiResponse(
                serializers.HashListSerializer(many=True),
                description="The lists, by slug.",
                examples=[
                    OpenApiExample(
                        "One list",
                        # drf-spectacular shows it as the list's one item.
                        value={
                            "slug": "take-it-down",
                            "name": "Take It Down",
                            "description": "Images and videos reported by the people in them.",
                            "last_seq": 48213,
                        },
                    )
                ],
            ),
            **error_responses(*PARTNER_ERRORS),
        },
    )
    @replica_reads  # may lag by TID_REPLICA_MAX_LAG_SECONDS (tidportal/db_router.py)
    def get(self, request: Request) -> Response:
        lists = selectors.hash_lists_for_partner(partner=request.user.partner)
        data = [
            {
                "slug": hl.slug,
                "name": hl.name,
                "description": hl.description,
                "last_seq": hl.last_seq or 0,
            }
            for hl in lists
        ]
        return Response(serializers.HashListSerializer(data, many=True).data)


@method_decorator(gzip_page, name="dispatch")
class ListChangesApi(PartnerApi):
    @extend_schema(
        operation_id="list_changes",
        summary="A page of the list's change feed",
        description="Changes with a seq greater than `after`, in seq order, at most `limit`: "
        "keyset pagination, so pages are cheap at any depth. Only sequenced changes appear, "
        "and a change never appears before an earlier one has: a reader that follows `next` "
        "until `has_more` is false, then polls, never misses or reorders a change. The page is "
        "streamed; it is gzip-compressed (Content-Encoding) when the request accepts gzip. "
        "Needs `lists:read`.",
        parameters=[serializers.ListChangesQuerySerializer, LIST_SLUG],
        examples=[
            OpenApiExample(
                "Follow the feed after a snapshot",
                parameter_only=("after", OpenApiParameter.QUERY),
                value=48000,
            ),
            OpenApiExample(
                "A page size", parameter_only=("limit", OpenApiParameter.QUERY), value=10000
            ),
        ],
        responses={
            200: OpenApiResponse(
                serializers.ListChangesPageSerializer,
                description="A page of changes.",
                examples=[
                    OpenApiExample(
                        "Two changes and more to come",
                        value={
                            "changes": [
                                {
                                    "seq": 48001,
                                    "op": "add",
                                    "id": _EXAMPLE_ENTRY_ID,
                                    "hash_type": "pdq",
                                    "value": "f8f8f0cee0f4a84f06370a22038f63f0"
                                    "b36e2ed596621e1d33e6b39c4e9c9b22",
                                    "media_type": "image",
                                    "quality": 100,
                                    "at": "2026-05-04T10:21:07.512000Z",
                                },
                                {
                                    "seq": 48002,
                                    "op": "remove",
                                    "id": "0b9d5e61-2f3a-4d8b-8c7e-5a4f3e2d1c0b",
                                    "hash_type": "md5",
                                    "value": "d41d8cd98f00b204e9800998ecf8427e",
                                    "media_type": "video",
                                    "quality": None,
                                    "at": "2026-05-04T10:22:41.003000Z",
                                },
                            ],
                            "next": 48002,
                            "has_more": True,
                        },
                    )
                ],
            ),
            **error_responses(
                400,
                404,
                *PARTNER_ERRORS,
                invalid_fields={"limit": ["Ensure this value is less than or equal to 10000."]},
            ),
        },
    )
    @replica_reads  # may lag, never skips a change (tidportal/db_router.py)
    def get(self, request: Request, slug: str) -> StreamingHttpResponse:
        query = serializers.ListChangesQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        hash_list = selectors.hash_list_get_for_partner(partner=request.user.partner, slug=slug)
        after, limit = query.validated_data["after"], query.validated_data["limit"]
        rows = selectors.list_changes_page_json(hash_list=hash_list, after=after, limit=limit)
        return StreamingHttpResponse(
            _stream_page(rows, after=after, limit=limit), content_type="application/json"
        )


def _stream_page(rows: Iterator[tuple[int, str]], *, after: int, limit: int) -> Iterator[bytes]:
    """The page as JSON, written change by change so memory stays flat at 10,000 a page."""
    yield b'{"changes":['
    last, count, has_more = after, 0, False
    buffer: list[str] = []
    for seq, change in rows:
        if count == limit:
            has_more = True
            break
        buffer.append(change)
        last, count = seq, count + 1
        if len(buffer) == 1_000:
            yield ((b"," if count > 1_000 else b"") + ",".join(buffer).encode())
            buffer = []
    if buffer:
        yield ((b"," if count > len(buffer) else b"") + ",".join(buffer).encode())
    yield f'],"next":{last},"has_more":{"true" if has_more else "false"}}}'.encode()


class SnapshotApi(SnapshotLookupMixin, PartnerApi):
    @extend_schema(
        operation_id="list_snapshot",
        summary="The list's newest signed snapshot",
        description="Metadata of a snapshot: the list's active entries as of `seq`, as a gzip'd "
        "JSON Lines file (download it from `download_url`). Verify it before use: the file's "
        "SHA-256 equals `sha256`, and `signature` is an Ed25519 signature by the key `key_id` "
        "(GET /api/v1/keys) over `signed_message`, which names the list, seq, entry count and "
        "SHA-256. Then follow the change feed after `seq`. Snapshots are built every few minutes "
        "while the list changes; a few older ones are kept. Needs `lists:read`.",
        parameters=[serializers.SnapshotQuerySerializer, LIST_SLUG, IF_NONE_MATCH],
        responses={
            200: OpenApiResponse(
                serializers.SnapshotSerializer,
                description="The snapshot's metadata.",
                examples=[
                    OpenApiExample(
                        "A snapshot",
                        value={
                            "list": "take-it-down",
                            "seq": 48000,
                            "entry_count": 31877,
                            "size_bytes": 2291460,
                            "sha256": _EXAMPLE_SHA256,
                            "key_id": "5c2e0f9a7d1b3e4f",
                            "signature": "kMR9knVSWigtz9zwa/YgJ2I0HfZUaScWJ2TW+4NuHRrOjGyHkQ"
                            "GsSFGedThbKEA8mPz9gD1jTX0rEygi9kL05g==",
                            "signed_message": "tidportal-snapshot-v1\ntake-it-down\n48000\n"
                            f"31877\n{_EXAMPLE_SHA256}\n",
                            "created_at": "2026-05-04T10:00:00.000000Z",
                            "download_url": "https://tid.example/api/v1/lists/take-it-down/"
                            "snapshot/download?seq=48000",
                        },
                    )
                ],
            ),
            304: NOT_MODIFIED,
            **error_responses(
                400,
                404,
                *PARTNER_ERRORS,
                invalid_fields=SNAPSHOT_SEQ_INVALID,
                descriptions={404: SNAPSHOT_NOT_FOUND},
            ),
        },
        extensions=response_headers({200: SNAPSHOT_ETAG, 304: SNAPSHOT_ETAG}),
    )
    @replica_reads  # may lag (tidportal/db_router.py); the download reads the primary
    def get(self, request: Request, slug: str) -> Response | HttpResponse:
        snapshot, etag, not_modified = self.snapshot_or_not_modified(request, slug)
        if not_modified:
            return not_modified
        data = {
            "hash_list": snapshot.hash_list,
            "seq": snapshot.seq,
            "entry_count": snapshot.entry_count,
            "size_bytes": snapshot.size_bytes,
            "sha256": snapshot.sha256,
            "key_id": snapshot.key_id,
            "signature": base64.b64encode(bytes(snapshot.signature)).decode(),
            "signed_message": signing.snapshot_message(
                list_slug=slug,
                seq=snapshot.seq,
                count=snapshot.entry_count,
                sha256=snapshot.sha256,
            ).decode(),
            "created_at": snapshot.created_at,
            "download_url": request.build_absolute_uri(
                reverse("partner-api:snapshot-download", args=[slug]) + f"?seq={snapshot.seq}"
            ),
        }
        return Response(serializers.SnapshotSerializer(data).data, headers={"ETag": etag})


class SnapshotDownloadApi(SnapshotLookupMixin, PartnerApi):
    @extend_schema(
        operation_id="list_snapshot_download",
        summary="Download a snapshot file",
        description="The snapshot file: gzip'd JSON Lines, one active entry a line, with the "
        "fields of a feed change without `seq`, `op` and `at` (`id`, `hash_type`, `value`, "
        "`media_type`, `quality`, and `frames` for vpdq). The body is the gzip file itself (no "
        "Content-Encoding): its SHA-256 is the snapshot's `sha256`. Needs `lists:read`.",
        parameters=[serializers.SnapshotQuerySerializer, LIST_SLUG, IF_NONE_MATCH],
        responses={
            (200, "application/gzip"): OpenApiResponse(
                OpenApiTypes.BINARY, description="The gzip'd JSON Lines file."
            ),
            304: NOT_MODIFIED,
            **error_responses(
                400,
                404,
                *PARTNER_ERRORS,
                invalid_fields=SNAPSHOT_SEQ_INVALID,
                descriptions={404: SNAPSHOT_NOT_FOUND},
            ),
        },
        extensions=response_headers(
            {
                200: {
                    **SNAPSHOT_ETAG,
                    "X-Tid-Seq": "The snapshot's seq: follow the feed after it.",
                    "Content-Disposition": "attachment; filename=<slug>-<seq>.jsonl.gz",
                },
                304: SNAPSHOT_ETAG,
            }
        ),
    )
    def get(self, request: Request, slug: str) -> FileResponse | HttpResponse:
        snapshot, etag, not_modified = self.snapshot_or_not_modified(request, slug)
        if not_modified:
            return not_modified
        response = FileResponse(
            default_storage.open(snapshot.file.name, "rb"),
            content_type="application/gzip",
            as_attachment=True,
            filename=f"{slug}-{snapshot.seq}.jsonl.gz",
        )
        response["ETag"] = etag
        response["X-Tid-Seq"] = str(snapshot.seq)
        return response


class SigningKeysApi(APIView):
    """The public keys that sign snapshots: public, so anyone can verify."""

    authentication_classes: list = []
    permission_classes = [AllowAny]

    @extend_schema(
        operation_id="signing_keys",
        summary="The public keys that sign snapshots",
        description="Ed25519 public keys by id: the current one, and retired ones so that older "
        "snapshots still verify. Public: no API key needed.",
        auth=[],
        responses={
            200: OpenApiResponse(
                serializers.SigningKeysSerializer,
                description="The keys.",
                examples=[
                    OpenApiExample(
                        "One key",
                        value={
                            "keys": [
                                {
                                    "key_id": "5c2e0f9a7d1b3e4f",
                                    "algorithm": "Ed25519",
                                    "public_key": "3hSrb0xzV+qgezKy08fW03zMG/CzUsoNMmloM4V+Muc=",
                                    "current": True,
                                }
                            ]
                        },
                    )
                ],
            )
        },
    )
    def get(self, request: Request) -> Response:
        keys = [
            {"key_id": k.key_id, "algorithm": "Ed25519", "public_key": k.b64, "current": k.current}
            for k in signing.public_keys()
        ]
        return Response(serializers.SigningKeysSerializer({"keys": keys}).data)
