"""The running service for fault tests: its processes, and clients that keep it busy.

``Stack`` starts real processes against one database and a private Redis: redis-server on a
port of its own (so a test may stop it), `celery worker`, `celery beat`, gunicorn and small
Python programs. ``Traffic`` is what users do meanwhile, from threads of the test: reporters
submit reports, partners follow the feed, a monitor polls /healthz; ``staff_accept_loop`` runs
in a process of the stack and accepts cases so the feed grows. Every answer is recorded, so a
test can check afterwards how the service answered while a dependency was down.
"""

import itertools
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path

import psycopg

from tests.helpers import free_port
from tests.integration.conftest import wait_for
from tests.partners.webhook_receiver import Receiver, running_receiver, verify_signature
from tests.pgserver import PrivatePostgres, migrated_postgres

ROOT = Path(__file__).resolve().parents[2]
LIST = "take-it-down"
# Every client of a fault test comes from 127.0.0.1: the per-client throttles are lifted.
UNTHROTTLED = {
    "TID_THROTTLE_PUBLIC_REPORT": "1000000/hour",
    "TID_THROTTLE_PUBLIC_CASE": "1000000/hour",
    "TID_THROTTLE_PARTNER": "1000000/minute",
}


class Stack:
    """Processes sharing one database (the test database unless ``database_url`` is given) and
    a private Redis, which is the broker (DB 0) and the cache (DB 1)."""

    def __init__(self, tmp_path: Path, *, database_url: str | None = None, **env: str) -> None:
        self.port = free_port()
        self.tmp = tmp_path
        self.redis: subprocess.Popen | None = None
        self.procs: list[subprocess.Popen] = []
        self.base = ""
        if database_url is None:
            from django.db import connection

            db = connection.settings_dict
            database_url = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tidportal.settings.test",
            "DATABASE_URL": database_url,
            "REDIS_URL": f"redis://127.0.0.1:{self.port}/0",
            "REDIS_CACHE_URL": f"redis://127.0.0.1:{self.port}/1",
            "CELERY_TASK_ALWAYS_EAGER": "false",
            "TID_SEQUENCER_INTERVAL": "1",
            "TID_SNAPSHOT_CHECK_INTERVAL": "1",
            "TID_WEBHOOK_DUE_INTERVAL": "1",
            **UNTHROTTLED,
            **env,
        }

    # Redis --------------------------------------------------------------------------------------

    def start_redis(self) -> None:
        """redis-server on the stack's port (again, after stop_redis: clients reconnect to it),
        without persistence: what was queued while it ran is gone once it stops."""
        self.redis = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(lambda: _answers(self.port), timeout=10)

    def stop_redis(self) -> None:
        if self.redis:
            self.redis.kill()
            self.redis.wait()
            self.redis = None

    # Processes ----------------------------------------------------------------------------------

    def spawn(self, name: str, command: list[str]) -> subprocess.Popen:
        """``command`` in the project folder with the stack's environment, its output in a log
        file named after ``name`` (see ``log``)."""
        log = open(self.tmp / f"{name}-{len(self.procs)}.log", "w")  # noqa: SIM115
        proc = subprocess.Popen(
            command, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, text=True
        )
        proc.log_path = Path(log.name)  # type: ignore[attr-defined]
        self.procs.append(proc)
        return proc

    def start(self, *args: str) -> subprocess.Popen:
        return self.spawn(
            args[0], [sys.executable, "-m", "celery", "-A", "tidportal", *args, "--loglevel=INFO"]
        )

    def worker(self) -> subprocess.Popen:
        name = f"fault-{uuid.uuid4().hex[:6]}@localhost"
        return self.start(
            "worker", "--pool=solo", f"--hostname={name}", "--without-gossip", "--without-mingle"
        )

    def beat(self) -> subprocess.Popen:
        return self.start("beat", f"--schedule={self.tmp / 'beat-schedule'}")

    def gunicorn(self, *, workers: int = 2, threads: int = 4) -> subprocess.Popen:
        """The WSGI app as production serves it; returns once it answers /healthz (whatever
        the answer). Sets ``base``, its URL."""
        port = free_port()
        proc = self.spawn(
            "gunicorn",
            [
                sys.executable,
                "-m",
                "gunicorn",
                "tidportal.wsgi",
                f"--bind=127.0.0.1:{port}",
                f"--workers={workers}",
                f"--threads={threads}",
                "--timeout=60",
            ],
        )
        self.base = f"http://127.0.0.1:{port}"

        def answers() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"gunicorn exited:\n{log(proc)}")
            return http("GET", self.base + "/healthz").status != 0

        wait_for(answers, timeout=60, interval=0.2)
        return proc

    def python(self, name: str, code: str) -> subprocess.Popen:
        """A Python program in the background, Django set up with the stack's settings."""
        return self.spawn(name, [sys.executable, "-c", f"import django; django.setup(); {code}"])

    def run_python(self, code: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-c", f"import django; django.setup(); {code}"],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.stop_redis()


def log(proc: subprocess.Popen) -> str:
    """What a process of the stack has written so far."""
    return proc.log_path.read_text(errors="replace")  # type: ignore[attr-defined]


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


# ------------------------------------------------------------------------------------------------
# HTTP, as a client sees it
# ------------------------------------------------------------------------------------------------

# A request that has no answer after this long has hung: the service must answer sooner, if
# only with a 503.
ANSWER_DEADLINE_SECONDS = 30.0


@dataclass(frozen=True)
class Answer:
    kind: str  # what was asked, e.g. "POST report"
    status: int  # 0: no complete answer (refused, reset, timed out or cut short)
    retry_after: str | None
    body: bytes
    at: float  # time.monotonic() when the answer ended

    @property
    def clear(self) -> bool:
        """A success, or "unavailable, try again later": what a client can act on."""
        return 200 <= self.status < 300 or (self.status == 503 and bool(self.retry_after))


def http(
    method: str, url: str, *, body: dict | None = None, headers: dict | None = None, kind: str = ""
) -> Answer:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=ANSWER_DEADLINE_SECONDS) as response:  # noqa: S310
            status, got, content = response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        status, got, content = error.code, error.headers, error.read()
    except (OSError, HTTPException) as error:  # includes a body cut short (IncompleteRead)
        return Answer(kind, 0, None, repr(error).encode(), time.monotonic())
    return Answer(kind, status, got.get("Retry-After"), content, time.monotonic())


def random_image(rng: random.Random) -> dict:
    """A publishable image item with random hashes: far from every other (no near-duplicates
    between cases), a pHash with enough bits set, good PDQ quality."""
    while True:
        phash = rng.getrandbits(64)
        if phash.bit_count() >= 25:
            break
    return {
        "media_type": "image",
        "md5": f"{rng.getrandbits(128):032x}",
        "pdq": f"{rng.getrandbits(256):064x}",
        "pdq_quality": 90,
        "phash": f"{phash:016x}",
    }


# ------------------------------------------------------------------------------------------------
# Users
# ------------------------------------------------------------------------------------------------


class Traffic:
    """Reporters, feed readers and a health monitor, each in a thread, until ``stop()``.

    - A reporter opens the report page once (its CSRF cookie), then submits one report after
      another, each with a new image; a 201's case number is *acknowledged*. After anything
      else it simply goes on with the next report, as a person would try again.
    - A feed reader follows the list's feed from 0 with its checkpoint (``after``), as tidkit
      does, and notes any change that does not follow its checkpoint (``gaps``).
    - The monitor polls /healthz.
    """

    def __init__(
        self, base: str, *, api_key: str, reporters: int = 2, readers: int = 1, pause: float = 0.2
    ) -> None:
        self.base, self.api_key, self.pause = base, api_key, pause
        self.answers: list[Answer] = []
        self.acknowledged: list[str] = []
        self.heads = [0] * readers
        self.gaps: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._numbers = itertools.count()
        self.crashes: list[str] = []  # a client thread that stopped on an exception
        self._threads = [
            *(self._thread(self._reporter, n) for n in range(reporters)),
            *(self._thread(self._reader, n) for n in range(readers)),
            self._thread(self._monitor),
        ]

    def _thread(self, target: Callable[..., None], *args: object) -> threading.Thread:
        def run() -> None:
            try:
                target(*args)
            except Exception:  # noqa: BLE001 - reported by wait_for_progress and the test
                self.crashes.append(traceback.format_exc())

        return threading.Thread(target=run, daemon=True)

    def __enter__(self) -> "Traffic":
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=2 * ANSWER_DEADLINE_SECONDS)

    def _record(self, answer: Answer) -> Answer:
        with self._lock:
            self.answers.append(answer)
        return answer

    def count(self, kind: str, status: int, *, since: float = 0.0) -> int:
        with self._lock:
            return sum(
                1 for a in self.answers if a.kind == kind and a.status == status and a.at >= since
            )

    def summary(self) -> dict[str, int]:
        """How many answers of each kind and status, e.g. ``{"POST report 503": 4}``."""
        with self._lock:
            counts = Counter(f"{a.kind} {a.status}" for a in self.answers)
        return dict(sorted(counts.items()))

    def unclear(self) -> list[Answer]:
        """Every answer that was neither a success nor a 503 with Retry-After."""
        with self._lock:
            return [a for a in self.answers if not a.clear]

    def _reporter(self, number: int) -> None:
        rng = random.Random(number)
        token = _csrf_token(self.base)
        headers = {
            "Content-Type": "application/json",
            "X-CSRFToken": token,
            "Cookie": f"csrftoken={token}",
            "Origin": self.base,
            "Referer": f"{self.base}/report/",
        }
        while not self._stop.is_set():
            report = {"reporter": "self", "under_18_when_made": True, "items": [random_image(rng)]}
            answer = self._record(
                http(
                    "POST",
                    f"{self.base}/api/public/reports",
                    body=report,
                    headers=headers,
                    kind="POST report",
                )
            )
            if answer.status == 201:
                with self._lock:
                    self.acknowledged.append(json.loads(answer.body)["case_number"])
            self._stop.wait(self.pause)

    def _reader(self, number: int) -> None:
        while not self._stop.is_set():
            has_more = self.read_feed_page(number)
            if not has_more:
                self._stop.wait(self.pause)

    def read_feed_page(self, reader: int) -> bool:
        """One page of the feed after reader ``reader``'s checkpoint; whether there is more."""
        after = self.heads[reader]
        answer = self._record(
            http(
                "GET",
                f"{self.base}/api/v1/lists/{LIST}/changes?after={after}&limit=1000",
                headers={"Authorization": f"Bearer {self.api_key}"},
                kind="GET feed",
            )
        )
        if answer.status != 200:
            return False
        page = json.loads(answer.body)
        for change in page["changes"]:
            if change["seq"] != after + 1:
                self.gaps.append(f"reader {reader}: seq {change['seq']} after {after}")
            after = change["seq"]
        self.heads[reader] = after
        return page["has_more"]

    def _monitor(self) -> None:
        while not self._stop.is_set():
            self._record(http("GET", f"{self.base}/healthz", kind="GET healthz"))
            self._stop.wait(0.5)


def _csrf_token(base: str) -> str:
    """The CSRF token the report page sets, as the page's script reads it from its cookie."""
    request = urllib.request.Request(f"{base}/report/")
    with urllib.request.urlopen(request, timeout=ANSWER_DEADLINE_SECONDS) as response:  # noqa: S310
        cookies = response.headers.get_all("Set-Cookie") or []
    for cookie in cookies:
        if match := re.match(r"csrftoken=(\w+)", cookie):
            return match.group(1)
    raise AssertionError(f"no CSRF cookie from /report/: {cookies}")


def feed_read_all(base: str, api_key: str) -> list[dict]:
    """The whole feed of the list, page by page (the service must be up)."""
    changes: list[dict] = []
    after = 0
    while True:
        answer = http(
            "GET",
            f"{base}/api/v1/lists/{LIST}/changes?after={after}&limit=10000",
            headers={"Authorization": f"Bearer {api_key}"},
        )
        assert answer.status == 200, answer
        page = json.loads(answer.body)
        changes += page["changes"]
        after = page["next"]
        if not page["has_more"]:
            return changes


# ------------------------------------------------------------------------------------------------
# Run in processes of the stack (Django set up with the stack's settings)
# ------------------------------------------------------------------------------------------------


def partner_with_webhook(webhook_url: str) -> None:
    """Make a partner that reads the list, with a webhook to ``webhook_url``; print its key."""
    from hashlists.models import HashList
    from partners.models import Partner
    from partners.services import api_key_create, partner_create

    partner = partner_create(name="Faulty Net", readable_lists=[HashList.objects.get(slug=LIST)])
    Partner.objects.filter(pk=partner.pk).update(
        webhook_url=webhook_url, webhook_secret=WEBHOOK_SECRET
    )
    print(api_key_create(partner=partner, name="sync", scopes=["lists:read"])[1])


WEBHOOK_SECRET = "s3cret-for-fault-tests"  # noqa: S105 - a test's


def staff_accept_loop(stop_file: str, interval: float = 0.2) -> None:
    """A supervisor at work until ``stop_file`` exists: every ``interval`` seconds, accept the
    oldest received case, or when none waits, record one (as staff do for a report made by
    phone) and accept it, so the feed grows even while reporters are turned away. Prints each
    accepted case number once its acceptance committed. While the database is unreachable it
    tries again, as a person would, on a fresh connection."""
    from django.contrib.auth import get_user_model
    from django.db import InterfaceError, OperationalError, connection

    from cases.models import Case
    from cases.services import case_accept, case_create

    rng = random.Random(os.getpid())
    staff = None
    while not Path(stop_file).exists():
        time.sleep(interval)
        try:
            if staff is None:
                staff, _ = get_user_model().objects.get_or_create(
                    username="fault-staff", defaults={"is_staff": True, "is_superuser": True}
                )
            case = Case.objects.filter(status="received").order_by("created_at").first()
            if case is None:
                case, _pin = case_create(
                    reporter="trusted_adult", under_18_when_made=True, items=[random_image(rng)]
                )
            case_accept(case=case, staff=staff)
            print(case.case_number, flush=True)
        except (OperationalError, InterfaceError) as error:
            print(f"# database unavailable: {error!r}".replace("\n", " "), flush=True)
            connection.close()


# ------------------------------------------------------------------------------------------------
# A database of the test's own, and what must hold in it after a fault
# ------------------------------------------------------------------------------------------------


@dataclass
class BusyService:
    """The whole service on a private PostgreSQL and Redis, with a partner that has a webhook
    and a supervisor accepting cases (``busy_service``)."""

    server: PrivatePostgres
    stack: "Stack"
    receiver: Receiver
    api_key: str
    services: list[subprocess.Popen]
    staff: subprocess.Popen
    stop_staff: Path

    def traffic(self) -> "Traffic":
        return Traffic(self.stack.base, api_key=self.api_key)

    def assert_nothing_lost(self, traffic: "Traffic") -> None:
        """Once the traffic stopped: the supervisor stops too, every answer was clear, and,
        when the feed has settled, nothing acknowledged is lost (``assert_nothing_lost``);
        gunicorn, the worker and beat never needed restarting."""
        self.stop_staff.touch()
        self.staff.wait(timeout=60)
        assert traffic.unclear() == [], traffic.summary()
        accepted = [n for n in log(self.staff).splitlines() if n.startswith("TID-")]
        with self.server.connect("tidportal") as db:
            wait_for(lambda: feed_settled(db, self.receiver), timeout=120, interval=0.5)
            assert_nothing_lost(
                db, traffic, self.receiver, staff_accepted=accepted, api_key=self.api_key
            )
        assert all(process.poll() is None for process in self.services)


@contextmanager
def busy_service(tmp_path: Path) -> Iterator[BusyService]:
    """gunicorn, a Celery worker and beat on a private PostgreSQL and Redis (both of which the
    test may stop), a partner with a webhook to a receiver, and a supervisor accepting cases."""
    with migrated_postgres() as (server, url), running_receiver() as receiver:
        stack = Stack(tmp_path, database_url=url)
        try:
            stack.start_redis()
            made = stack.run_python(
                "from tests.integration.stack import partner_with_webhook; "
                f"partner_with_webhook({receiver.url!r})"
            )
            assert made.returncode == 0, made.stderr
            services = [stack.gunicorn(), stack.worker(), stack.beat()]
            stop_staff = tmp_path / "stop-staff"
            staff = stack.python(
                "staff",
                "from tests.integration.stack import staff_accept_loop; "
                f"staff_accept_loop({str(stop_staff)!r})",
            )
            api_key = made.stdout.split()[-1]
            yield BusyService(server, stack, receiver, api_key, services, staff, stop_staff)
        finally:
            stack.stop_all()


def wait_for_progress(traffic: Traffic, receiver: Receiver, *, timeout: float = 90) -> None:
    """Wait until the whole service works again: reporters' reports are acknowledged, the feed
    grows past where its readers were, and the partner is notified of the new changes."""
    acknowledged, head = len(traffic.acknowledged), max(traffic.heads)

    def notified_after(seq: int) -> bool:
        return any(json.loads(r.body)["seq"] > seq for r in list(receiver.requests))

    def progressed() -> bool:
        assert traffic.crashes == []
        return (
            len(traffic.acknowledged) >= acknowledged + 3
            and min(traffic.heads) > head
            and notified_after(head)
        )

    try:
        wait_for(progressed, timeout=timeout, interval=0.2)
    except AssertionError as error:
        raise AssertionError(
            f"{error}: acknowledged {acknowledged} -> {len(traffic.acknowledged)}, feed read to "
            f"{head} -> {traffic.heads}, {len(receiver.requests)} webhooks, answers "
            f"{traffic.summary()}"
        ) from None


def feed_settled(db: psycopg.Connection, receiver: Receiver) -> int | None:
    """The feed's head once every change is sequenced and every webhook delivery is done (the
    partner told of the head); None before."""
    unsequenced, head = db.execute(
        "SELECT count(*) FILTER (WHERE seq IS NULL), coalesce(max(seq), 0) "
        "FROM hashlists_listchange"
    ).fetchone()
    undone = db.execute(
        "SELECT count(*) FROM partners_webhookdelivery WHERE status NOT IN (%s, %s)",
        ["delivered", "superseded"],
    ).fetchone()[0]
    told = {json.loads(r.body)["seq"] for r in list(receiver.requests)}
    return head if unsequenced == 0 and undone == 0 and head in told else None


def assert_nothing_lost(
    db: psycopg.Connection,
    traffic: Traffic,
    receiver: Receiver,
    *,
    staff_accepted: list[str],
    api_key: str,
) -> None:
    """After a fault: every acknowledged report is stored; every case staff accepted is
    accepted and all its hashes are on the feed; the feed is 1..N without a gap, its readers
    missed nothing, and it ends in exactly the list's active entries; every webhook delivery
    was delivered (or superseded by a newer one) and the partner was told of N, signed."""
    stored = {
        number
        for (number,) in db.execute(
            "SELECT case_number FROM cases_case WHERE case_number = ANY(%s)",
            [traffic.acknowledged],
        )
    }
    assert set(traffic.acknowledged) - stored == set()
    accepted = {
        n for (n,) in db.execute("SELECT case_number FROM cases_case WHERE status = 'accepted'")
    }
    assert set(staff_accepted) - accepted == set()

    feed = feed_read_all(traffic.base, api_key)
    assert [c["seq"] for c in feed] == list(range(1, len(feed) + 1))
    assert traffic.gaps == []
    last_op = {(c["hash_type"], c["value"]): c["op"] for c in feed}
    on_feed = {key for key, op in last_op.items() if op == "add"}
    active = set(
        db.execute("SELECT hash_type, value FROM hashlists_hashentry WHERE status = 'active'")
    )
    assert on_feed == active
    published = set()
    for md5, pdq, phash in db.execute(
        "SELECT m.md5, m.pdq, m.phash FROM cases_mediaitem m "
        "JOIN cases_case c ON c.id = m.case_id WHERE c.status = 'accepted'"
    ):
        published |= {("md5", md5), ("pdq", pdq), ("phash", phash)}
    assert len(published) == 3 * len(accepted)
    assert published - on_feed == set()

    deliveries = dict(
        db.execute("SELECT status, count(*) FROM partners_webhookdelivery GROUP BY status")
    )
    assert set(deliveries) <= {"delivered", "superseded"}, deliveries
    told = [r for r in list(receiver.requests) if json.loads(r.body)["seq"] == len(feed)]
    assert told
    assert all(
        verify_signature(secret=WEBHOOK_SECRET, headers=r.headers, body=r.body) for r in told
    )
