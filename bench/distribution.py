"""Distribution at scale: snapshot build, feed throughput and accept-to-feed latency.

    .venv/bin/python bench/distribution.py [--entries 1000000]

Uses its own PostgreSQL database (`tidportal_bench`, made and migrated here; local trust auth as
on the development machines) and the local Redis (database 12). It prints:

- the time and peak memory (RSS of the process doing it) to build, sign and store the snapshot of
  a list of N active entries (goal: under 60 s and 300 MB at a million);
- feed throughput: a client reading every change at limit 10,000 over HTTP from a gunicorn server
  on loopback (goal: the million in under 30 s);
- the time from accepting a case to its hashes being readable in the feed, with a real Celery
  worker running (goal: under 5 s; Hasher-Matcher-Actioner polls every 4 to 10 minutes).
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DB = "tidportal_bench"
ENV = {
    **os.environ,
    "DJANGO_SETTINGS_MODULE": "tidportal.settings.test",
    "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{DB}",
    "REDIS_URL": "redis://127.0.0.1:6379/12",
    "REDIS_CACHE_URL": "redis://127.0.0.1:6379/13",
    "CELERY_TASK_ALWAYS_EAGER": "false",
    "DJANGO_MEDIA_ROOT": "/tmp/tidportal-bench/storage",
    "TID_SIGNING_KEY_FILE": "/tmp/tidportal-bench/signing.pem",
    "TID_THROTTLE_PARTNER": "100000/minute",
}
PYTHON = sys.executable


def django(code: str, *, timeout: float = 3600) -> str:
    """Run ``code`` in a fresh Django process against the bench database; return its stdout."""
    result = subprocess.run(
        [PYTHON, "-c", f"import django; django.setup()\n{code}"],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if result.returncode:
        raise SystemExit(result.stderr)
    return result.stdout


def manage(*args: str) -> None:
    subprocess.run(
        [PYTHON, "manage.py", *args], cwd=ROOT, env=ENV, check=True, stdout=subprocess.DEVNULL
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


SEED = """
import numpy as np
from django.db import connection
from django.utils import timezone
from hashlists.models import HashList
n = {n}
hl = HashList.objects.get(slug="take-it-down")
now = timezone.now()
rng = np.random.default_rng(1)
with connection.cursor() as cur:
    cur.execute("TRUNCATE hashlists_listchange, hashlists_hashentrysource, hashlists_hashentry, "
                "hashlists_historicalhashentry, hashlists_snapshot RESTART IDENTITY CASCADE")
    batch = 100_000
    for start in range(0, n, batch):
        count = min(batch, n - start)
        values = rng.integers(0, 2**63, size=(count, 4), dtype=np.int64)
        rows = [("%016x%016x%016x%016x" % tuple(int(v) for v in row)) for row in values]
        with cur.copy("COPY hashlists_hashentry (public_id, hash_list_id, hash_type, value, "
                      "media_type, quality, status, removal_reason, removal_note, "
                      "backing_case_count, created_at, updated_at) FROM STDIN") as copy:
            import uuid
            for value in rows:
                copy.write_row((uuid.uuid4(), hl.pk, "pdq", value, "image", 90, "active", "", "",
                                1, now, now))
    cur.execute("INSERT INTO hashlists_listchange (hash_list_id, entry_id, op, seq, created_at, "
                "sequenced_at) SELECT %s, id, 'add', id, %s, %s FROM hashlists_hashentry",
                [hl.pk, now, now])
    cur.execute("ANALYZE")
print(n)
"""

BUILD = """
import resource, time
from hashlists.models import HashList
from hashlists.snapshots import hash_list_snapshot_build
start = time.perf_counter()
s = hash_list_snapshot_build(hash_list=HashList.objects.get(slug="take-it-down"))
elapsed = time.perf_counter() - start
print(elapsed, s.entry_count, s.size_bytes, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""

BASELINE = """
import resource
from hashlists.models import HashList
from hashlists.snapshots import hash_list_snapshot_build
HashList.objects.get(slug="take-it-down")
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument(
        "--reuse", action="store_true", help="Keep the seeded database of an earlier run."
    )
    args = parser.parse_args()
    Path("/tmp/tidportal-bench").mkdir(exist_ok=True)
    if not args.reuse:
        for sql in (f"DROP DATABASE IF EXISTS {DB}", f"CREATE DATABASE {DB}"):
            subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", sql], check=True)
    manage("migrate", "--noinput")
    manage("signing_key_generate", "--if-missing")
    if not args.reuse:
        t = time.perf_counter()
        django(SEED.format(n=args.entries))
        print(
            f"seeded {args.entries:,} active PDQ entries and their changes in "
            f"{time.perf_counter() - t:.0f} s\n"
        )
    # Start each run from the seeded list alone.
    django(
        "from hashlists.models import Snapshot\n"
        "from partners.models import Partner\n"
        "Snapshot.objects.all().delete()\n"
        "for p in Partner.objects.filter(name='Bench'):\n"
        "    p.api_keys.all().delete(); p.readable_lists.clear(); p.delete()\n"
    )

    baseline_kb = int(django(BASELINE))
    elapsed, count, size, rss_kb = django(BUILD).split()
    print(
        f"snapshot of {int(count):,} entries: {float(elapsed):.1f} s, {int(size) / 1e6:.1f} MB "
        f"gzip'd; peak RSS {int(rss_kb) / 1024:.0f} MB (the same process idle: "
        f"{baseline_kb / 1024:.0f} MB)  [goal < 60 s, < 300 MB]"
    )

    raw_key = django(
        "from partners.services import partner_create, api_key_create\n"
        "from hashlists.models import HashList\n"
        "hl = HashList.objects.get(slug='take-it-down')\n"
        "p = partner_create(name='Bench', readable_lists=[hl])\n"
        "print(api_key_create(partner=p, name='bench', scopes=['lists:read'])[1])"
    ).strip()
    port = free_port()
    server = subprocess.Popen(
        [
            str(Path(PYTHON).with_name("gunicorn")),
            "tidportal.wsgi",
            "-b",
            f"127.0.0.1:{port}",
            "-w",
            "2",
            "--access-logfile",
            "-",
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    worker = subprocess.Popen(
        [
            PYTHON,
            "-m",
            "celery",
            "-A",
            "tidportal",
            "worker",
            "--pool=solo",
            "--loglevel=WARNING",
            "--without-gossip",
            "--without-mingle",
        ],
        cwd=ROOT,
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}/api/v1/lists/take-it-down/changes"
        headers = {"Authorization": f"Bearer {raw_key}", "Accept-Encoding": "identity"}
        for _ in range(100):
            try:
                urllib.request.urlopen(urllib.request.Request(base + "?limit=1", headers=headers))
                break
            except OSError:
                time.sleep(0.2)
        t, after, read = time.perf_counter(), 0, 0
        while True:
            request = urllib.request.Request(f"{base}?after={after}&limit=10000", headers=headers)
            with urllib.request.urlopen(request) as response:
                page = json.load(response)
            read += len(page["changes"])
            after = page["next"]
            if not page["has_more"]:
                break
        elapsed = time.perf_counter() - t
        print(
            f"feed: read {read:,} changes at limit 10,000 in {elapsed:.1f} s = "
            f"{read / elapsed:,.0f} changes/s  [goal: a million in < 30 s]"
        )

        latencies = []
        for n in range(5):
            start_seq = after
            code = (
                "from cases import services\n"
                "from django.contrib.auth import get_user_model\n"
                "from tests.conftest import staff_with, SUPERVISOR_PERMISSIONS\n"
                "U = get_user_model()\n"
                "sup = U.objects.filter(username='bench-sup').first() or "
                "staff_with(U, 'bench-sup', *SUPERVISOR_PERMISSIONS)\n"
                f"item = {{'media_type': 'image', 'md5': '{uuid.uuid4().hex}', "
                f"'pdq': '{n + 1:04x}' + "
                "'5a' * 30, 'pdq_quality': 90, 'phash': '0ff00ff00ff00ff0'}\n"
                "case, _ = services.case_create(reporter='self', under_18_when_made=True, "
                "items=[item])\n"
                "import time; print(time.time())\n"
                "services.case_accept(case=case, staff=sup)\n"
            )
            accepted_at = float(django(code).split()[-1])
            while True:
                request = urllib.request.Request(
                    f"{base}?after={start_seq}&limit=10", headers=headers
                )
                with urllib.request.urlopen(request) as response:
                    page = json.load(response)
                if page["changes"]:
                    latencies.append(time.time() - accepted_at)
                    time.sleep(0.5)  # let the rest of this case's changes land, then skip them
                    request = urllib.request.Request(
                        f"{base}?after={start_seq}&limit=100", headers=headers
                    )
                    with urllib.request.urlopen(request) as response:
                        after = json.load(response)["next"]
                    break
                time.sleep(0.02)
        print(
            f"accept -> readable in the feed (worker running): "
            f"{', '.join(f'{x:.2f}' for x in latencies)} s; median "
            f"{sorted(latencies)[len(latencies) // 2]:.2f} s  [goal < 5 s]"
        )
    finally:
        server.terminate()
        worker.terminate()
        server.wait()
        worker.wait()


if __name__ == "__main__":
    main()
