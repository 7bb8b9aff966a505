from django.apps import AppConfig


class TidportalConfig(AppConfig):
    """The project package as an app: it holds project-wide commands, templates and checks."""

    name = "tidportal"
    verbose_name = "tidportal"
