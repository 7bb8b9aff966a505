"""The reporter site's public JSON API (DESIGN.md section 6)."""

from django.urls import path

from cases.api import views

app_name = "public-api"

urlpatterns = [
    path("reports", views.PublicReportCreateApi.as_view(), name="report-create"),
    path("cases/status", views.PublicCaseStatusApi.as_view(), name="case-status"),
    path("cases/items", views.PublicCaseItemsAddApi.as_view(), name="case-items-add"),
    path("cases/withdraw", views.PublicCaseWithdrawApi.as_view(), name="case-withdraw"),
]
