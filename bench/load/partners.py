"""Partners under load: 20 feed readers, bulk match posts and lookups at once, on a moving list.

How to run it (from the project root; PostgreSQL and Redis on their local default addresses):

    .venv/bin/python bench/load/partners.py [--entries 200000] [--seconds 60] [--readers 20]

It makes its own PostgreSQL database, `tidportal_bench_load` (dropped at the end unless
--keep), seeded with `seed_demo --cases 2000 --entries N`, and uses Redis database 9. It starts
the production stack on a free loopback port (bench/load/stack.py: gunicorn with 2 workers x 4
threads and tidportal.settings.production, a Celery worker and beat; logs in
/tmp/tidportal-bench-load/), with the partner throttle (TID_THROTTLE_PARTNER) raised: the output
says so. Then, all at the same time for --seconds:

- --readers feed readers, each following GET /api/v1/lists/take-it-down/changes from 0 to the
  head in pages of 10,000 (gzip), then polling every --poll seconds; every page is checked for
  gaps (its change count is next - after);
- --matchers clients posting batches of 1,000 new match reports to POST /api/v1/matches;
- --lookers clients posting batches of 100 PDQ hashes (half near-copies of listed ones) to
  POST /api/v1/lookup (each gunicorn worker loads the list on its first lookup: done before);
- a case reported and accepted every --add-interval seconds in this process, so the feed moves
  (the Celery worker sequences the changes).

Printed: requests, errors (goal: 0) and latency per kind, the rates (feed changes read, matches
and hashes looked up per second), the feed's head before and after, and how far the readers got.
The load driver runs on the same 2 cores as the server.

Measured 2026-11-25 on the 2-core development machine, while other test suites ran on it,
200,000 entries (207,146 changes), 120 s, 0 errors, all 445,000 match reports stored; the feed
moved by 708 changes during the run and every reader caught up from 0:

    while the 20 readers catch up from 0:  105,000 changes/s read (420 pages of 10,000,
                                           p50 1.5 s); matches 1,000/s; lookups 230 hashes/s
    then, with 20 readers polling each s:  polls p50 43 ms, p99 529 ms; matches 4,980/s
                                           (p50 359 ms a batch); lookups 3,300 hashes/s
                                           (p50 50 ms, p99 255 ms a batch of 100)

Again with the machine otherwise idle, 60 s (the defaults), 0 errors, all 152,000 match reports
stored, every reader caught up from 0: catch-up 94,400 changes/s (p50 1.75 s a page), polls
p50 37 ms and p99 1.4 s, matches 6,578/s (p50 288 ms a batch), lookups 4,496 hashes/s (p50
37 ms, p99 155 ms a batch of 100).
"""

import argparse
import time

import stack


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entries", type=int, default=200_000, help="seed_demo --entries")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--readers", type=int, default=20)
    parser.add_argument("--matchers", type=int, default=2)
    parser.add_argument("--lookers", type=int, default=2)
    parser.add_argument("--poll", type=float, default=1.0, help="feed poll interval, s")
    parser.add_argument("--add-interval", type=float, default=1.0, help="s between cases")
    parser.add_argument("--keep", action="store_true", help="Keep the database afterwards.")
    args = parser.parse_args()
    stack.database_fresh(cases=2000, entries=args.entries)
    stack.settings_banner()
    try:
        with stack.Stack() as running:
            run(running, args)
    finally:
        if not args.keep:
            stack.database_drop()


def run(running: stack.Stack, args: argparse.Namespace) -> None:
    from partners.models import MatchReport

    load = stack.PartnerLoad(running.base)
    load.warm()
    head_before = stack.feed_head()
    recorder = stack.Recorder()
    stop_at = time.perf_counter() + args.seconds
    heads: list[int] = []
    catch_up = stack.CatchUp(args.readers)
    base, key = running.base, load.read_key
    stack.run_threads(
        [
            *[
                lambda: stack.feed_reader(base, key, recorder, stop_at, args.poll, heads, catch_up)
                for _ in range(args.readers)
            ],
            *[lambda: load.matcher(recorder, stop_at, catch_up) for _ in range(args.matchers)],
            *[lambda n=n: load.looker(recorder, stop_at, n, catch_up) for n in range(args.lookers)],
            lambda: stack.case_adder(recorder, stop_at, args.add_interval),
        ]
    )
    recorder.finish()
    head_after = stack.feed_head()
    print(
        f"\n{args.readers} feed readers (pages of 10,000, then polling every {args.poll} s), "
        f"{args.matchers} match posters, {args.lookers} lookup clients, a case accepted every "
        f"{args.add_interval} s; {args.seconds:.0f} s  [goal: 0 errors]"
    )
    recorder.print_table(
        {
            "feed catch-up page": "changes",
            "feed poll": "changes",
            "POST matches (1,000)": "matches",
            "POST lookup (100 PDQ)": "hashes",
        }
    )
    stored = MatchReport.objects.filter(client_ref__startswith=load.run).count()
    posted = 1000 * sum(
        len(recorder.latencies[kind]) - len(recorder.failures[kind])
        for kind in list(recorder.latencies)
        if kind.startswith("POST matches")
    )
    print(f"  match reports stored: {stored:,} of {posted:,} accepted by the API")
    print(
        f"  feed head {head_before:,} -> {head_after:,} during the run; "
        f"{args.readers - catch_up.left} of {args.readers} readers caught up from 0; "
        "newest head a reader saw "
        f"{max(heads, default=0):,}"
    )
    running.log_problems()
    if stored != posted:
        raise SystemExit("match reports accepted but not stored")


if __name__ == "__main__":
    main()
