"""The StopNCII-compatible API (DESIGN.md section 5): FetchHashes and SubmitFeedback, so that
python-threatexchange's StopNCII client, and Hasher-Matcher-Actioner through it, read our lists
and send feedback when pointed at ``https://<host>/api/compat/stopncii/v1`` (no trailing slash:
the client appends ``/FetchHashes``)."""

from typing import Any

from django.conf import settings
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from partners.api.authentication import HasScope, PartnerKeyThrottle
from partners.compat import selectors, serializers, services
from partners.compat.authentication import StopNCIIKeyAuthentication
from tidportal.api import body_limit_enforce
from tidportal.api_schema import PARTNER_ERRORS, error_responses
from tidportal.db_router import replica_reads

_PDQ = "f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22"
_MD5 = "d41d8cd98f00b204e9800998ecf8427e"
_PAGE_CURSOR = ".eJyrVipQslIyNDBQ0lEqSs7PS0ktAnKiow1jawE:1vN3aB:q8Xq0m3FZb2hQ3s9oVt1Yc1iJ2k"


class StopNCIIApi(APIView):
    authentication_classes = [StopNCIIKeyAuthentication]
    permission_classes = [IsAuthenticated, HasScope]
    throttle_classes = [PartnerKeyThrottle]


class StopNCIIHashesFetchApi(StopNCIIApi):
    required_scope = "lists:read"

    @extend_schema(
        operation_id="stopncii_fetch_hashes",
        summary="FetchHashes: the hashes of your lists, changed since a time",
        description=(
            "StopNCII's FetchHashes over every list granted to you: one record per hash "
            "(ImagePDQ: image PDQ entries; VideoMD5: video MD5 entries), in its latest state, "
            "for the hashes whose state changed in second `startTimestamp` or later, in feed "
            "order. Page with `nextPageToken` while `hasMoreRecords`; store `nextSetTimestamp` "
            "after each page and start the next fetch from it. Authentication: partner API keys "
            "in `Ocp-Apim-Subscription-Key` and `x-functions-key` (the function key needs "
            "`lists:read`). python-threatexchange: `StopNCIIAPI(subscription_key=KEY, "
            "fetch_function_key=KEY, base_url_override='https://<host>/api/compat/stopncii/v1')`."
        ),
        parameters=[serializers.StopNCIIFetchHashesQuerySerializer],
        responses={
            200: OpenApiResponse(
                serializers.StopNCIIFetchHashesResponseSerializer,
                description="A page of hash records, in the order their state changed.",
            ),
            **error_responses(
                400,
                *PARTNER_ERRORS,
                invalid_fields={"pageSize": ["Ensure this value is less than or equal to 10000."]},
            ),
        },
        examples=[
            OpenApiExample(
                "A page",
                response_only=True,
                value={
                    "count": 2,
                    "nextPageToken": _PAGE_CURSOR,
                    "nextSetTimestamp": 1767225600,
                    "hasMoreRecords": True,
                    "hashRecords": [
                        {
                            "lastModtimestamp": 1767225599,
                            "signalType": "ImagePDQ",
                            "hashValue": _PDQ,
                            "hashStatus": "Active",
                            "caseNumbers": {"0b0f8c1e-6a55-4d53-9d2f-1f3c7f1b9e41": "Active"},
                            "CSPFeedbacks": [
                                {
                                    "feedbackValue": "Blocked",
                                    "tags": [],
                                    "source": "Example Platform",
                                }
                            ],
                        },
                        {
                            "lastModtimestamp": 1767225600,
                            "signalType": "VideoMD5",
                            "hashValue": _MD5,
                            "hashStatus": "Withdrawn",
                            "caseNumbers": {"5e7c2d0a-9b1f-4e8a-8c6d-3a2b1c0d9e8f": "Withdrawn"},
                            "CSPFeedbacks": [],
                        },
                    ],
                },
            )
        ],
    )
    @replica_reads  # may lag, never skips a change (tidportal/db_router.py)
    def get(self, request: Request) -> Response:
        query = serializers.StopNCIIFetchHashesQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        page = selectors.stopncii_hash_records_page(
            partner=request.user.partner,
            start_timestamp=query.validated_data["startTimestamp"],
            page_size=query.validated_data["pageSize"],
            page_token=query.validated_data.get("nextPageToken", ""),
        )
        data = {
            "count": len(page.records),
            "next_page_token": page.next_page_token,
            "next_set_timestamp": page.next_set_timestamp,
            "has_more": page.has_more,
            "records": page.records,
        }
        return Response(serializers.StopNCIIFetchHashesResponseSerializer(data).data)


class StopNCIIFeedbackSubmitApi(StopNCIIApi):
    required_scope = "matches:write"

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        """Authenticate, check the scope and throttle first; then refuse, in the API's error
        shape, a body larger than Django would read (DATA_UPLOAD_MAX_MEMORY_SIZE), which Django
        would otherwise answer with an HTML 400."""
        super().initial(request, *args, **kwargs)
        body_limit_enforce(request, settings.DATA_UPLOAD_MAX_MEMORY_SIZE)

    @extend_schema(
        operation_id="stopncii_submit_feedback",
        summary="SubmitFeedback: what your platform found and did, per hash",
        description=(
            "StopNCII's SubmitFeedback, recorded as match reports (the same as `POST "
            "/api/v1/matches`, which takes more detail). Blocked -> removed (restricted with the "
            "tag `restricted`); NotBlocked -> no_action (not_relevant with the tag "
            "`not_relevant`); PendingReview -> pending_review; None, QualityUnknown and Unknown "
            "-> pending_review for a new match, an existing one unchanged; Withdrawn and Deleted "
            "are refused. Feedback on a hash again records the new outcome on the same report "
            "(a decided report never goes back to pending review). The whole batch is checked "
            "first: one bad item is a 400 naming it, and nothing is stored. Authentication: "
            "partner API keys in `Ocp-Apim-Subscription-Key` and `x-functions-key` (the function "
            "key needs `matches:write`; python-threatexchange: `additional_function_keys="
            "{StopNCIIEndpoint.SubmitFeedback: KEY}`)."
        ),
        request=serializers.StopNCIISubmitFeedbackSerializer,
        responses={
            200: OpenApiResponse(
                serializers.StopNCIISubmitFeedbackResponseSerializer,
                description="All the feedback was recorded; the counts say how.",
            ),
            **error_responses(
                400,
                *PARTNER_ERRORS,
                invalid_fields={
                    "hashFeedbacks.1.hashValue": [
                        "No entry with this hash is on a list you may read."
                    ]
                },
            ),
        },
        examples=[
            OpenApiExample(
                "Feedback on two hashes",
                request_only=True,
                value={
                    "count": 2,
                    "hashFeedbacks": [
                        {"hashValue": _PDQ, "feedbackValue": "Blocked", "tags": []},
                        {
                            "hashValue": _MD5,
                            "feedbackValue": "NotBlocked",
                            "tags": ["not_relevant"],
                        },
                    ],
                },
            ),
            OpenApiExample(
                "Recorded",
                response_only=True,
                value={"count": 2, "recorded": 2, "updated": 0, "unchanged": 0},
            ),
        ],
    )
    def post(self, request: Request) -> Response:
        body = serializers.StopNCIISubmitFeedbackSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        result = services.stopncii_feedback_submit(
            partner=request.user.partner, feedbacks=body.validated_data["hashFeedbacks"]
        )
        return Response(
            serializers.StopNCIISubmitFeedbackResponseSerializer(
                {
                    "count": result.count,
                    "recorded": result.recorded,
                    "updated": result.updated,
                    "unchanged": result.unchanged,
                }
            ).data
        )
