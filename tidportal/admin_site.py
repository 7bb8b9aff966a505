"""Staff pages that are not a ModelAdmin, served behind the admin's login.

tidportal/urls.py mounts them ahead of the admin itself::

    path("admin/dashboard/", include("tidportal.admin_site")),

Under /admin/ they get the admin's Content-Security-Policy (tidportal.middleware).
"""

from django.contrib import admin
from django.urls import URLPattern, path

from cases.dashboard import dashboard_view


def dashboard_urls() -> list[URLPattern]:
    """The supervisors' dashboard, relative to where it is mounted.

    ``admin_view`` sends anyone who is not active staff to the admin login and marks the page
    never to be cached; the view itself answers 403 to staff who may not see cases.
    """
    return [path("", admin.site.admin_view(dashboard_view), name="admin_dashboard")]


urlpatterns = dashboard_urls()
