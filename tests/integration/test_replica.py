"""Partner reads from a real PostgreSQL streaming replica (tidportal/db_router.py).

A private primary (tests/pgserver.py), migrated with ``manage.py migrate``, and a streaming
replica made from it with pg_basebackup. Two gunicorn servers read through the pair, one
patient (a lag bound of an hour) and one strict (a second). Pausing replay on the replica
(``pg_wal_replay_pause()``) holds it at a known state, so every check is about content: what
the replica holds, what only the primary holds. The servers run the base settings (an
in-process cache, tasks in-process), so nothing is shared with other test runs.
"""

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import gunicorn_serving
from tests.integration.conftest import wait_for
from tests.pgserver import PrivatePostgres, migrated_postgres

ROOT = Path(__file__).resolve().parents[2]
LIST = "take-it-down"
METRICS_TOKEN = "replica-test-metrics"  # noqa: S105 - a test's own token


@dataclass
class Pair:
    primary: PrivatePostgres
    replica: PrivatePostgres
    env: dict[str, str]

    def run(self, code: str) -> str:
        """Run ``code`` in a Django process writing to the primary; its standard output."""
        result = subprocess.run(
            [sys.executable, "-c", f"import django; django.setup()\n{code}"],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    def add_change(self, n: int) -> int:
        """Add a PDQ entry (number ``n``) to the list on the primary; the seq of its change."""
        return int(
            self.run(
                "from django.db import transaction\n"
                "from hashlists.models import HashEntry, HashList\n"
                "from hashlists.services import list_change_record, list_changes_sequence\n"
                f"hash_list = HashList.objects.get(slug='{LIST}')\n"
                "with transaction.atomic():\n"
                "    entry = HashEntry.objects.create(hash_list=hash_list, hash_type='pdq',\n"
                f"        value='{pdq(n)}', media_type='image', quality=90)\n"
                "    change = list_change_record(entry=entry, op='add')\n"
                "list_changes_sequence()\n"
                "change.refresh_from_db()\n"
                "print(change.seq)"
            )
        )

    def position(self, server: PrivatePostgres, sql: str) -> int:
        with server.connect("tidportal") as conn:
            high, low = conn.execute(sql).fetchone()[0].split("/")
        return (int(high, 16) << 32) + int(low, 16)

    def wait_replayed(self) -> None:
        """Until the replica has replayed everything the primary has written so far."""
        target = self.position(self.primary, "SELECT pg_current_wal_lsn()::text")
        wait_for(
            lambda: self.position(self.replica, "SELECT pg_last_wal_replay_lsn()::text") >= target
        )

    @contextmanager
    def replay_paused(self) -> Iterator[None]:
        with self.replica.connect("tidportal") as conn:
            conn.execute("SELECT pg_wal_replay_pause()")
            wait_for(
                lambda: (
                    conn.execute("SELECT pg_get_wal_replay_pause_state()").fetchone()[0] == "paused"
                )
            )
            try:
                yield
            finally:
                conn.execute("SELECT pg_wal_replay_resume()")


def pdq(n: int) -> str:
    return f"{n:04x}" + "5a" * 30


@pytest.fixture(scope="module")
def pair() -> Iterator[Pair]:
    with migrated_postgres() as (primary, url):
        replica = primary.standby(primary.folder.parent / "standby")
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tidportal.settings.base",
            "DATABASE_URL": url,
            "DATABASE_REPLICA_URL": replica.url("tidportal"),
            "DJANGO_LOG_LEVEL": "WARNING",
            "TID_METRICS_TOKEN": METRICS_TOKEN,
        }
        for name in ("REDIS_URL", "TID_REPLICA_MAX_LAG_SECONDS"):
            env.pop(name, None)
        try:
            yield Pair(primary, replica, env)
        finally:
            replica.stop("immediate")


@pytest.fixture(scope="module")
def keys(pair: Pair) -> dict[str, str]:
    """Two keys of one partner that reads the list: one to keep, one to revoke."""
    printed = pair.run(
        "from hashlists.models import HashList\n"
        "from partners.services import api_key_create, partner_create\n"
        f"partner = partner_create(name='Replica reader',\n"
        f"    readable_lists=[HashList.objects.get(slug='{LIST}')])\n"
        "for name in ('kept', 'revoked'):\n"
        "    key, raw = api_key_create(partner=partner, name=name,\n"
        "        scopes=['lists:read', 'matches:write'])\n"
        "    print(name, raw)"
    )
    return dict(line.split() for line in printed.splitlines())


def _server(pair: Pair, max_lag: float) -> Iterator[str]:
    yield from gunicorn_serving({**pair.env, "TID_REPLICA_MAX_LAG_SECONDS": str(max_lag)})


@pytest.fixture(scope="module")
def patient(pair: Pair) -> Iterator[str]:
    """A server that reads the replica however far behind it is (an hour)."""
    yield from _server(pair, max_lag=3600)


@pytest.fixture(scope="module")
def strict(pair: Pair) -> Iterator[str]:
    """A server that reads the replica only while it is at most a second behind."""
    yield from _server(pair, max_lag=1)


def call(url: str, key: str, body: dict | None = None, **headers: str) -> tuple[int, dict]:
    request = urllib.request.Request(  # noqa: S310 - loopback
        url,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **headers},
    )
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def feed(base: str, key: str, after: int) -> list[int]:
    status, page = call(f"{base}/api/v1/lists/{LIST}/changes?after={after}", key)
    assert status == 200, page
    return [change["seq"] for change in page["changes"]]


def metrics(base: str) -> dict[str, float]:
    request = urllib.request.Request(  # noqa: S310 - loopback
        base + "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
        lines = response.read().decode().splitlines()
    return {
        name: float(value)
        for name, _space, value in (line.partition(" ") for line in lines)
        if name.startswith("tidportal_replica_")
    }


def held_by_replica(pair: Pair, base: str, key: str, n: int) -> int:
    """Add change ``n``, let the replica replay it, and have ``base`` note that (its lag is 0):
    its seq."""
    seq = pair.add_change(n)
    feed(base, key, after=0)  # the key's "last used" write happens now, before the wait
    pair.wait_replayed()
    wait_for(lambda: metrics(base).get("tidportal_replica_lag_seconds") == 0)
    return seq


def test_a_paused_replica_serves_the_feed_lists_and_fetchhashes_without_its_newest_change(
    pair, patient, keys
):
    key = keys["kept"]
    first = held_by_replica(pair, patient, key, 1)
    with pair.replay_paused():
        second = pair.add_change(2)  # on the primary only

        # An hour's bound: the replica answers, holding the first change and not the second.
        assert feed(patient, key, after=first - 1) == [first]
        status, lists = call(f"{patient}/api/v1/lists/", key)
        assert status == 200 and lists[0]["last_seq"] == first
        status, page = call(
            f"{patient}/api/compat/stopncii/v1/FetchHashes?startTimestamp=0",
            "",
            **{"Ocp-Apim-Subscription-Key": key, "x-functions-key": key},
        )
        assert status == 200, page
        fetched = {record["hashValue"] for record in page["hashRecords"]}
        assert pdq(1) in fetched and pdq(2) not in fetched
        # The next page after the replica's head is empty, not a skip past the second change.
        assert feed(patient, key, after=first) == []

    # Replay resumed: the replica catches up and the feed goes on from where it was.
    wait_for(lambda: feed(patient, key, after=first) == [second])


def test_past_the_lag_bound_the_primary_answers(pair, patient, strict, keys):
    key = keys["kept"]
    first = held_by_replica(pair, strict, key, 3)
    with pair.replay_paused():
        second = pair.add_change(4)
        assert feed(patient, key, after=first - 1) == [first]  # the replica, an hour's bound
        # The strict server's bound is a second: once the replica is that far behind, it reads
        # the primary, which has the second change.
        wait_for(lambda: feed(strict, key, after=first - 1) == [first, second])
        assert metrics(strict)["tidportal_replica_lag_seconds"] > 1


def test_writes_key_checks_and_lookups_are_never_stale_because_of_the_replica(pair, patient, keys):
    key = keys["kept"]
    first = held_by_replica(pair, patient, key, 5)
    with pair.replay_paused():
        pair.add_change(6)
        assert feed(patient, key, after=first - 1) == [first]  # reading the paused replica

        # A match report is written (to the primary: the replica refuses writes), and the
        # partner reads it back at once.
        status, body = call(
            f"{patient}/api/v1/matches",
            key,
            {
                "matches": [
                    {
                        "client_ref": "replica-1",
                        "hash_type": "pdq",
                        "value": pdq(6),
                        "distance": 0,
                        "content_ref": "post-1",
                        "matched_at": "2026-01-01T00:00:00Z",
                        "action": "removed",
                    }
                ]
            },
        )
        assert status in (200, 201), body
        status, mine = call(f"{patient}/api/v1/matches", key)
        assert status == 200 and [m["client_ref"] for m in mine["results"]] == ["replica-1"]

        # The hosted lookup loads its index (from the replica, without the newest entry), then
        # catches up from the primary before it answers.
        status, answer = call(
            f"{patient}/api/v1/lookup", key, {"hashes": [{"hash_type": "pdq", "value": pdq(6)}]}
        )
        assert status == 200, answer
        assert answer["results"][0]["matches"][0]["distance"] == 0  # the newest entry itself

        # A revoked key fails on the next request, however far behind the replica is.
        revoked = keys["revoked"]
        assert feed(patient, revoked, after=0)
        pair.run(
            "from partners.models import ApiKey\n"
            "from partners.services import api_key_revoke\n"
            "api_key_revoke(key=ApiKey.objects.get(name='revoked'))"
        )
        assert call(f"{patient}/api/v1/lists/{LIST}/changes", revoked)[0] == 401


def test_a_stopped_replica_costs_partners_nothing(pair, patient, keys):
    key = keys["kept"]
    first = held_by_replica(pair, patient, key, 7)
    with pair.replay_paused():
        second = pair.add_change(8)
        assert feed(patient, key, after=first - 1) == [first]
    pair.replica.stop("immediate")
    try:
        # The very next request: the replica's connection fails, the primary answers.
        started = time.monotonic()
        assert feed(patient, key, after=first - 1) == [first, second]
        assert time.monotonic() - started < 30  # answered, not hung
        assert metrics(patient)["tidportal_replica_up"] == 0
        assert "tidportal_replica_lag_seconds" not in metrics(patient)
    finally:
        pair.replica.start()


@pytest.mark.parametrize(
    ("database_url", "answer"),
    [
        ("postgres://postgres@127.0.0.1:5432/tidportal", "[] ['default']"),
        ("sqlite:///:memory:", "[] ['default']"),
    ],
)
def test_without_a_replica_url_there_is_one_database_and_no_router(database_url, answer):
    assert settings_of(DATABASE_URL=database_url).stdout.strip() == answer


def test_a_replica_needs_a_postgresql_primary():
    printed = settings_of(DATABASE_URL="sqlite:///:memory:", DATABASE_REPLICA_URL="postgres://r/db")
    assert printed.returncode != 0
    assert "DATABASE_REPLICA_URL needs a PostgreSQL DATABASE_URL" in printed.stderr


def settings_of(**env: str) -> subprocess.CompletedProcess:
    """The base settings' routers and database aliases in a process with ``env``."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("DATABASE_")}
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "from django.conf import settings; "
            "print(settings.DATABASE_ROUTERS, list(settings.DATABASES))",
        ],
        cwd=ROOT,
        env={**environment, "DJANGO_SETTINGS_MODULE": "tidportal.settings.base", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
