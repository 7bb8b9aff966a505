"""The reporter site's public JSON API (DESIGN.md section 6): anonymous, CSRF-protected,
throttled, JSON only. Views translate; services decide."""

from typing import Any

from django.utils.translation import gettext as _
from rest_framework import exceptions, status
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from cases import selectors, services
from cases.api import serializers
from cases.models import Case
from tidportal.api import CaseLookupThrottle, ReportSubmitThrottle, SiteJsonApiMixin
from tidportal.clients import client_key

# The largest legitimate report: 200 images (~200 bytes of JSON each) plus ten hours of video in
# all at one frame per second (36,000 frames at ~95 bytes each, about 3.4 MB).
MAX_BODY_BYTES = 4 * 1024 * 1024


class PublicApi(SiteJsonApiMixin, APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]
    max_body_bytes = 16 * 1024

    def access(self, request: Request, data: dict[str, Any]) -> Case:
        try:
            return services.case_access_for_reporter(
                case_number=data["case_number"], pin=data["pin"], client=client_key(request)
            )
        except services.CaseAccessDenied:
            raise exceptions.NotFound(
                _("We could not find a case with that number and PIN. Check both and try again.")
            ) from None
        except services.CaseLocked as locked:
            raise exceptions.Throttled(
                wait=locked.retry_after,
                detail=_("Too many wrong PINs for this case. Please wait and try again."),
                code="locked",
            ) from None

    def status_response(self, case: Case, code: int = status.HTTP_200_OK) -> Response:
        data = selectors.case_status_for_reporter(case=case)
        return Response(serializers.PublicCaseStatusSerializer(data).data, status=code)


class PublicReportCreateApi(PublicApi):
    throttle_classes = [ReportSubmitThrottle]
    max_body_bytes = MAX_BODY_BYTES

    def post(self, request: Request) -> Response:
        payload = serializers.PublicReportCreateSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        case, pin = services.case_create(**payload.validated_data)
        receipt = {"case_number": case.case_number, "pin": pin}
        return Response(
            serializers.PublicReportReceiptSerializer(receipt).data,
            status=status.HTTP_201_CREATED,
            headers={"Cache-Control": "no-store"},
        )


class PublicCaseStatusApi(PublicApi):
    throttle_classes = [CaseLookupThrottle]

    def post(self, request: Request) -> Response:
        payload = serializers.PublicCaseAccessSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        return self.status_response(self.access(request, payload.validated_data))


class PublicCaseItemsAddApi(PublicApi):
    throttle_classes = [CaseLookupThrottle]
    max_body_bytes = MAX_BODY_BYTES

    def post(self, request: Request) -> Response:
        payload = serializers.PublicCaseItemsAddSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        case = self.access(request, payload.validated_data)
        services.case_items_add(case=case, items=payload.validated_data["items"])
        case.refresh_from_db()
        return self.status_response(case, status.HTTP_201_CREATED)


class PublicCaseWithdrawApi(PublicApi):
    throttle_classes = [CaseLookupThrottle]

    def post(self, request: Request) -> Response:
        payload = serializers.PublicCaseAccessSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        case = services.case_withdraw(case=self.access(request, payload.validated_data))
        return self.status_response(case)
