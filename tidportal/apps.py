from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class TidportalConfig(AppConfig):
    """The project package as an app: it holds project-wide commands, templates and checks."""

    default = True  # this module also holds StaffAdminConfig
    name = "tidportal"
    verbose_name = "tidportal"


class StaffAdminConfig(admin_apps.AdminConfig):
    """Django's admin with tidportal's site (a second factor for staff)."""

    default = False
    default_site = "tidportal.staff_auth.StaffAdminSite"
