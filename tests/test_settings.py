"""Settings: production refuses to start without its secrets; every page carries the headers."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import run_in_production

ROOT = Path(__file__).resolve().parents[1]
GOOD_KEY = "k" * 60
SIGNING = {"TID_SIGNING_KEY_FILE": "/run/secrets/tidportal-signing.pem"}


def start_production(**env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "TID_"))}
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "ERROR"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**clean, "DJANGO_SETTINGS_MODULE": "tidportal.settings.production", **env},
    )


@pytest.mark.parametrize(
    ("env", "complaint"),
    [
        ({"DJANGO_ALLOWED_HOSTS": "tid.example"}, "DJANGO_SECRET_KEY"),
        ({"DJANGO_SECRET_KEY": GOOD_KEY}, "DJANGO_ALLOWED_HOSTS"),
        ({"DJANGO_SECRET_KEY": "short", "DJANGO_ALLOWED_HOSTS": "tid.example"}, "at least 50"),
        (
            {"DJANGO_SECRET_KEY": "insecure-" + GOOD_KEY, "DJANGO_ALLOWED_HOSTS": "tid.example"},
            "needs",
        ),
    ],
)
def test_production_refuses_to_start_without_its_secrets(env, complaint):
    result = start_production(**env)
    assert result.returncode != 0
    assert complaint in result.stderr


def test_production_starts_with_them_and_passes_the_deploy_checks():
    result = start_production(
        DJANGO_SECRET_KEY=GOOD_KEY, DJANGO_ALLOWED_HOSTS="tid.example", **SIGNING
    )
    assert result.returncode == 0, result.stderr


def test_production_turns_on_https_only_protections():
    out = run_in_production(
        "from django.conf import settings as s; "
        "print(s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SECURE_HSTS_SECONDS >= 31536000, "
        "s.X_FRAME_OPTIONS, s.SECURE_SSL_REDIRECT, s.DEBUG)"
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["True", "True", "True", "DENY", "True", "False"]


@pytest.mark.parametrize("path", ["/", "/admin/login/", "/healthz"])
def test_every_page_sends_the_security_headers(client, db, path):
    response = client.get(path)
    assert response.status_code == 200
    csp = response["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "script-src 'self'" in csp and "unsafe-eval" not in csp
    assert "'unsafe-inline'" not in csp.split("script-src")[1].split(";")[0]
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"
    assert "camera=()" in response["Permissions-Policy"]


def test_the_reporter_pages_allow_no_inline_styles_and_no_third_parties(client, db):
    csp = client.get("/")["Content-Security-Policy"]
    assert "unsafe-inline" not in csp and "http" not in csp


def test_the_home_page_is_available_in_spanish_too(client, db):
    page = client.get("/", HTTP_ACCEPT_LANGUAGE="es").content.decode()
    assert '<html lang="es">' in page
    assert "Cómo funciona" in page and "Tus imágenes nunca salen de tu dispositivo" in page
