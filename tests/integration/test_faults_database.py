"""PostgreSQL restarted, then crashed, under traffic (issue 8).

A private PostgreSQL server (tests/pgserver.py) serves the whole stack: gunicorn, a Celery worker
and beat, a supervisor accepting cases, reporters, a partner following the feed and receiving
webhooks. It is restarted cleanly, then killed as in a crash and started again, while they work.
Nothing is restarted but PostgreSQL.
"""

import time

from tests.integration.conftest import wait_for
from tests.integration.stack import (
    Stack,
    Traffic,
    assert_nothing_lost,
    feed_settled,
    log,
    migrated_postgres,
    wait_for_progress,
)
from tests.partners.webhook_receiver import running_receiver


def test_postgresql_restarted_and_crashed_mid_traffic_loses_nothing(tmp_path):
    with migrated_postgres(tmp_path / "postgres") as (server, url), running_receiver() as receiver:
        stack = Stack(tmp_path, database_url=url)
        try:
            stack.start_redis()
            made = stack.run_python(
                "from tests.integration.stack import partner_with_webhook; "
                f"partner_with_webhook({receiver.url!r})"
            )
            assert made.returncode == 0, made.stderr
            api_key = made.stdout.split()[-1]
            services = [stack.gunicorn(), stack.worker(), stack.beat()]
            stop_staff = tmp_path / "stop-staff"
            staff = stack.python(
                "staff",
                "from tests.integration.stack import staff_accept_loop; "
                f"staff_accept_loop({str(stop_staff)!r})",
            )
            with Traffic(stack.base, api_key=api_key) as traffic:
                wait_for_progress(traffic, receiver)

                server.restart("fast")  # everyone disconnected, back at once
                wait_for_progress(traffic, receiver)

                server.stop("immediate")  # a crash: no checkpoint, recovery from the WAL
                down = time.monotonic()
                wait_for(
                    lambda: all(
                        traffic.count(kind, 503, since=down)
                        for kind in ("POST report", "GET feed", "GET healthz")
                    ),
                    timeout=60,
                )
                server.start()
                wait_for_progress(traffic, receiver)
            stop_staff.touch()
            staff.wait(timeout=60)
            print(
                traffic.summary(), len(traffic.acknowledged), traffic.heads, len(receiver.requests)
            )
            assert traffic.unclear() == []

            with server.connect("tidportal") as db:
                wait_for(lambda: feed_settled(db, receiver), timeout=120, interval=0.5)
                assert_nothing_lost(
                    db,
                    traffic,
                    receiver,
                    staff_accepted=[n for n in log(staff).splitlines() if n.startswith("TID-")],
                    api_key=api_key,
                )
            assert all(process.poll() is None for process in services)  # never restarted
        finally:
            stack.stop_all()
