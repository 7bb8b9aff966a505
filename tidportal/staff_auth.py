"""The staff admin site: a second factor (TOTP, django-otp) outside the demo settings.

With TID_STAFF_OTP_REQUIRED on (the default, and always in production), the admin login asks for
a one-time code from a confirmed TOTP device, and a session counts as staff only once verified.
The demo (`make run`) turns it off so that a new user can log in with the printed password.
Devices are enrolled with `manage.py staff_totp_enrol USERNAME`.
"""

from typing import Any

from django.conf import settings
from django.contrib import admin
from django.contrib.admin.forms import AdminAuthenticationForm
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _
from django_otp import devices_for_user
from django_otp.admin import OTPAdminAuthenticationForm, OTPAdminSite


class StaffOTPLoginForm(OTPAdminAuthenticationForm):
    """django-otp's admin login, without the device menu for someone who has one device (the
    usual case: one authenticator app). With several, they still choose."""

    def _chosen_device(self, user: Any) -> Any:
        device = super()._chosen_device(user)
        if device is None:
            confirmed = list(devices_for_user(user, confirmed=True))
            if len(confirmed) == 1:
                device = confirmed[0]
        return device


class StaffAdminSite(admin.AdminSite):
    site_header = _("tidportal staff")
    site_title = _("tidportal staff")
    index_title = _("Case work, hash lists and partners")

    # Read per request, so that the setting (and tests overriding it) take effect at once.
    @property
    def login_form(self) -> type[AdminAuthenticationForm]:  # type: ignore[override]
        if settings.TID_STAFF_OTP_REQUIRED:
            return StaffOTPLoginForm
        return AdminAuthenticationForm

    @property
    def login_template(self) -> str | None:  # type: ignore[override]
        return OTPAdminSite.login_template if settings.TID_STAFF_OTP_REQUIRED else None

    def has_permission(self, request: HttpRequest) -> bool:
        allowed = super().has_permission(request)
        if allowed and settings.TID_STAFF_OTP_REQUIRED:
            return request.user.is_verified()  # type: ignore[union-attr]
        return allowed
