"""The partner API at volume, over HTTP: bulk match ingestion and hosted lookup.

    .venv/bin/python bench/partner_api.py [--entries 300000] [--pdq 1000000] [--reuse]

Uses its own PostgreSQL database (`tidportal_bench_partner`; made, migrated and seeded here,
local trust auth as on the development machines) and the local Redis (databases 3 and 4). The
list is seeded with `manage.py seed_demo --entries` (list volume of every type, written with
COPY), then topped up with PDQ entries from seed_demo's own generator and writer until it holds
--pdq of them (about 5 minutes on the 2-core development machine; --reuse skips it). A gunicorn
server on a free loopback port, with 2 workers (this machine has 2 cores), answers concurrent
client threads; its log is in /tmp/tidportal-bench-partner/gunicorn.log. Printed:

- match ingestion: POST /api/v1/matches, batches of 1,000 new reports (goal: at least 5,000
  matches per second), and the same batches replayed (idempotent: nothing new stored);
- hosted lookup: POST /api/v1/lookup of PDQ hashes, half near-copies of listed ones (0-20 bits
  off) and half unrelated, in batches of 100 and of 1,000 (goal: at least 2,000 hashes per
  second; Hasher-Matcher-Actioner's users report 450-500 requests per second on 10 pods):
  hashes per second, p50 and p95 latency per request, and each worker's memory (RSS);
- md5 lookups of a batch of 1,000 in the database's unique index, as hashlists.lookup does, and
  through an in-process dict of the list's md5s instead (time and the dict's memory).
"""

import argparse
import json
import os
import random
import socket
import subprocess
import sys
import threading
import time
import tracemalloc
import urllib.error
import urllib.request
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DB = "tidportal_bench_partner"
SCRATCH = Path("/tmp/tidportal-bench-partner")
ENV = {
    "DJANGO_SETTINGS_MODULE": "tidportal.settings.test",
    "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{DB}",
    "REDIS_URL": "redis://127.0.0.1:6379/3",
    "REDIS_CACHE_URL": "redis://127.0.0.1:6379/4",
    "TID_THROTTLE_PARTNER": "100000000/minute",
    "DJANGO_MEDIA_ROOT": str(SCRATCH / "storage"),
    "TID_SIGNING_KEY_FILE": str(SCRATCH / "signing.pem"),
    "CELERY_TASK_ALWAYS_EAGER": "true",
    "DJANGO_LOG_LEVEL": "WARNING",
}
PYTHON = sys.executable
BENCH_PARTNER = "Bench platform"


def manage(*args: str) -> None:
    subprocess.run([PYTHON, "manage.py", *args], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ------------------------------------------------------------------------------------------------
# The database
# ------------------------------------------------------------------------------------------------


def seed(entries: int, pdq: int) -> None:
    started = time.perf_counter()
    manage("seed_demo", "--cases", "0", "--entries", str(entries), "--partners", "1")
    print(f"seed_demo --entries {entries:,}: {time.perf_counter() - started:.0f} s")
    started = time.perf_counter()
    added = pdq_top_up(pdq)
    print(f"topped up with {added:,} PDQ entries: {time.perf_counter() - started:.0f} s")


def pdq_top_up(target: int) -> int:
    """Add active PDQ entries, each with its sequenced ``add`` change, until the default list
    holds ``target`` PDQ entries: seed_demo's hash generator and COPY writer, under the
    sequencer's lock as seed_demo writes its list volume."""
    import numpy as np
    from django.db import connection, transaction
    from django.utils import timezone

    from cases.management.commands.seed_demo import HashFactory, bulk_insert
    from hashlists.models import HashEntry, HashList, ListChange
    from hashlists.services import SEQUENCER_LOCK_ID

    hash_list = HashList.objects.get(slug="take-it-down")
    rng = np.random.default_rng(7)
    factory = HashFactory(rng)
    added = 0
    while (have := HashEntry.objects.filter(hash_list=hash_list, hash_type="pdq").count()) < target:
        n = min(50_000, target - have)
        values = sorted(set(factory.pdqs(n)))
        qualities = rng.integers(50, 101, len(values)).tolist()
        now = timezone.now()
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [SEQUENCER_LOCK_ID])
            taken = set(
                HashEntry.objects.filter(
                    hash_list=hash_list, hash_type="pdq", value__in=values
                ).values_list("value", flat=True)
            )
            fresh = [
                HashEntry(
                    hash_list=hash_list,
                    hash_type="pdq",
                    value=value,
                    media_type="image",
                    quality=quality,
                    backing_case_count=1,  # an older case, as seed_demo's list volume
                    created_at=now,
                    updated_at=now,
                )
                for value, quality in zip(values, qualities, strict=True)
                if value not in taken
            ]
            bulk_insert(fresh, batch_size=10_000)
            head = (
                ListChange.objects.filter(hash_list=hash_list, seq__isnull=False)
                .order_by("-seq")
                .values_list("seq", "sequenced_at")
                .first()
            ) or (0, now)
            at = max(now, head[1])
            bulk_insert(
                [
                    ListChange(
                        hash_list=hash_list,
                        entry=entry,
                        op="add",
                        seq=head[0] + number,
                        sequenced_at=at,
                        created_at=at,
                    )
                    for number, entry in enumerate(fresh, start=1)
                ],
                batch_size=10_000,
            )
        added += len(fresh)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE hashlists_hashentry")
        cursor.execute("ANALYZE hashlists_listchange")
    return added


def bench_key(scopes: list[str]) -> str:
    from hashlists.models import HashList
    from partners.models import Partner
    from partners.services import api_key_create, partner_create

    partner = Partner.objects.filter(name=BENCH_PARTNER).first() or partner_create(
        name=BENCH_PARTNER, readable_lists=[HashList.objects.get(slug="take-it-down")]
    )
    return api_key_create(partner=partner, name="bench", scopes=scopes)[1]


def md5_lookups() -> None:
    """The database's unique index against an in-process dict, for a batch of 1,000 md5s half
    of which are listed: hashlists.lookup's query, and a dict plus the query that then reads
    the hits' details by primary key (their public ids are needed either way)."""
    from hashlists.models import HashEntry, HashList

    hash_list = HashList.objects.get(slug="take-it-down")
    entries = HashEntry.objects.filter(hash_list=hash_list, status="active")
    fields = ("pk", "public_id", "hash_list_id", "hash_type", "media_type", "quality")
    listed = list(entries.filter(hash_type="md5").values_list("value", flat=True)[:100_000])
    rng = random.Random(3)
    batches = [
        rng.sample(listed, 500) + [f"{rng.getrandbits(128):032x}" for _ in range(500)]
        for _ in range(20)
    ]

    def timed(fn) -> float:
        fn(batches[0])
        started = time.perf_counter()
        for batch in batches:
            fn(batch)
        return (time.perf_counter() - started) / len(batches) * 1000

    def by_database(batch: list[str]) -> int:
        rows = entries.filter(hash_type="md5", value__in=batch).values_list(*fields, "value")
        return len(list(rows))

    tracemalloc.start()
    index = dict(entries.filter(hash_type="md5").values_list("value", "pk").iterator(50_000))
    dict_mb = tracemalloc.get_traced_memory()[0] / 1e6
    tracemalloc.stop()

    def by_dict(batch: list[str]) -> int:
        ids = [index[value] for value in batch if value in index]
        return len(list(entries.filter(pk__in=ids).values_list(*fields)))

    assert by_database(batches[0]) == by_dict(batches[0]) == 500
    print(
        f"md5, 1,000 a batch (500 listed), {len(index):,} md5 entries: database "
        f"{timed(by_database):.1f} ms; dict + details by pk {timed(by_dict):.1f} ms "
        f"(the dict: {dict_mb:.0f} MB per worker)"
    )


# ------------------------------------------------------------------------------------------------
# HTTP
# ------------------------------------------------------------------------------------------------


def post(url: str, key: str, body: bytes) -> tuple[int, bytes]:
    request = urllib.request.Request(
        url,
        data=body,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=600) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def drive(
    url: str, key: str, bodies: list[bytes], *, clients: int, seconds: float | None = None
) -> dict:
    """Post ``bodies`` from ``clients`` threads: each once, or round robin for ``seconds``.
    Returns the wall time and each request's latency; any answer but 200 or 201 stops it."""
    latencies: list[float] = []
    failures: list[tuple[int, bytes]] = []
    lock = threading.Lock()
    taken = iter(range(len(bodies) if seconds is None else sys.maxsize))
    stop = time.perf_counter() + (seconds or 0)

    def client() -> None:
        while seconds is None or time.perf_counter() < stop:
            with lock:
                position = next(taken, None)
            if position is None:
                return
            started = time.perf_counter()
            status, body = post(url, key, bodies[position % len(bodies)])
            elapsed = time.perf_counter() - started
            with lock:
                latencies.append(elapsed)
                if status not in (200, 201):
                    failures.append((status, body[:300]))

    started = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise SystemExit(
            f"{len(failures)} requests failed, e.g. {failures[0]}; see {SCRATCH}/gunicorn.log"
        )
    return {"elapsed": time.perf_counter() - started, "latencies": sorted(latencies)}


def percentile(values: list[float], fraction: float) -> float:
    return values[min(len(values) - 1, round(fraction * (len(values) - 1)))]


def worker_rss_mb(master: int) -> list[float]:
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    sizes = []
    for pid in children:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                sizes.append(int(line.split()[1]) / 1024)
    return sizes


def lookup_bodies(pdqs: list[str], batch: int, count: int, rng: random.Random) -> list[bytes]:
    """``count`` request bodies of ``batch`` PDQ hashes: half listed ones with 0-20 bits
    flipped (always a match), half random (almost never one)."""
    bodies = []
    for _ in range(count):
        hashes = []
        for n in range(batch):
            if n % 2:
                value = int(rng.choice(pdqs), 16)
                for bit in rng.sample(range(256), rng.randint(0, 20)):
                    value ^= 1 << bit
            else:
                value = rng.getrandbits(256)
            hashes.append({"hash_type": "pdq", "value": f"{value:064x}", "ref": str(n)})
        bodies.append(json.dumps({"hashes": hashes}).encode())
    return bodies


def bench_matches(base: str, *, batches: int, clients: int) -> None:
    """Batches of 1,000 new match reports on random active entries, then the same replayed."""
    from django.utils import timezone

    from hashlists.models import HashEntry
    from partners.models import MatchReport

    key = bench_key(["matches:write"])
    rng = random.Random(5)
    entries = list(
        HashEntry.objects.filter(status="active", hash_type__in=["md5", "pdq", "phash"])
        .order_by("?")
        .values_list("public_id", "hash_type")[:50_000]
    )
    run = f"bench-{time.time_ns():x}"
    matched_at = (timezone.now() - timedelta(minutes=1)).isoformat()
    limits = {"md5": 0, "pdq": 31, "phash": 8}
    actions = ["removed", "pending_review", "restricted", "no_action", "not_relevant"]
    bodies = []
    for batch in range(batches):
        items = []
        for n in range(1000):
            public_id, hash_type = rng.choice(entries)
            items.append(
                {
                    "client_ref": f"{run}-{batch}-{n}",
                    "entry_id": str(public_id),
                    "distance": rng.randint(0, limits[hash_type]),
                    "content_ref": f"content/{batch}/{n}",
                    "matched_at": matched_at,
                    "action": rng.choices(actions, [55, 12, 13, 12, 8])[0],
                }
            )
        bodies.append(json.dumps({"matches": items}).encode())
    url = f"{base}/api/v1/matches"
    drive(url, key, bodies[:1], clients=1)  # a first request per worker pays for imports
    drive(url, key, bodies[1:3], clients=2)
    print(f"\nmatch ingestion: {batches:,} batches of 1,000, {clients} clients")
    print(f"  {'':<22}{'matches/s':>10}{'p50 ms':>9}{'p95 ms':>9}")
    for name in ("new reports", "replayed (no new)"):
        result = drive(url, key, bodies[3:], clients=clients)
        latencies = result["latencies"]
        print(
            f"  {name:<22}{len(latencies) * 1000 / result['elapsed']:>10,.0f}"
            f"{percentile(latencies, 0.5) * 1000:>9.0f}{percentile(latencies, 0.95) * 1000:>9.0f}"
        )
    stored = MatchReport.objects.filter(client_ref__startswith=run).count()
    assert stored == batches * 1000, stored
    print(f"  {stored:,} reports stored, none twice  [goal: at least 5,000 matches/s]")


def bench_lookup(base: str, master: int, *, seconds: float, clients: int) -> None:
    from hashlists.models import HashEntry

    pdq_count = HashEntry.objects.filter(hash_type="pdq", status="active").count()
    total = HashEntry.objects.filter(status="active").count()
    sample = list(
        HashEntry.objects.filter(hash_type="pdq", status="active")
        .order_by("?")
        .values_list("value", flat=True)[:20_000]
    )
    key = bench_key(["lists:read"])
    url = f"{base}/api/v1/lookup"
    rng = random.Random(1)

    # Warm up: each worker loads the list on its first lookup. Done when both have grown by at
    # least three quarters of the PDQs' raw bytes and a round of lookups is quick.
    started = time.perf_counter()
    baseline = worker_rss_mb(master)
    grown = 0.75 * 32 * pdq_count / 2**20
    warm = lookup_bodies(sample, 10, 8, rng)
    while True:
        run = drive(url, key, warm, clients=4)
        sizes = zip(worker_rss_mb(master), baseline, strict=True)
        loaded = all(now - before >= grown for now, before in sizes)
        if loaded and run["latencies"][-1] < 0.5:
            break
    print(
        f"\nlookup: {pdq_count:,} active PDQ entries on a list of {total:,}; both workers "
        f"loaded it within {time.perf_counter() - started:.0f} s "
        f"(RSS {', '.join(f'{mb:.0f}' for mb in worker_rss_mb(master))} MB)"
    )
    check = json.loads(post(url, key, lookup_bodies(sample, 1000, 1, random.Random(9))[0])[1])
    hits = [bool(r["matches"]) for r in check["results"]]
    print(
        f"  check: {sum(hits[1::2])} of 500 near-copies matched, {sum(hits[0::2])} of 500 "
        f"unrelated hashes matched something"
    )
    print(f"  {'batch':>6}{'clients':>9}{'requests':>10}{'hashes/s':>10}{'p50 ms':>9}{'p95 ms':>9}")
    for batch in (100, 1000):
        bodies = lookup_bodies(sample, batch, 40, rng)
        run = drive(url, key, bodies, clients=clients, seconds=seconds)
        latencies = run["latencies"]
        rate = len(latencies) * batch / run["elapsed"]
        print(
            f"  {batch:>6,}{clients:>9}{len(latencies):>10,}{rate:>10,.0f}"
            f"{percentile(latencies, 0.5) * 1000:>9.0f}{percentile(latencies, 0.95) * 1000:>9.0f}"
        )
    print(
        f"  worker RSS after: {', '.join(f'{mb:.0f}' for mb in worker_rss_mb(master))} MB  "
        "[goal: at least 2,000 hashes/s]"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entries", type=int, default=300_000, help="seed_demo --entries")
    parser.add_argument("--pdq", type=int, default=1_000_000, help="PDQ entries on the list")
    parser.add_argument("--seconds", type=float, default=20.0, help="per measured run")
    parser.add_argument("--clients", type=int, default=4, help="concurrent client threads")
    parser.add_argument("--match-batches", type=int, default=40, help="of 1,000 reports")
    parser.add_argument("--reuse", action="store_true", help="Keep an earlier run's database.")
    args = parser.parse_args()
    os.environ.update(ENV)
    SCRATCH.mkdir(exist_ok=True)
    if not args.reuse:
        for sql in (f"DROP DATABASE IF EXISTS {DB}", f"CREATE DATABASE {DB}"):
            subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", sql], check=True)
    manage("migrate", "--noinput")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    if not args.reuse:
        seed(args.entries, args.pdq)
    md5_lookups()

    port = free_port()
    command = [
        str(Path(PYTHON).with_name("gunicorn")),
        "tidportal.wsgi",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        "2",
        "--timeout",
        "600",  # a worker's first lookup loads the list
        "--log-level",
        "warning",
    ]
    base = f"http://127.0.0.1:{port}"
    with open(SCRATCH / "gunicorn.log", "w") as log:
        server = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log)
        try:
            for _ in range(200):
                try:
                    urllib.request.urlopen(f"{base}/healthz", timeout=5)
                    break
                except urllib.error.HTTPError:
                    break  # it answers
                except OSError:
                    time.sleep(0.1)
            bench_matches(base, batches=args.match_batches, clients=args.clients)
            bench_lookup(base, server.pid, seconds=args.seconds, clients=args.clients)
        finally:
            server.terminate()
            server.wait()


if __name__ == "__main__":
    main()
