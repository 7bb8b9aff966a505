"""The StopNCII-compatible API (DESIGN.md section 5), under /api/compat/stopncii/v1/."""

from django.urls import path  # noqa: F401

app_name = "stopncii"

urlpatterns: list = []
