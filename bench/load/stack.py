"""What the load scripts share: a fresh database, the running stack, the simulated clients and
the figures. Not run by itself; see reporters.py, partners.py and soak.py.

The stack is the production one on loopback: gunicorn (2 workers, as this machine has 2 cores,
4 threads each) with `tidportal.settings.production`, a Celery worker (concurrency 2) and Celery
beat, PostgreSQL and Redis. Production settings need a secret key, a host list and a signing
key; HTTPS is left to the proxy in front (DJANGO_SECURE_SSL_REDIRECT=false), so the clients
speak plain HTTP to 127.0.0.1. The anonymous throttles are raised for the run (all 50 simulated
reporters share one address, 127.0.0.1): every script prints that.

Seeding (`manage.py seed_demo`, which refuses production settings) runs with the test settings
against the same database.
"""

import gzip
import json
import os
import random
import re
import secrets
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from partner_api import bench_key, free_port, lookup_bodies, percentile  # noqa: E402

DB = "tidportal_bench_load"
REDIS = "redis://127.0.0.1:6379/9"  # broker and cache, as production shares one Redis URL
SCRATCH = Path("/tmp/tidportal-bench-load")
PYTHON = sys.executable
BIN = Path(PYTHON).parent
THROTTLES = {
    "TID_THROTTLE_PUBLIC_REPORT": "100000000/hour",
    "TID_THROTTLE_PUBLIC_CASE": "100000000/hour",
    "TID_THROTTLE_PARTNER": "100000000/minute",
}
ENV = {
    "DJANGO_SETTINGS_MODULE": "tidportal.settings.production",
    "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
    "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
    "DJANGO_SECURE_SSL_REDIRECT": "false",
    "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{DB}",
    "REDIS_URL": REDIS,
    "REDIS_CACHE_URL": REDIS,  # for the seeding run's test settings
    "DJANGO_MEDIA_ROOT": str(SCRATCH / "storage"),
    "TID_SIGNING_KEY_FILE": str(SCRATCH / "signing.pem"),
    "DJANGO_LOG_LEVEL": "WARNING",
    **THROTTLES,
}


def manage(*args: str, settings: str = "tidportal.settings.production") -> None:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": settings}
    if settings.endswith(".test"):
        env["CELERY_TASK_ALWAYS_EAGER"] = "true"
    subprocess.run(
        [PYTHON, "manage.py", *args], cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL
    )


def database_fresh(*, cases: int, entries: int) -> None:
    """Drop and make the bench database, migrate it, seed it; then set Django up on it."""
    os.environ.update(ENV)
    SCRATCH.mkdir(exist_ok=True)
    for sql in (f"DROP DATABASE IF EXISTS {DB}", f"CREATE DATABASE {DB}"):
        subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", sql], check=True)
    subprocess.run(
        ["redis-cli", "-n", REDIS.rsplit("/", 1)[1], "flushdb"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    manage("signing_key_generate", "--if-missing")
    manage("migrate", "--noinput")
    started = time.perf_counter()
    manage(
        "seed_demo",
        "--cases",
        str(cases),
        "--entries",
        str(entries),
        "--partners",
        "1",
        settings="tidportal.settings.test",
    )
    print(
        f"database {DB}: seed_demo --cases {cases:,} --entries {entries:,} in "
        f"{time.perf_counter() - started:.0f} s"
    )
    import django

    django.setup()


def database_drop() -> None:
    from django.db import connections

    connections.close_all()
    subprocess.run(
        ["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", f"DROP DATABASE IF EXISTS {DB}"],
        check=True,
    )


def pin_iterations_use(iterations: int | None) -> None:
    """Hash PINs at ``iterations`` PBKDF2 rounds (TID_PIN_HASH_ITERATIONS) instead of the
    project's default; None keeps tidportal.settings.production as it is."""
    if iterations:
        ENV["TID_PIN_HASH_ITERATIONS"] = str(iterations)


def settings_banner() -> None:
    from tidportal.settings import base

    settings = ENV["DJANGO_SETTINGS_MODULE"]
    rounds = int(ENV.get("TID_PIN_HASH_ITERATIONS") or base.TID_PIN_HASH_ITERATIONS)
    print(
        f"server: gunicorn 2 workers x 4 threads, {settings}, CONN_MAX_AGE 60, PINs hashed "
        f"with PBKDF2 at {rounds:,} iterations; Celery worker -c 2 and beat; "
        "PostgreSQL and Redis on loopback"
    )
    print("throttles raised for the bench: " + ", ".join(f"{k}={v}" for k, v in THROTTLES.items()))


# ------------------------------------------------------------------------------------------------
# The stack
# ------------------------------------------------------------------------------------------------


class Stack:
    """gunicorn, a Celery worker and beat, started in the background and stopped together."""

    def __init__(self) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.processes: dict[str, subprocess.Popen] = {}

    def start(self) -> "Stack":
        commands = {
            "gunicorn": [
                str(BIN / "gunicorn"),
                "tidportal.wsgi",
                "--bind",
                f"127.0.0.1:{self.port}",
                "--workers",
                "2",
                "--threads",
                "4",
                "--timeout",
                "600",
                "--log-level",
                "warning",
            ],
            "worker": [
                str(BIN / "celery"),
                "-A",
                "tidportal",
                "worker",
                "--concurrency",
                "2",
                "--loglevel",
                "WARNING",
                "-n",
                "bench-load@%h",
            ],
            "beat": [
                str(BIN / "celery"),
                "-A",
                "tidportal",
                "beat",
                "--loglevel",
                "WARNING",
                "-s",
                str(SCRATCH / "beat-schedule"),
            ],
        }
        for name, command in commands.items():
            log = open(SCRATCH / f"{name}.log", "w")  # noqa: SIM115 - lives as long as the process
            self.processes[name] = subprocess.Popen(
                command, cwd=ROOT, env={**os.environ, **ENV}, stdout=log, stderr=log
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if request("GET", f"{self.base}/healthz")[0]:
                return self  # it answers
            time.sleep(0.2)
        raise SystemExit(f"gunicorn did not start; see {SCRATCH}/gunicorn.log")

    def stop(self) -> None:
        for process in self.processes.values():
            process.terminate()
        for process in self.processes.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def log_problems(self) -> None:
        """Tracebacks and ERROR lines in the server's, worker's and beat's logs: failures no
        client sees (a task that raised, a 500's traceback)."""
        for name in self.processes:
            text = (SCRATCH / f"{name}.log").read_text(errors="replace")
            problems = sum(
                1 for line in text.splitlines() if "Traceback" in line or "ERROR" in line
            )
            print(f"  {name} log ({SCRATCH / name}.log): {problems} tracebacks or ERROR lines")

    def __enter__(self) -> "Stack":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def pids(self) -> dict[str, int]:
        """Every process of the stack by role: gunicorn master and workers, the Celery worker's
        parent and pool processes, beat."""
        roles = {}
        for name, process in self.processes.items():
            parent = "gunicorn master" if name == "gunicorn" else f"celery {name}"
            roles[parent] = process.pid
            for number, child in enumerate(children(process.pid), start=1):
                role = "gunicorn worker" if name == "gunicorn" else "celery pool"
                roles[f"{role} {number}"] = child
        return roles


def children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except FileNotFoundError:
        return []


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except FileNotFoundError:
        return None
    return None


def postgres_backends() -> dict[str, int]:
    """The PostgreSQL backends connected to the bench database, by pid."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            [DB],
        )
        return {f"postgres {pid}": pid for (pid,) in cursor.fetchall()}


# ------------------------------------------------------------------------------------------------
# Figures
# ------------------------------------------------------------------------------------------------


class Recorder:
    """Latency of every request by kind, and every failure (anything unexpected is one)."""

    def __init__(self) -> None:
        self.latencies: dict[str, list[float]] = defaultdict(list)
        self.failures: dict[str, list[str]] = defaultdict(list)
        self.counts: dict[str, int] = defaultdict(int)  # items: changes read, hashes looked up
        # From the first request's start to the last one's end: rates are over this span, so
        # that kinds split by phase (readers catching up, then polling) show their own rates.
        self.spans: dict[str, list[float]] = {}
        self.lock = threading.Lock()
        self.started = time.perf_counter()
        self.elapsed = 0.0

    def record(self, kind: str, seconds: float, failure: str | None = None, items: int = 0):
        now = time.perf_counter()
        with self.lock:
            self.spans.setdefault(kind, [now - seconds, now])[1] = now
            self.latencies[kind].append(seconds)
            self.counts[kind] += items
            if failure is not None:
                self.failures[kind].append(failure)

    def finish(self) -> None:
        self.elapsed = time.perf_counter() - self.started

    def errors(self) -> int:
        return sum(len(f) for f in self.failures.values())

    def print_table(self, items_label: dict[str, str] | None = None) -> None:
        items_label = items_label or {}
        print(
            f"  {'request':<44}{'count':>7}{'errors':>7}{'req/s':>7}"
            f"{'p50 ms':>8}{'p95 ms':>8}{'p99 ms':>8}{'max ms':>8}  items/s"
        )
        for kind in sorted(self.latencies):
            values = sorted(self.latencies[kind])
            span = self.spans[kind][1] - self.spans[kind][0]
            label = next((text for key, text in items_label.items() if kind.startswith(key)), "")
            rate = f"  {self.counts[kind] / span:,.0f} {label}" if label else ""
            print(
                f"  {kind:<44}{len(values):>7,}{len(self.failures[kind]):>7}"
                f"{len(values) / span:>7.1f}"
                + "".join(f"{percentile(values, q) * 1000:>8.0f}" for q in (0.5, 0.95, 0.99))
                + f"{values[-1] * 1000:>8.0f}{rate}"
            )
        total = sum(len(v) for v in self.latencies.values())
        print("  (req/s and items/s over each kind's own span: first request to last answer)")
        print(
            f"  all: {total:,} requests in {self.elapsed:.0f} s ({total / self.elapsed:.1f}/s), "
            f"{self.errors()} errors"
        )
        for kind, failures in self.failures.items():
            if failures:
                print(f"  first {kind} error: {failures[0]}")


# ------------------------------------------------------------------------------------------------
# HTTP
# ------------------------------------------------------------------------------------------------


def request(
    method: str, url: str, *, body: bytes | None = None, headers: dict | None = None
) -> tuple[int, dict, bytes]:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=120) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()
    except OSError as error:
        return 0, {}, str(error).encode()


def timed(expect: tuple[int, ...], method: str, url: str, **kw: object):
    """A request, its time, and a failure text unless its status is one of ``expect``."""
    started = time.perf_counter()
    status, headers, body = request(method, url, **kw)
    elapsed = time.perf_counter() - started
    failure = None if status in expect else f"HTTP {status}: {body[:200]!r}"
    return status, headers, body, elapsed, failure


# ------------------------------------------------------------------------------------------------
# Reporters: what the browser does
# ------------------------------------------------------------------------------------------------


class ItemFactory:
    """Reported items as the browser's hashFile returns them, different on every request:
    seed_demo's hash generator (realistic PDQ qualities and pHash bit counts), mostly images,
    one report in ten with a short video."""

    def __init__(self, seed: int) -> None:
        from cases.management.commands.seed_demo import HashFactory

        self.hashes = HashFactory(np.random.default_rng(seed))
        self.rng = random.Random(seed)

    def items(self) -> list[dict]:
        n = self.rng.choice([1, 1, 1, 2, 2, 3, 5])
        md5s, pdqs, phashes = self.hashes.md5s(n + 1), self.hashes.pdqs(n), self.hashes.phashes(n)
        qualities = [max(50, q) for q in self.hashes.qualities(n)]
        items = [
            {"media_type": "image", "md5": m, "pdq": p, "pdq_quality": q, "phash": h}
            for m, p, q, h in zip(md5s, pdqs, qualities, phashes, strict=False)
        ]
        if self.rng.random() < 0.1:
            frames = self.rng.randint(10, 60)
            items.append(
                {
                    "media_type": "video",
                    "md5": md5s[-1],
                    "vpdq": [
                        {"t": float(t), "pdq": pdq, "q": 90}
                        for t, pdq in enumerate(self.hashes.pdqs(frames))
                    ],
                }
            )
        return items


CSRF_COOKIE = re.compile(r"csrftoken=([A-Za-z0-9]+)")


def reporter_run(base: str, recorder: Recorder, stop_at: float, seed: int, think: float) -> None:
    """One simulated reporter after another until ``stop_at``: open the report page (its CSRF
    cookie), submit a report, then look the case up with the receipt's number and PIN. ``think``
    is the mean pause between steps (seconds, exponentially distributed)."""
    factory = ItemFactory(seed)
    rng = random.Random(seed)

    def pause() -> None:
        if think:
            pause = min(rng.expovariate(1 / think), 5 * think)
            time.sleep(max(0.0, min(pause, stop_at - time.perf_counter())))

    while time.perf_counter() < stop_at:
        status, headers, _body, elapsed, failure = timed((200,), "GET", f"{base}/report/")
        match = CSRF_COOKIE.search(headers.get("Set-Cookie", ""))
        if failure is None and match is None:
            failure = "no csrftoken cookie"
        recorder.record("GET /report/", elapsed, failure)
        if failure:
            continue
        token = match.group(1)
        json_headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "X-CSRFToken": token,
            "Cookie": f"csrftoken={token}",
            "Origin": base,
            "Referer": f"{base}/report/",
        }
        pause()
        report = {
            "reporter": rng.choice(["self", "parent", "trusted_adult"]),
            "under_18_when_made": True,
            "items": factory.items(),
        }
        _s, _h, body, elapsed, failure = timed(
            (201,),
            "POST",
            f"{base}/api/public/reports",
            body=json.dumps(report).encode(),
            headers=json_headers,
        )
        recorder.record("POST reports", elapsed, failure)
        if failure:
            continue
        receipt = json.loads(body)
        pause()
        access = {"case_number": receipt["case_number"], "pin": receipt["pin"]}
        _s, _h, body, elapsed, failure = timed(
            (200,),
            "POST",
            f"{base}/api/public/cases/status",
            body=json.dumps(access).encode(),
            headers=json_headers,
        )
        if failure is None and json.loads(body)["case_number"] != receipt["case_number"]:
            failure = f"status of another case: {body[:100]!r}"
        recorder.record("POST cases/status", elapsed, failure)
        pause()


def run_threads(targets: list) -> None:
    threads = [threading.Thread(target=target, daemon=True) for target in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


# ------------------------------------------------------------------------------------------------
# Partners: feed readers, bulk match posts, lookups; and accepted cases moving the feed
# ------------------------------------------------------------------------------------------------


class CatchUp:
    """Whether every feed reader has reached the head once: the other partner clients label
    their requests with the phase, as the readers' catch-up from 0 takes most of the machine."""

    def __init__(self, readers: int) -> None:
        self.left = readers
        self.lock = threading.Lock()
        self.done = threading.Event()
        if readers == 0:
            self.done.set()

    def reached(self) -> None:
        with self.lock:
            self.left -= 1
            if self.left == 0:
                self.done.set()

    def label(self, kind: str) -> str:
        return f"{kind}, readers polling" if self.done.is_set() else f"{kind}, readers catching up"


FEED_TAIL = re.compile(rb'"next":\s*(\d+),\s*"has_more":\s*(true|false)')


def feed_reader(
    base: str,
    key: str,
    recorder: Recorder,
    stop_at: float,
    poll: float,
    heads: list[int],
    catch_up: CatchUp,
) -> None:
    """Follow the feed from 0 to the head in pages of 10,000 ("catch-up" pages), then poll
    every ``poll`` seconds.
    A page is checked without parsing it all (this client shares the server's 2 cores): its
    change count must equal next - after, as the feed's seq has no gaps."""
    after, caught_up = 0, False
    headers = {"Authorization": f"Bearer {key}", "Accept-Encoding": "gzip"}
    while time.perf_counter() < stop_at:
        url = f"{base}/api/v1/lists/take-it-down/changes?after={after}&limit=10000"
        status, response_headers, body, elapsed, failure = timed(
            (200,), "GET", url, headers=headers
        )
        changes, has_more = 0, False
        if failure is None:
            if response_headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            tail = FEED_TAIL.search(body[-200:])
            changes = body.count(b'"seq":')
            if tail is None:
                failure = f"no next/has_more at the end: {body[-200:]!r}"
            else:
                following, has_more = int(tail.group(1)), tail.group(2) == b"true"
                if following - after != changes:
                    failure = f"after={after}: {changes} changes but next={following}"
                after = following
        kind = "feed poll" if caught_up else "feed catch-up page"
        recorder.record(kind, elapsed, failure, items=changes)
        if failure is None and not has_more:
            heads.append(after)
            if not caught_up:
                catch_up.reached()
            caught_up = True
            time.sleep(poll)


class PartnerLoad:
    """Keys, lookup batches and the entries that match reports point at, made before the clock
    starts. Match batches are made as they are posted: each of 1,000 new reports on random
    active entries, as partner_api.py makes them."""

    def __init__(self, base: str) -> None:
        from datetime import timedelta

        from django.utils import timezone

        from hashlists.models import HashEntry

        self.base = base
        self.read_key = bench_key(["lists:read"])
        self.match_key = bench_key(["matches:write"])
        self.rng = random.Random(11)
        self.run = f"load-{time.time_ns():x}"
        self.entries = list(
            HashEntry.objects.filter(status="active", hash_type__in=["md5", "pdq", "phash"])
            .order_by("?")
            .values_list("public_id", "hash_type")[:20_000]
        )
        self.matched_at = (timezone.now() - timedelta(minutes=1)).isoformat()
        sample = list(
            HashEntry.objects.filter(hash_type="pdq", status="active")
            .order_by("?")
            .values_list("value", flat=True)[:20_000]
        )
        self.lookups = lookup_bodies(sample, 100, 50, self.rng)
        self.batches = 0
        self.lock = threading.Lock()

    def match_body(self) -> bytes:
        limits = {"md5": 0, "pdq": 31, "phash": 8}
        actions = ["removed", "pending_review", "restricted", "no_action", "not_relevant"]
        with self.lock:
            batch = self.batches
            self.batches += 1
            picks = [self.rng.choice(self.entries) for _ in range(1000)]
            chosen = self.rng.choices(actions, [55, 12, 13, 12, 8], k=1000)
            distances = [self.rng.randint(0, limits[hash_type]) for _id, hash_type in picks]
        items = [
            {
                "client_ref": f"{self.run}-{batch}-{n}",
                "entry_id": str(public_id),
                "distance": distance,
                "content_ref": f"content/{batch}/{n}",
                "matched_at": self.matched_at,
                "action": action,
            }
            for n, ((public_id, _type), distance, action) in enumerate(
                zip(picks, distances, chosen, strict=True)
            )
        ]
        return json.dumps({"matches": items}).encode()

    def warm(self) -> None:
        """Each gunicorn worker loads the list for lookup on its first one: not measured."""
        headers = {"Authorization": f"Bearer {self.read_key}", "Content-Type": "application/json"}
        for _ in range(8):
            request("POST", f"{self.base}/api/v1/lookup", body=self.lookups[0], headers=headers)

    def matcher(self, recorder: Recorder, stop_at: float, catch_up: CatchUp) -> None:
        headers = {"Authorization": f"Bearer {self.match_key}", "Content-Type": "application/json"}
        while time.perf_counter() < stop_at:
            body = self.match_body()
            _s, _h, _b, elapsed, failure = timed(
                (200, 201),
                "POST",
                f"{self.base}/api/v1/matches",
                body=body,
                headers=headers,
            )
            recorder.record(catch_up.label("POST matches (1,000)"), elapsed, failure, items=1000)

    def looker(self, recorder: Recorder, stop_at: float, seed: int, catch_up: CatchUp) -> None:
        headers = {"Authorization": f"Bearer {self.read_key}", "Content-Type": "application/json"}
        rng = random.Random(seed)
        while time.perf_counter() < stop_at:
            _s, _h, body, elapsed, failure = timed(
                (200,),
                "POST",
                f"{self.base}/api/v1/lookup",
                body=rng.choice(self.lookups),
                headers=headers,
            )
            recorder.record(catch_up.label("POST lookup (100 PDQ)"), elapsed, failure, items=100)


def case_adder(recorder: Recorder, stop_at: float, interval: float) -> None:
    """Accepted cases keep arriving (so the feed moves): a report made and accepted through the
    services every ``interval`` seconds, in this process; the Celery worker sequences them."""
    from django.contrib.auth import get_user_model
    from django.db import connection

    from cases.services import case_accept, case_create

    staff = get_user_model().objects.filter(username="bench-load").first()
    if staff is None:
        staff = get_user_model().objects.create_superuser("bench-load", password=None)
    factory = ItemFactory(99)
    try:
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            failure = None
            try:
                items = [i for i in factory.items() if i["media_type"] == "image"]
                case, _pin = case_create(
                    reporter="self", under_18_when_made=True, items=items or factory.items()
                )
                case_accept(case=case, staff=staff)
            except Exception as error:  # noqa: BLE001 - counted as an error and shown
                failure = repr(error)
            recorder.record("case accepted (in-process)", time.perf_counter() - started, failure)
            time.sleep(max(0.0, interval - (time.perf_counter() - started)))
    finally:
        connection.close()


def feed_head() -> int:
    from hashlists.models import ListChange

    return (
        ListChange.objects.filter(hash_list__slug="take-it-down", seq__isnull=False)
        .order_by("-seq")
        .values_list("seq", flat=True)
        .first()
        or 0
    )
