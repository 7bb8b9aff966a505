"""The project's URLs plus the dashboard, for tests that run before tidportal/urls.py mounts it."""

from django.urls import include, path

from tidportal.urls import urlpatterns as project_urlpatterns

urlpatterns = [
    path("admin/dashboard/", include("tidportal.admin_site")),
    *project_urlpatterns,
]
