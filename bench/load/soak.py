"""A soak: reporters and partners all at once for minutes, watching every process's memory.

How to run it (from the project root; PostgreSQL and Redis on their local default addresses):

    .venv/bin/python bench/load/soak.py [--minutes 10] [--postgres]

`--minutes 2` is a quick run. It makes its own PostgreSQL database, `tidportal_bench_load`
(dropped at the end unless --keep), seeded with `seed_demo --cases 2000 --entries N`
(--entries, default 200,000), and uses Redis database 9. It starts the production stack on a
free loopback port (bench/load/stack.py: gunicorn with 2 workers x 4 threads and
tidportal.settings.production, a Celery worker and beat; logs in /tmp/tidportal-bench-load/),
with the anonymous and partner throttles raised: the output says so. For --minutes, at once:

- --users simulated reporters as in reporters.py (report page, report, status);
- --readers feed readers, a match poster and a lookup client as in partners.py, and a case
  reported and accepted every 2 seconds in this process (so the feed moves).

Every 10 s it samples the resident memory (RSS) of every process of the stack: the gunicorn
master and workers, the Celery worker's parent and pool processes, beat, and with --postgres the
PostgreSQL backends serving the bench database (which grow as they touch shared buffers, so they
are only shown on request). Printed: the table of samples, the requests and errors of the run,
and each process's growth from the first minute to the end (goal: flat).

Measured 2026-11-25 on the 2-core development machine, while other test suites ran on it, 10
minutes, defaults (Django's PBKDF2 for PINs, so the server was saturated throughout: reporter
requests p50 about 4 s), 9,665 requests, 0 errors, nothing in the logs. RSS, MB, at 1 minute
and at the end: gunicorn master 26 -> 26, workers 232 -> 235 and 233 -> 235 (both flat from
100 s on), Celery worker 122 -> 123, its pool 143 -> 145 and 138 -> 139, beat 120 -> 120.
"""

import argparse
import threading
import time

import stack


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--entries", type=int, default=200_000, help="seed_demo --entries")
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--think", type=float, default=1.0, help="reporters' mean pause, s")
    parser.add_argument("--readers", type=int, default=20)
    parser.add_argument("--postgres", action="store_true", help="Sample PostgreSQL backends too.")
    parser.add_argument(
        "--pin-iterations",
        type=int,
        help="PBKDF2 iterations for PINs (TID_PIN_HASH_ITERATIONS); default the project's",
    )
    parser.add_argument("--keep", action="store_true", help="Keep the database afterwards.")
    args = parser.parse_args()
    stack.pin_iterations_use(args.pin_iterations)
    stack.database_fresh(cases=2000, entries=args.entries)
    stack.settings_banner()
    try:
        with stack.Stack() as running:
            soak(running, args)
    finally:
        if not args.keep:
            stack.database_drop()


def soak(running: stack.Stack, args: argparse.Namespace) -> None:
    load = stack.PartnerLoad(running.base)
    load.warm()
    stack.reporter_run(running.base, stack.Recorder(), time.perf_counter() + 3, seed=0, think=0)
    recorder = stack.Recorder()
    seconds = args.minutes * 60
    stop_at = time.perf_counter() + seconds
    samples: list[tuple[float, dict[str, float]]] = []
    pids: dict[str, int] = {}

    def sample() -> None:
        started = time.perf_counter()
        while True:
            now = time.perf_counter()
            roles = running.pids()
            if args.postgres:
                roles.update(stack.postgres_backends())
            for role, pid in roles.items():
                if pids.setdefault(role, pid) != pid:
                    print(f"  {role} was replaced: pid {pids[role]} -> {pid}")
                    pids[role] = pid
            sizes = {role: stack.rss_mb(pid) for role, pid in roles.items()}
            samples.append((now - started, {r: s for r, s in sizes.items() if s is not None}))
            if now >= stop_at:
                return
            time.sleep(max(0.0, min(10.0 - (time.perf_counter() - now), stop_at - now)))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    base, key, think = running.base, load.read_key, args.think
    heads: list[int] = []
    catch_up = stack.CatchUp(args.readers)
    stack.run_threads(
        [
            *[
                lambda n=n: stack.reporter_run(base, recorder, stop_at, n + 1, think)
                for n in range(args.users)
            ],
            *[
                lambda: stack.feed_reader(base, key, recorder, stop_at, 1.0, heads, catch_up)
                for _ in range(args.readers)
            ],
            lambda: load.matcher(recorder, stop_at, catch_up),
            lambda: load.looker(recorder, stop_at, 1, catch_up),
            lambda: stack.case_adder(recorder, stop_at, 2.0),
        ]
    )
    recorder.finish()
    sampler.join()

    roles = sorted({role for _t, sizes in samples for role in sizes}, key=role_order)
    print(
        f"\nsoak: {args.minutes:g} min, {args.users} reporters (think {args.think} s), "
        f"{args.readers} feed readers, 1 match poster, 1 lookup client, a case accepted every "
        "2 s"
    )
    print("\nRSS, MB, every 10 s:")
    short = [short_name(role) for role in roles]
    print(f"  {'t s':>5}" + "".join(f"{name:>10}" for name in short))
    for at, sizes in samples:
        cells = "".join(
            f"{sizes[role]:>10.0f}" if role in sizes else f"{'-':>10}" for role in roles
        )
        print(f"  {at:>5.0f}{cells}")
    print("\ngrowth from minute 1 to the end  [goal: flat]:")
    first = next((sizes for at, sizes in samples if at >= 60), samples[0][1])
    last = samples[-1][1]
    for role in roles:
        if role in first and role in last:
            grown = last[role] - first[role]
            print(
                f"  {role:<22}{first[role]:>8.0f} MB -> {last[role]:>5.0f} MB  "
                f"{grown:>+6.1f} MB ({grown / first[role]:+.1%})"
            )
    print("\nrequests during the soak  [goal: 0 errors]:")
    recorder.print_table(
        {
            "feed catch-up page": "changes",
            "feed poll": "changes",
            "POST matches (1,000)": "matches",
            "POST lookup (100 PDQ)": "hashes",
        }
    )
    running.log_problems()


def role_order(role: str) -> tuple[int, str]:
    order = ["gunicorn master", "gunicorn worker", "celery worker", "celery pool", "celery beat"]
    for rank, prefix in enumerate(order):
        if role.startswith(prefix):
            return rank, role
    return len(order), role


def short_name(role: str) -> str:
    for long, short in (
        ("gunicorn master", "gmaster"),
        ("gunicorn worker ", "gworker"),
        ("celery worker", "cworker"),
        ("celery pool ", "cpool"),
        ("celery beat", "beat"),
        ("postgres ", "pg"),
    ):
        if role.startswith(long):
            return short + role[len(long) :]
    return role


if __name__ == "__main__":
    main()
