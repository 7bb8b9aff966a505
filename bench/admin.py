"""The staff admin at volume: the case queue and a case page with its near-duplicate panel.

    .venv/bin/python bench/admin.py [--cases 100000] [--entries 1000000] [--reuse]

Seeds its own PostgreSQL database (`tidportal_bench_admin`) with `manage.py seed_demo`, then
times, in one process through Django's test client (server-side time, no network):

- the case changelist (the default queue page, and filtered to cases with near-duplicates);
- a case change page, whose near-duplicate panel searches every case's files and every list
  entry (the first request also loads the in-memory indexes: shown apart as "cold").

Prints p50 and p95 over the repeats. Goal: each under 300 ms with 100,000 cases and 1,000,000
entries.
"""

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DB = "tidportal_bench_admin"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--reuse", action="store_true", help="Keep an earlier run's database.")
    args = parser.parse_args()
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "tidportal.settings.test",
            "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{DB}",
            "REDIS_URL": "redis://127.0.0.1:6379/12",
            "REDIS_CACHE_URL": "redis://127.0.0.1:6379/13",
        }
    )
    if not args.reuse:
        for sql in (f"DROP DATABASE IF EXISTS {DB}", f"CREATE DATABASE {DB}"):
            subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", sql], check=True)
        manage = [sys.executable, "manage.py"]
        subprocess.run(
            [*manage, "migrate", "--noinput"], cwd=ROOT, check=True, stdout=subprocess.DEVNULL
        )
        start = time.perf_counter()
        subprocess.run(
            [*manage, "seed_demo", "--cases", str(args.cases), "--entries", str(args.entries)],
            cwd=ROOT,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        print(
            f"seeded {args.cases:,} cases and {args.entries:,} entries in "
            f"{time.perf_counter() - start:.0f} s"
        )

    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.test import Client
    from django.test.utils import setup_test_environment

    from cases.models import Case
    from hashlists.models import HashEntry

    setup_test_environment()
    user = get_user_model().objects.filter(username="bench-admin").first()
    if user is None:
        user = get_user_model().objects.create_superuser("bench-admin", password="x" * 20)
    client = Client()
    client.force_login(user)
    print(f"{Case.objects.count():,} cases, {HashEntry.objects.count():,} entries")

    def timed(url: str) -> float:
        start = time.perf_counter()
        response = client.get(url)
        elapsed = time.perf_counter() - start
        assert response.status_code == 200, (url, response.status_code)
        return elapsed * 1000

    case = Case.objects.filter(near_duplicate_cases__gt=0).first() or Case.objects.first()
    cold = timed(f"/admin/cases/case/{case.pk}/change/")
    print(f"case page, cold (loads the near-duplicate indexes): {cold:.0f} ms")
    pages = {
        "queue (default)": "/admin/cases/case/",
        "queue, has near-duplicates": "/admin/cases/case/?near=yes",
        "queue, received, unassigned": "/admin/cases/case/?status__exact=received&assigned=none",
        "case page with near-duplicate panel": f"/admin/cases/case/{case.pk}/change/",
    }
    print(f"\n{'page':<40}{'p50 ms':>10}{'p95 ms':>10}")
    for name, url in pages.items():
        times = sorted(timed(url) for _ in range(args.repeat))
        p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
        print(f"{name:<40}{statistics.median(times):>10.0f}{p95:>10.0f}")
    print("goal: each under 300 ms at 100,000 cases and 1,000,000 entries")


if __name__ == "__main__":
    main()
