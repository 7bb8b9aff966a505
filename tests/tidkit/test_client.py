"""tidkit.client against a live server: readable errors carrying the server's detail and fields,
gzip on the feed, retries that honour Retry-After, and what happens when the server is down."""

import gzip
import http.server
import json
import random
import threading
import urllib.request
from collections.abc import Iterator

import pytest

from partners.api.authentication import PartnerKeyThrottle
from tests.helpers import accepted_case, free_port
from tests.tidkit.server import partner_key, random_image
from tidkit.client import (
    AuthenticationError,
    BadRequestError,
    ForbiddenError,
    NotFoundError,
    RateLimitedError,
    ServerError,
    ServerUnreachableError,
    TidClient,
)

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_feed_travels_gzipped_and_reads_back_whole(live_server, partner, staff_user):
    rng = random.Random(1)
    for _ in range(5):
        accepted_case(staff_user, [random_image(rng)])
    key = partner_key(partner)
    raw = urllib.request.Request(
        f"{live_server.url}/api/v1/lists/take-it-down/changes?after=0",
        headers={"Authorization": f"Bearer {key}", "Accept-Encoding": "gzip"},
    )
    with urllib.request.urlopen(raw) as response:
        assert response.headers["Content-Encoding"] == "gzip"
        assert len(json.loads(gzip.decompress(response.read()))["changes"]) == 15

    page = TidClient(live_server.url, key).changes("take-it-down", after=3, limit=10)

    assert [c["seq"] for c in page["changes"]] == list(range(4, 14))
    assert (page["next"], page["has_more"]) == (13, True)


def test_refusals_say_what_the_server_said(live_server, partner, default_list):
    bad_key = TidClient(live_server.url, "tid_unknownprefx_secretsecretsecret", retries=0)
    with pytest.raises(AuthenticationError, match="This API key is not valid") as refused:
        bad_key.lists()
    assert (refused.value.status, refused.value.code) == (401, "not_authenticated")

    writer = TidClient(live_server.url, partner_key(partner, "matches:write"), retries=0)
    with pytest.raises(ForbiddenError, match="lacks the lists:read scope"):
        writer.lists()

    reader = TidClient(live_server.url + "/api/v1/", partner_key(partner), retries=0)
    with pytest.raises(BadRequestError) as invalid:
        reader.changes("take-it-down", after=-1, limit=0)
    assert set(invalid.value.fields) == {"after", "limit"}
    assert "\n  limit: " in str(invalid.value)
    with pytest.raises(NotFoundError):
        reader.changes("no-such-list")

    with pytest.raises(AuthenticationError, match="No API key was given"):
        TidClient(live_server.url, None).lists()
    assert TidClient(live_server.url, None).keys()  # public: no key needed


def test_throttled_requests_wait_as_long_as_retry_after_says(
    live_server, partner, default_list, monkeypatch
):
    monkeypatch.setattr(PartnerKeyThrottle, "rate", "2/minute", raising=False)
    waits: list[float] = []
    client = TidClient(live_server.url, partner_key(partner), retries=2, sleep=waits.append)
    client.lists()
    client.lists()

    with pytest.raises(RateLimitedError, match="Too many attempts") as throttled:
        client.lists()

    assert throttled.value.status == 429
    assert len(waits) == 2 and all(30 <= w <= 60 for w in waits), waits


class _Flaky(http.server.BaseHTTPRequestHandler):
    """Answers 503 with Retry-After to the first ``failures`` requests, then 200."""

    failures = 2
    seen: list[str]

    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        self.seen.append(self.headers.get("Authorization", ""))
        if len(self.seen) <= self.failures:
            body = b'{"error": "unavailable", "detail": "Down for maintenance.", "fields": {}}'
            self.send_response(503)
            self.send_header("Retry-After", "7")
        else:
            body = b'{"keys": []}'
            self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def flaky() -> Iterator[tuple[str, type[_Flaky]]]:
    handler = type("Handler", (_Flaky,), {"seen": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", handler
    server.shutdown()
    server.server_close()


def test_server_errors_are_retried_after_the_time_the_server_asks(flaky):
    url, handler = flaky
    waits: list[float] = []

    assert TidClient(url, "k", retries=3, sleep=waits.append).keys() == []
    assert waits == [7.0, 7.0]
    assert len(handler.seen) == 3

    handler.failures, handler.seen[:] = 10, []
    with pytest.raises(ServerError, match="Down for maintenance") as failed:
        TidClient(url, "k", retries=1, sleep=waits.append).keys()
    assert failed.value.status == 503
    assert len(handler.seen) == 2


def test_an_unreachable_server_is_retried_with_growing_waits_then_reported():
    waits: list[float] = []
    client = TidClient(
        f"http://127.0.0.1:{free_port()}", "k", retries=3, backoff=0.5, sleep=waits.append
    )

    with pytest.raises(ServerUnreachableError, match="Could not reach http://127.0.0.1"):
        client.lists()

    assert len(waits) == 3
    for attempt, wait in enumerate(waits):
        assert 0.5 * 2**attempt <= wait <= 0.75 * 2**attempt


@pytest.mark.parametrize("url", ["ftp://example.org", "file:///etc/passwd", "example.org"])
def test_only_http_servers_are_accepted(url):
    with pytest.raises(ValueError, match="must start with https://"):
        TidClient(url, "k")
