"""The match-report part of the partner API (DESIGN.md section 5), under /api/v1/."""

from django.urls import path

from partners.api import views

app_name = "partner-matches"

urlpatterns = [
    path("matches", views.MatchReportListCreateApi.as_view(), name="match-list"),
    # A str, not a uuid converter: a malformed id must get the API's JSON 404, not Django's page.
    path("matches/<str:report_id>", views.MatchReportDetailApi.as_view(), name="match-detail"),
]
