"""PostgreSQL restarted, then crashed, under traffic (issue 8).

A private PostgreSQL server (tests/pgserver.py) serves the whole stack: gunicorn, a Celery worker
and beat, a supervisor accepting cases, reporters, a partner following the feed and receiving
webhooks. It is restarted cleanly, then killed as in a crash and started again, while they work.
Nothing is restarted but PostgreSQL.
"""

import time

from tests.integration.conftest import wait_for
from tests.integration.stack import busy_service, wait_for_progress


def test_postgresql_restarted_and_crashed_mid_traffic_loses_nothing(tmp_path):
    with busy_service(tmp_path) as service:
        server, receiver = service.server, service.receiver
        with service.traffic() as traffic:
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
        service.assert_nothing_lost(traffic)
