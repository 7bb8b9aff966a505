"""/healthz/worker against a real beat and a real worker: healthy while they run, 503 soon
after the worker dies."""

import os
import subprocess
import sys

from django.db import connection

from tests.integration.conftest import ROOT, wait_for


def test_worker_health_follows_a_real_beat_and_worker(celery_worker, client, settings, tmp_path):
    settings.TID_WORKER_HEARTBEAT_INTERVAL = 1.0
    settings.CELERY_TASK_ALWAYS_EAGER = False
    assert client.get("/healthz/worker").status_code == 503  # nothing has run yet

    db = connection.settings_dict
    beat = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "tidportal",
            "beat",
            "--loglevel=WARNING",
            f"--schedule={tmp_path / 'beat-schedule'}",
        ],
        cwd=ROOT,
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tidportal.settings.test",
            "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
            "CELERY_TASK_ALWAYS_EAGER": "false",
            "TID_WORKER_HEARTBEAT_INTERVAL": "1",
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: client.get("/healthz/worker").status_code == 200, timeout=30)
        celery_worker.kill()  # SIGKILL: the worker is gone; beat keeps queueing heartbeats
        celery_worker.wait()
        response = wait_for(
            lambda: (r := client.get("/healthz/worker")).status_code == 503 and r, timeout=15
        )
        assert response.json()["heartbeat_age_seconds"] >= 3
    finally:
        beat.terminate()
        beat.wait(timeout=30)
