"""/healthz, /healthz/worker and /metrics: what load balancers and Prometheus read."""

import time

import pytest
from django.core.cache import cache
from django.test import override_settings

from cases.services import case_accept, case_assign, case_create
from hashlists.models import ListChange
from hashlists.services import list_changes_sequence
from partners.models import WebhookDelivery
from tests.helpers import free_port
from tidportal import health
from tidportal.tasks import worker_heartbeat

TOKEN = "metrics-token-for-tests"


def test_healthz_checks_each_dependency(client, db, settings):
    settings.CELERY_TASK_ALWAYS_EAGER = False  # reach the real broker too
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "checks": {"database": "ok", "cache": "ok", "broker": "ok"},
    }
    assert "no-cache" in response["Cache-Control"]


def test_healthz_answers_503_quickly_naming_a_broker_that_is_down(client, db, settings):
    settings.CELERY_TASK_ALWAYS_EAGER = False
    settings.CELERY_BROKER_URL = f"redis://127.0.0.1:{free_port()}/0"
    started = time.monotonic()
    response = client.get("/healthz")
    assert time.monotonic() - started < 6
    assert response.status_code == 503 and response["Retry-After"] == "5"
    assert response.json()["checks"] == {
        "database": "ok",
        "cache": "ok",
        "broker": "unavailable",
    }


def test_healthz_answers_503_when_the_cache_is_down(client, db):
    down = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{free_port()}/0",
        }
    }
    with override_settings(CACHES=down):
        response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["checks"]["cache"] == "unavailable"


def test_worker_health_follows_the_heartbeat(client, db, settings):
    settings.CELERY_TASK_ALWAYS_EAGER = False
    settings.TID_WORKER_HEARTBEAT_INTERVAL = 10
    assert client.get("/healthz/worker").status_code == 503  # no worker ever ran it

    worker_heartbeat()
    response = client.get("/healthz/worker")
    assert response.status_code == 200 and response.json()["heartbeat_age_seconds"] < 5

    cache.set(health.HEARTBEAT_KEY, time.time() - 31, timeout=None)  # three beats missed
    response = client.get("/healthz/worker")
    assert response.status_code == 503 and response["Retry-After"] == "5"


def test_worker_health_on_the_embedded_default(client, db):
    assert client.get("/healthz/worker").json() == {"status": "ok", "worker": "in-process"}


@pytest.fixture
def metrics_client(client, settings):
    settings.TID_METRICS_TOKEN = TOKEN

    def scrape() -> dict[str, float]:
        response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
        assert response.status_code == 200
        assert response["Content-Type"].startswith("text/plain; version=0.0.4")
        samples = {}
        for line in response.content.decode().splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                samples[name] = float(value)
        return samples

    return scrape


def test_metrics_are_off_without_a_token_and_need_the_token(client, db, settings):
    assert client.get("/metrics").status_code == 404
    settings.TID_METRICS_TOKEN = TOKEN
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401


def test_metrics_count_requests_by_route_never_by_path(client, db, metrics_client):
    for _ in range(3):
        client.get("/api/v1/lists/take-it-down/changes")  # no key: 401
    client.get("/healthz")
    client.get("/no-such-page/AB12-CD34-EF56")
    samples = metrics_client()

    def requests(route: str, status: str, what: str = "total") -> float:
        labels = f'route="{route}",method="GET",status="{status}"'
        return samples[f"tidportal_http_requests_{what}{{{labels}}}"]

    assert requests("/api/v1/lists/<slug:slug>/changes", "4xx") == 3
    assert requests("/healthz", "2xx") == 1
    assert requests("/healthz", "2xx", "seconds_total") > 0
    assert requests("unmatched", "4xx") == 1
    assert not [name for name in samples if "AB12" in name or "take-it-down/" in name]


def test_metrics_show_the_feed_backlog_head_and_queue(
    db, default_list, image_item, metrics_client, staff_user, partner
):
    case, _pin = case_create(reporter="self", under_18_when_made=True, items=[image_item])
    samples = metrics_client()
    assert samples['tidportal_cases{status="received"}'] == 1
    assert samples["tidportal_case_queue_oldest_seconds"] >= 0
    assert samples["tidportal_feed_unsequenced_changes"] == 0

    case_assign(case=case, staff=staff_user)
    case_accept(case=case, staff=staff_user)  # its changes wait for the sequencer (no commit)
    waiting = ListChange.objects.filter(seq__isnull=True).count()
    assert waiting >= 2  # md5, pdq and phash of the photo
    samples = metrics_client()
    assert samples["tidportal_feed_unsequenced_changes"] == waiting
    assert samples['tidportal_feed_seq{list="take-it-down"}'] == 0
    assert samples['tidportal_cases{status="accepted"}'] == 1
    assert samples['tidportal_hash_entries{list="take-it-down",status="active"}'] == waiting

    list_changes_sequence()
    samples = metrics_client()
    assert samples["tidportal_feed_unsequenced_changes"] == 0
    assert samples["tidportal_feed_lag_seconds"] == 0
    assert samples['tidportal_feed_seq{list="take-it-down"}'] == waiting
    assert samples['tidportal_snapshot_seq{list="take-it-down"}'] == 0


def test_metrics_count_webhook_deliveries_by_status(db, default_list, partner, metrics_client):
    for seq, status in enumerate(["delivered", "failed", "failed", "gave_up"], start=1):
        WebhookDelivery.objects.create(
            partner=partner, hash_list=default_list, seq=seq, status=status
        )
    samples = metrics_client()
    assert samples['tidportal_webhook_deliveries{status="failed"}'] == 2
    assert samples['tidportal_webhook_deliveries{status="gave_up"}'] == 1
    assert samples['tidportal_webhook_deliveries{status="pending"}'] == 0
