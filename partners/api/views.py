"""The match-report part of the partner API (DESIGN.md section 5): partners report what their scans
found and what they did, and read their own reports back. Every endpoint needs `matches:write`:
the reports are the partner's own writing, so reading them back goes with the right to write
them (a `lists:read`-only key, such as a scanner's sync job, sees none of it)."""

from typing import Any
from urllib.parse import urlencode

from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from hashlists.api.views import PartnerApi
from partners import matches
from partners.api import serializers
from tidportal.api import body_limit_enforce
from tidportal.api_schema import PARTNER_ERRORS, error_responses

# 1000 items with every field at its longest come to about 1 MB of JSON; twice that leaves room
# for indentation and escaped characters, and stays under Django's DATA_UPLOAD_MAX_MEMORY_SIZE.
MAX_BATCH_BODY_BYTES = 2 * 1024 * 1024
MAX_OUTCOME_BODY_BYTES = 16 * 1024


class MatchPartnerApi(PartnerApi):
    required_scope = "matches:write"
    max_body_bytes = MAX_OUTCOME_BODY_BYTES

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        """Authenticate, check the scope and throttle first; then refuse a body too large to
        read (before anything parses it)."""
        super().initial(request, *args, **kwargs)
        body_limit_enforce(request, self.max_body_bytes)


# ------------------------------------------------------------------------------------------------
# What the OpenAPI document shows
# ------------------------------------------------------------------------------------------------

_REPORT_ID = OpenApiParameter(
    "report_id",
    str,
    OpenApiParameter.PATH,
    description="The report's opaque id, as POST /api/v1/matches answered it.",
    examples=[OpenApiExample("A report id", value="6a0f3c8e-51d2-4b7a-9e3f-2c1d0b9a8e7f")],
)
_EXAMPLE_REPORT = {
    "id": "6a0f3c8e-51d2-4b7a-9e3f-2c1d0b9a8e7f",
    "client_ref": "scan-2026-05-04-000123",
    "entry_id": "3f1c2a9e-7b4d-4c1e-9a52-8d6f0b1e2c34",
    "list": "take-it-down",
    "hash_type": "pdq",
    "distance": 14,
    "listed_match_percent": None,
    "query_match_percent": None,
    "content_ref": "media/8841230",
    "matched_at": "2026-05-04T10:21:07Z",
    "action": "removed",
    "action_at": "2026-05-04T11:02:40Z",
    "created_at": "2026-05-04T10:25:00.118000Z",
    "updated_at": "2026-05-04T11:03:02.542000Z",
}
_NOT_FOUND = "No report with this id was sent by this partner (another partner's is the same 404)."


class MatchReportListCreateApi(MatchPartnerApi):
    max_body_bytes = MAX_BATCH_BODY_BYTES

    @extend_schema(
        operation_id="matches_create",
        summary="Report matches and what was done about them",
        description=(
            f"Report 1 to {matches.MAX_BATCH} matches at once. Each names the entry matched (by "
            "`entry_id`, or by `hash_type` and `value`) on a list this partner may read, the "
            "distance (within the type's threshold), when it was found and what was done.\n\n"
            "All or nothing: the whole batch is checked first, and if any item is not valid the "
            "answer is a 400 naming each bad item by index and field (`matches.3.distance`) and "
            "nothing is stored. An entry that does not exist and one on a list not granted get "
            "the same message.\n\n"
            "Idempotent: `client_ref` is your key. Sending a client_ref you sent before stores "
            "nothing new and answers with the existing report's id (`created: false`), so a "
            "batch can be retried safely after a timeout, even while the first attempt is still "
            "running. A client_ref repeated within one batch is a 400. The answer lists every "
            "item in request order: 201 if anything was stored, 200 if it was all a replay.\n\n"
            "When two or more platforms call the same entry `not_relevant`, it goes to our staff "
            "for review. Needs `matches:write`. The body is limited to "
            f"{MAX_BATCH_BODY_BYTES // (1024 * 1024)} MiB."
        ),
        request=serializers.MatchReportBatchSerializer,
        examples=[
            OpenApiExample(
                "Two matches: one removed, one held for review",
                request_only=True,
                value={
                    "matches": [
                        {
                            "client_ref": "scan-2026-05-04-000123",
                            "hash_type": "pdq",
                            "value": "f8f8f0cee0f4a84f06370a22038f63f0"
                            "b36e2ed596621e1d33e6b39c4e9c9b22",
                            "distance": 14,
                            "content_ref": "media/8841230",
                            "matched_at": "2026-05-04T10:21:07Z",
                            "action": "removed",
                            "action_at": "2026-05-04T11:02:40Z",
                        },
                        {
                            "client_ref": "scan-2026-05-04-000124",
                            "entry_id": "0b9d5e61-2f3a-4d8b-8c7e-5a4f3e2d1c0b",
                            "distance": 0,
                            "content_ref": "media/8841597",
                            "matched_at": "2026-05-04T10:24:51Z",
                            "action": "pending_review",
                        },
                    ]
                },
            ),
        ],
        responses={
            201: OpenApiResponse(
                serializers.MatchSubmitResponseSerializer,
                description="At least one report was stored.",
                examples=[
                    OpenApiExample(
                        "Both stored",
                        status_codes=["201"],
                        value={
                            "results": [
                                {
                                    "client_ref": "scan-2026-05-04-000123",
                                    "id": "6a0f3c8e-51d2-4b7a-9e3f-2c1d0b9a8e7f",
                                    "created": True,
                                },
                                {
                                    "client_ref": "scan-2026-05-04-000124",
                                    "id": "d2b7e4a1-93c6-4f08-b5d1-7e2a6c9f0b3d",
                                    "created": True,
                                },
                            ],
                            "created": 2,
                            "existing": 0,
                        },
                    )
                ],
            ),
            200: OpenApiResponse(
                serializers.MatchSubmitResponseSerializer,
                description="Every item had been sent before (a replay): nothing new stored; "
                "`results` gives the existing ids.",
            ),
            **error_responses(
                400,
                413,
                415,
                *PARTNER_ERRORS,
                invalid_fields={
                    "matches.3.distance": ["At most 31 for a pdq match."],
                    "matches.7.entry_id": [
                        "No entry with this id or hash is on a list you may read."
                    ],
                    "matches.9.client_ref": ["Repeated in this batch (first at item 2)."],
                },
                descriptions={
                    413: f"The body is larger than {MAX_BATCH_BODY_BYTES // (1024 * 1024)} MiB: "
                    "send smaller batches."
                },
            ),
        },
    )
    def post(self, request: Request) -> Response:
        batch = serializers.MatchReportBatchSerializer(data=request.data)
        batch.is_valid(raise_exception=True)
        result = matches.match_reports_submit(
            partner=request.user.partner, items=batch.validated_data["matches"]
        )
        body = {
            "results": [
                {"client_ref": item.client_ref, "id": str(item.id), "created": item.created}
                for item in result.items
            ],
            "created": result.created_count,
            "existing": result.existing_count,
        }
        return Response(
            body, status=status.HTTP_201_CREATED if result.created_count else status.HTTP_200_OK
        )

    @extend_schema(
        operation_id="matches_list",
        summary="This partner's match reports",
        description="The reports this partner sent, and only those, newest match first, "
        "filtered by current outcome and by match time. Pages follow a cursor (keyset "
        "pagination): follow `next` until it is null; pages stay consistent while new reports "
        "arrive. Needs `matches:write`.",
        parameters=[serializers.MatchReportListQuerySerializer],
        responses={
            200: OpenApiResponse(
                serializers.MatchReportPageSerializer,
                description="A page of reports.",
                examples=[
                    OpenApiExample(
                        "One report, more to come",
                        value={
                            "results": [_EXAMPLE_REPORT],
                            "next": "https://tid.example/api/v1/matches?action=removed&limit=1"
                            "&cursor=WyIyMDI2LTA1LTA0VDEwOjIxOjA3KzAwOjAwIiwiNmEwZjNjOGUtNTFkMi00"
                            "YjdhLTllM2YtMmMxZDBiOWE4ZTdmIl0",
                            "next_cursor": "WyIyMDI2LTA1LTA0VDEwOjIxOjA3KzAwOjAwIiwiNmEwZjNjOGUt"
                            "NTFkMi00YjdhLTllM2YtMmMxZDBiOWE4ZTdmIl0",
                        },
                    )
                ],
            ),
            **error_responses(
                400,
                *PARTNER_ERRORS,
                invalid_fields={"cursor": ["This cursor is not valid: use `next` as given."]},
            ),
        },
    )
    def get(self, request: Request) -> Response:
        query = serializers.MatchReportListQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        params = query.validated_data
        limit = params["limit"]
        reports = matches.match_reports_for_partner(
            partner=request.user.partner,
            action=params.get("action"),
            matched_since=params.get("matched_since"),
            matched_before=params.get("matched_before"),
            after=params.get("cursor"),
            limit=limit,
        )
        next_url = next_cursor = None
        if len(reports) > limit:
            reports = reports[:limit]
            next_cursor = serializers.encode_cursor(reports[-1].matched_at, reports[-1].public_id)
            kept = {k: v for k, v in request.query_params.items() if k != "cursor"}
            next_url = request.build_absolute_uri(
                f"{request.path}?{urlencode({**kept, 'cursor': next_cursor})}"
            )
        return Response(
            {
                "results": serializers.MatchReportSerializer(reports, many=True).data,
                "next": next_url,
                "next_cursor": next_cursor,
            }
        )


class MatchReportDetailApi(MatchPartnerApi):
    @extend_schema(
        operation_id="matches_retrieve",
        summary="One of this partner's match reports",
        description="A report this partner sent, by the id POST answered. Another partner's "
        "report is a 404, as a missing one is. Needs `matches:write`.",
        parameters=[_REPORT_ID],
        responses={
            200: OpenApiResponse(
                serializers.MatchReportSerializer,
                description="The report.",
                examples=[OpenApiExample("A removal", value=_EXAMPLE_REPORT)],
            ),
            **error_responses(404, *PARTNER_ERRORS, descriptions={404: _NOT_FOUND}),
        },
    )
    def get(self, request: Request, report_id: str) -> Response:
        report = matches.match_report_get_for_partner(
            partner=request.user.partner, report_id=report_id
        )
        return Response(serializers.MatchReportSerializer(report).data)

    @extend_schema(
        operation_id="matches_outcome",
        summary="Record a later outcome (the takedown confirmation)",
        description="Moves a report from `pending_review` to what was done, with its time "
        "(default now), or corrects one outcome to another (`restricted` to `removed`). "
        "Nothing goes back to `pending_review` (a 400 on `action`). Sending the current action "
        "again changes nothing and answers 200, so retries are safe. Needs `matches:write`.",
        parameters=[_REPORT_ID],
        request=serializers.MatchReportOutcomeSerializer,
        examples=[
            OpenApiExample(
                "Removed after review",
                request_only=True,
                value={"action": "removed", "action_at": "2026-05-04T11:02:40Z"},
            )
        ],
        responses={
            200: OpenApiResponse(
                serializers.MatchReportSerializer,
                description="The report with its outcome.",
                examples=[OpenApiExample("Removed", value=_EXAMPLE_REPORT)],
            ),
            **error_responses(
                400,
                404,
                413,
                415,
                *PARTNER_ERRORS,
                invalid_fields={"action": ["A report cannot go back to pending review."]},
                descriptions={404: _NOT_FOUND},
            ),
        },
    )
    def patch(self, request: Request, report_id: str) -> Response:
        outcome = serializers.MatchReportOutcomeSerializer(data=request.data)
        outcome.is_valid(raise_exception=True)
        report = matches.match_report_outcome_record(
            partner=request.user.partner,
            report_id=report_id,
            action=outcome.validated_data["action"],
            action_at=outcome.validated_data.get("action_at"),
        )
        return Response(serializers.MatchReportSerializer(report).data)
