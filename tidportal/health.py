"""Health of the service and of its workers, for load balancers and orchestrators.

- ``/healthz``: this web process can reach PostgreSQL and Redis (cache and broker). 200, or 503
  with Retry-After naming what is down, so a load balancer takes the node out of rotation
  instead of sending it requests that would hang or fail.
- ``/healthz/worker``: the background pipeline works end to end. Beat schedules
  ``tidportal.tasks.worker_heartbeat`` every TID_WORKER_HEARTBEAT_INTERVAL seconds through the
  broker, a worker runs it and records the time in the cache; this answers 503 once that record
  is older than three intervals (beat, broker or every worker stopped).

Both answer only status words and ages: nothing about data, versions or hosts.
"""

import time
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from kombu import Connection

HEARTBEAT_KEY = "health:worker-heartbeat"
CHECK_TIMEOUT_SECONDS = 2.0


def _database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def _cache() -> None:
    cache.get("health:probe")  # raises when the Redis behind the cache is down


def _broker() -> None:
    if settings.CELERY_TASK_ALWAYS_EAGER:
        return  # the embedded default: tasks run in-process, there is no broker to reach
    with Connection(settings.CELERY_BROKER_URL, connect_timeout=CHECK_TIMEOUT_SECONDS) as broker:
        broker.ensure_connection(max_retries=1, timeout=CHECK_TIMEOUT_SECONDS)


CHECKS = {"database": _database, "cache": _cache, "broker": _broker}


def dependency_status() -> dict[str, str]:
    """``{"database": "ok" | "unavailable", ...}`` for each dependency of a web process."""
    results = {}
    for name, check in CHECKS.items():
        try:
            check()
            results[name] = "ok"
        except Exception:  # noqa: BLE001 - any failure means "not ready", whatever it is
            results[name] = "unavailable"
    return results


def _answer(body: dict[str, Any], healthy: bool) -> JsonResponse:
    if healthy:
        return JsonResponse({"status": "ok", **body})
    return JsonResponse({"status": "unavailable", **body}, status=503, headers={"Retry-After": "5"})


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    checks = dependency_status()
    return _answer({"checks": checks}, all(v == "ok" for v in checks.values()))


def heartbeat_record() -> None:
    """Called by the worker task: the pipeline beat -> broker -> worker -> cache works."""
    cache.set(HEARTBEAT_KEY, time.time(), timeout=None)


def heartbeat_age() -> float | None:
    """Seconds since a worker last ran the heartbeat task; None if none ever did (or the cache
    is unreachable)."""
    try:
        last = cache.get(HEARTBEAT_KEY)
    except Exception:  # noqa: BLE001 - an unreachable cache is reported as "no heartbeat"
        return None
    return None if last is None else max(0.0, time.time() - float(last))


@never_cache
@require_GET
def healthz_worker(request: HttpRequest) -> JsonResponse:
    if settings.CELERY_TASK_ALWAYS_EAGER:
        # In-process tasks: the web process is the worker.
        return _answer({"worker": "in-process"}, True)
    age = heartbeat_age()
    limit = 3 * settings.TID_WORKER_HEARTBEAT_INTERVAL
    body = {"heartbeat_age_seconds": None if age is None else round(age, 1)}
    return _answer(body, age is not None and age <= limit)
