"""Staff log in with a second factor (TOTP) outside the demo settings."""

import io

import pytest
from django.core.management import CommandError, call_command
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice


@pytest.fixture(autouse=True)
def _otp_required(settings):
    settings.TID_STAFF_OTP_REQUIRED = True


@pytest.fixture
def staff(django_user_model):
    return django_user_model.objects.create_superuser(username="ana", password="a-long-pw-123")


def enrol(username):
    out = io.StringIO()
    call_command("staff_totp_enrol", username, stdout=out)
    return TOTPDevice.objects.get(user__username=username), out.getvalue()


def login(client, token, password="a-long-pw-123"):  # noqa: S107
    data = {"username": "ana", "password": password, "otp_token": token, "next": "/admin/"}
    return client.post("/admin/login/?next=/admin/", data)


def test_enrolment_prints_the_authenticator_url_once(staff):
    device, output = enrol("ana")
    assert device.confirmed and "otpauth://totp/" in output
    with pytest.raises(CommandError, match="already has"):
        enrol("ana")


def test_a_password_alone_does_not_open_the_admin(client, staff):
    enrol("ana")
    response = login(client, token="")
    assert response.status_code == 200  # back on the form, with an error
    assert client.get("/admin/").status_code == 302


def test_a_wrong_code_is_refused(client, staff):
    device, _ = enrol("ana")
    good = TOTP(device.bin_key).token()
    response = login(client, token=f"{(good + 1) % 1_000_000:06d}")
    assert response.status_code == 200
    assert client.get("/admin/").status_code == 302


def test_password_and_current_code_open_the_admin(client, staff):
    device, _ = enrol("ana")
    response = login(client, token=f"{TOTP(device.bin_key).token():06d}")
    assert response.status_code == 302 and response["Location"] == "/admin/"
    assert client.get("/admin/").status_code == 200


def test_a_session_without_the_second_factor_is_not_staff(client, staff):
    client.force_login(staff)
    assert client.get("/admin/cases/case/").status_code == 302


def test_the_demo_settings_ask_for_a_password_only(client, staff, settings):
    settings.TID_STAFF_OTP_REQUIRED = False
    response = client.post(
        "/admin/login/?next=/admin/",
        {"username": "ana", "password": "a-long-pw-123", "next": "/admin/"},
    )
    assert response.status_code == 302
    assert client.get("/admin/").status_code == 200
