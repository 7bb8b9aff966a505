"""While PostgreSQL or Redis is down, the service answers a clear 503 with Retry-After, never a
bare 500 or a hang, and stores nothing half-way."""

import os
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from django.test import Client, override_settings

from cases.models import Case
from tests.helpers import free_port, gunicorn_serving

ROOT = Path(__file__).resolve().parents[1]


def redis_down() -> dict:
    return {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{free_port()}/0",
        }
    }


def test_a_report_while_redis_is_down_gets_503_and_nothing_is_stored(db, default_list, image_item):
    client = Client(raise_request_exception=False)
    with override_settings(CACHES=redis_down()):
        response = client.post(
            "/api/public/reports",
            {"reporter": "self", "under_18_when_made": True, "items": [image_item]},
            content_type="application/json",
        )
    assert response.status_code == 503 and response["Retry-After"] == "10"
    body = response.json()
    assert body["error"] == "unavailable" and "try again" in body["detail"]
    assert Case.objects.count() == 0


def test_the_unavailable_page_is_readable_and_translated(rf):
    from tidportal.api import server_error

    request = rf.get("/status/", HTTP_ACCEPT_LANGUAGE="es")
    from django.utils import translation

    with translation.override("es"):
        try:
            raise ConnectionRefusedError  # noqa: TRY301 - only to fill sys.exc_info()
        except ConnectionRefusedError:
            page = server_error(request)
    assert page.status_code == 500  # not a dependency: a plain server error
    assert "Algo salió mal" in page.content.decode()


@pytest.fixture
def server_without_database():
    """The real WSGI app under gunicorn, with PostgreSQL unreachable."""
    yield from gunicorn_serving(
        {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tidportal.settings.test",
            "DATABASE_URL": f"postgres://postgres@127.0.0.1:{free_port()}/tidportal",
        },
        timeout=30,
    )


def fetch(url: str, **headers: str) -> urllib.error.HTTPError:
    request = urllib.request.Request(url, headers=headers)  # noqa: S310 - loopback
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=10)  # noqa: S310
    return caught.value


def test_while_postgresql_is_down_every_surface_answers_503(server_without_database):
    base = server_without_database
    started = time.monotonic()
    api = fetch(base + "/api/v1/lists/", Authorization="Bearer tid_abcdefgh1234_secret")
    assert api.code == 503 and api.headers["Retry-After"] == "10"
    assert api.headers["Content-Type"] == "application/json"
    assert b'"error": "unavailable"' in api.read().replace(b'":"', b'": "')

    # A staff member's page: the session is looked up in the database.
    page = fetch(base + "/admin/", Cookie="sessionid=" + "1" * 32, **{"Accept-Language": "en"})
    assert page.code == 503 and page.headers["Retry-After"] == "10"
    html = page.read().decode()
    assert "We are briefly unavailable" in html and "Nothing you sent was lost" in html

    health = fetch(base + "/healthz")
    assert health.code == 503
    assert time.monotonic() - started < 20  # answered, not hung
