"""The hash-list part of the partner API (DESIGN.md section 5): lists, feed, snapshots, keys."""

import base64
from collections.abc import Iterator
from typing import Any

from django.core.files.storage import default_storage
from django.http import FileResponse, HttpResponse, StreamingHttpResponse
from django.urls import reverse
from django.utils.decorators import method_decorator
from django.views.decorators.gzip import gzip_page
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from hashlists import selectors, signing
from hashlists.api import serializers
from partners.api.authentication import ApiKeyAuthentication, HasScope, PartnerKeyThrottle


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
        seq = request.query_params.get("seq")
        snapshot = selectors.snapshot_get_for_partner(
            partner=request.user.partner, slug=slug, seq=int(seq) if seq and seq.isdigit() else None
        )
        etag = f'"{snapshot.sha256}"'
        unchanged = request.headers.get("If-None-Match") == etag
        return (
            snapshot,
            etag,
            HttpResponse(status=304, headers={"ETag": etag}) if unchanged else None,
        )


class HashListListApi(PartnerApi):
    @extend_schema(responses=serializers.HashListSerializer(many=True))
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
        parameters=[serializers.ListChangesQuerySerializer],
        responses=serializers.ListChangesPageSerializer,
    )
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
        parameters=[
            OpenApiParameter(
                "seq", int, required=False, description="A particular snapshot; default the newest."
            )
        ],
        responses=serializers.SnapshotSerializer,
    )
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
        parameters=[OpenApiParameter("seq", int, required=False)],
        responses={(200, "application/gzip"): bytes},
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

    @extend_schema(responses=serializers.SigningKeySerializer(many=True))
    def get(self, request: Request) -> Response:
        keys = [
            {"key_id": k.key_id, "algorithm": "Ed25519", "public_key": k.b64, "current": k.current}
            for k in signing.public_keys()
        ]
        return Response({"keys": serializers.SigningKeySerializer(keys, many=True).data})
