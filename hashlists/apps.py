from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class HashlistsConfig(AppConfig):
    name = "hashlists"
    verbose_name = _("Hash lists")
