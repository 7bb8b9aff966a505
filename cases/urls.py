"""The reporter site's pages (public, anonymous)."""

from django.urls import path

from cases import views

app_name = "site"

urlpatterns = [
    path("", views.HomeView.as_view(), name="home"),
    path("report/", views.ReportView.as_view(), name="report"),
    path("status/", views.StatusView.as_view(), name="status"),
]
