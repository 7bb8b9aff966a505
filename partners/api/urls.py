"""The match-report part of the partner API (DESIGN.md section 5), under /api/v1/."""

from django.urls import path  # noqa: F401

app_name = "partner-matches"

urlpatterns: list = []
