"""Prometheus metrics at ``/metrics``: request rates, feed lag, snapshots, webhooks, the queue,
the read replica's lag.

Request counters are kept in Redis (one hash, HINCRBY per request), so that every gunicorn
worker on every web node adds to the same numbers and one scrape of any node sees them all.
Without Redis (the embedded default) they are kept in the process. Everything else is read
from the database at scrape time with a handful of indexed queries.

Counters are labelled by the URL *pattern* (``/status/<case>/``), never the path: no case
number, key prefix or hash ever becomes a label. The endpoint is disabled (404) unless
TID_METRICS_TOKEN is set, and then wants ``Authorization: Bearer <token>``, compared in
constant time.
"""

import hmac
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from functools import cache as memoize

import redis
from django.conf import settings
from django.db.models import Count, Max, Min
from django.http import Http404, HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from tidportal import db_router, health

REQUESTS_KEY = "tidportal:metrics:http"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class RequestCounters:
    """Request counts and total seconds by (route, method, status class)."""

    def __init__(self, redis_url: str | None) -> None:
        self.redis = (
            redis.Redis.from_url(redis_url, socket_timeout=0.2, socket_connect_timeout=0.2)
            if redis_url
            else None
        )
        self.local: Counter[str] = Counter()
        self.lock = threading.Lock()

    def record(self, route: str, method: str, status: int, seconds: float) -> None:
        field = f"{route}\t{method}\t{status // 100}xx"
        if self.redis is None:
            with self.lock:
                self.local[f"{field}\tcount"] += 1
                self.local[f"{field}\tseconds"] += seconds
            return
        try:
            pipe = self.redis.pipeline(transaction=False)
            pipe.hincrby(REQUESTS_KEY, f"{field}\tcount", 1)
            pipe.hincrbyfloat(REQUESTS_KEY, f"{field}\tseconds", seconds)
            pipe.execute()
        except redis.RedisError:
            pass  # metrics never fail a request; the health check reports Redis as down

    def read(self) -> dict[str, float]:
        if self.redis is None:
            with self.lock:
                return dict(self.local)
        try:
            raw = self.redis.hgetall(REQUESTS_KEY)
        except redis.RedisError:
            return {}
        return {k.decode(): float(v) for k, v in raw.items()}


@memoize
def counters() -> RequestCounters:
    cache = settings.CACHES["default"]
    redis_url = cache["LOCATION"] if cache["BACKEND"].endswith("RedisCache") else None
    return RequestCounters(redis_url)


class RequestMetricsMiddleware:
    """Counts each request under its URL pattern once the response is ready."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = self.get_response(request)
        match = request.resolver_match
        route = f"/{match.route}" if match is not None and match.route else "unmatched"
        if route != "/metrics":
            counters().record(
                route, request.method or "", response.status_code, time.perf_counter() - started
            )
        return response


def _label(value: object) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Exposition:
    """Prometheus' text format, family by family."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(
        self, name: str, kind: str, help_text: str, samples: Iterable[tuple[dict, float]]
    ) -> None:
        self.lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
        for labels, value in samples:
            inner = ",".join(f'{k}="{_label(v)}"' for k, v in labels.items())
            self.lines.append(f"{name}{{{inner}}} {value:g}" if inner else f"{name} {value:g}")

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def _seconds_since(moment) -> float:  # noqa: ANN001 - a datetime or None
    return 0.0 if moment is None else max(0.0, (timezone.now() - moment).total_seconds())


def render() -> str:
    from cases.models import Case
    from hashlists.models import HashEntry, HashList, ListChange, Snapshot
    from partners.models import MatchReport, WebhookDelivery

    out = Exposition()
    requests: dict[tuple[str, str, str], dict[str, float]] = {}
    for key, value in counters().read().items():
        route, method, status, what = key.split("\t")
        requests.setdefault((route, method, status), {})[what] = value
    for suffix, what, help_text in (
        ("total", "count", "HTTP requests answered, by URL pattern, method and status class."),
        ("seconds_total", "seconds", "Seconds spent answering them."),
    ):
        out.family(
            f"tidportal_http_requests_{suffix}",
            "counter",
            help_text,
            (
                ({"route": r, "method": m, "status": s}, v.get(what, 0.0))
                for (r, m, s), v in sorted(requests.items())
            ),
        )

    pending = ListChange.objects.filter(seq__isnull=True).aggregate(
        n=Count("pk"), oldest=Min("created_at")
    )
    out.family(
        "tidportal_feed_unsequenced_changes",
        "gauge",
        "Committed list changes not yet given a sequence number (the feed's backlog).",
        [({}, pending["n"])],
    )
    out.family(
        "tidportal_feed_lag_seconds",
        "gauge",
        "Age of the oldest change waiting for the sequencer; 0 when none waits.",
        [({}, _seconds_since(pending["oldest"]))],
    )
    lists = list(HashList.objects.order_by("slug"))
    heads = dict(
        ListChange.objects.filter(seq__isnull=False)
        .values("hash_list")
        .annotate(seq=Max("seq"))
        .values_list("hash_list", "seq")
    )
    snapshots = {
        row["hash_list"]: row
        for row in Snapshot.objects.values("hash_list").annotate(
            seq=Max("seq"), at=Max("created_at")
        )
    }
    out.family(
        "tidportal_feed_seq",
        "gauge",
        "The newest sequence number on each list's feed.",
        [({"list": hl.slug}, heads.get(hl.pk, 0)) for hl in lists],
    )
    out.family(
        "tidportal_snapshot_seq",
        "gauge",
        "The sequence number of each list's newest snapshot (0: none yet).",
        [({"list": hl.slug}, snapshots.get(hl.pk, {}).get("seq") or 0) for hl in lists],
    )
    out.family(
        "tidportal_snapshot_age_seconds",
        "gauge",
        "Seconds since each list's newest snapshot was built.",
        [
            ({"list": hl.slug}, _seconds_since(snapshots[hl.pk]["at"]))
            for hl in lists
            if hl.pk in snapshots
        ],
    )
    entries = HashEntry.objects.values("hash_list__slug", "status").annotate(n=Count("pk"))
    out.family(
        "tidportal_hash_entries",
        "gauge",
        "Entries on each list, by status.",
        [({"list": e["hash_list__slug"], "status": e["status"]}, e["n"]) for e in entries],
    )
    deliveries = dict(
        WebhookDelivery.objects.values("status").annotate(n=Count("pk")).values_list("status", "n")
    )
    out.family(
        "tidportal_webhook_deliveries",
        "gauge",
        "Webhook deliveries by status: failed ones are retried; gave_up needs a person.",
        [({"status": s}, deliveries.get(s, 0)) for s in WebhookDelivery.Status.values],
    )
    cases = dict(Case.objects.values("status").annotate(n=Count("pk")).values_list("status", "n"))
    out.family(
        "tidportal_cases",
        "gauge",
        "Cases by status.",
        [({"status": s}, cases.get(s, 0)) for s in Case.Status.values],
    )
    waiting = Case.objects.filter(status=Case.Status.RECEIVED).aggregate(oldest=Min("created_at"))
    out.family(
        "tidportal_case_queue_oldest_seconds",
        "gauge",
        "Age of the oldest case nobody has picked up yet.",
        [({}, _seconds_since(waiting["oldest"]))],
    )
    reports = dict(
        MatchReport.objects.values("action").annotate(n=Count("pk")).values_list("action", "n")
    )
    out.family(
        "tidportal_match_reports",
        "gauge",
        "Partners' match reports by their latest outcome.",
        [({"action": a}, reports.get(a, 0)) for a in MatchReport.Action.values],
    )
    if db_router.replica_configured():
        replica = db_router.monitor()
        replica.measure()
        out.family(
            "tidportal_replica_up",
            "gauge",
            "1 while the read replica answers and is a standby; 0 while the primary serves all.",
            [({}, 1 if replica.reachable else 0)],
        )
        if replica.lag is not None:
            out.family(
                "tidportal_replica_lag_seconds",
                "gauge",
                "How long ago the replica last held every commit of the primary (an upper bound, "
                "to within this process's previous check); past TID_REPLICA_MAX_LAG_SECONDS the "
                "primary serves its reads.",
                [({}, replica.lag)],
            )
    age = health.heartbeat_age()
    if age is not None:
        out.family(
            "tidportal_worker_heartbeat_age_seconds",
            "gauge",
            "Seconds since a Celery worker last ran the heartbeat task that beat schedules.",
            [({}, age)],
        )
    return out.text()


@never_cache
@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    token = settings.TID_METRICS_TOKEN
    if not token:
        raise Http404
    sent = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    if not hmac.compare_digest(sent.encode(), token.encode()):
        return HttpResponse(
            "Send Authorization: Bearer <TID_METRICS_TOKEN>.\n",
            status=401,
            content_type="text/plain",
            headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
        )
    return HttpResponse(render(), content_type=CONTENT_TYPE)
