"""Smoke test of `make run`'s script on the embedded default: SQLite and in-process tasks.

Starts scripts/run.sh as a new user would (no DATABASE_URL, no REDIS_URL), reads the printed
credentials, logs in to the admin over HTTP and sees every model, then stops it.
"""

import http.cookiejar
import os
import re
import signal
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.helpers import free_port

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def running_site(tmp_path):
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if k
        not in ("DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE", "CELERY_TASK_ALWAYS_EAGER")
    }
    env.update(
        {
            # The embedded default, its files in a scratch folder instead of the checkout's var/.
            "DATABASE_URL": f"sqlite:///{tmp_path / 'tidportal.sqlite3'}",
            "DJANGO_MEDIA_ROOT": str(tmp_path / "storage"),
            "TID_RUN_ADDR": f"127.0.0.1:{port}",
        }
    )
    log = tmp_path / "run.log"
    with open(log, "w") as out:
        process = subprocess.Popen(
            ["scripts/run.sh"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{base}/healthz", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the site did not come up:\n{log.read_text()}")
            time.sleep(0.5)
        yield base, log
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def test_run_serves_the_site_and_the_admin_with_the_printed_credentials(running_site):
    base, log = running_site
    output = log.read_text()
    password = re.search(r"staff 'admin' \(superuser\): password (\S+)", output).group(1)
    assert re.search(r"API key tid_[0-9a-z]{12}_[0-9A-Za-z]{40}", output)
    assert "embedded beat" in output

    opener = urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
    )
    home = opener.open(f"{base}/").read().decode()
    assert "Take It Down" in home

    login = opener.open(f"{base}/admin/login/").read().decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login).group(1)
    form = urllib.parse.urlencode(
        {"username": "admin", "password": password, "csrfmiddlewaretoken": token, "next": "/admin/"}
    ).encode()
    request = urllib.request.Request(
        f"{base}/admin/login/?next=/admin/", data=form, headers={"Referer": f"{base}/admin/login/"}
    )
    index = opener.open(request).read().decode()
    for model in (
        "Cases",
        "Media items",
        "Hash entries",
        "List changes",
        "Snapshots",
        "Partners",
        "API keys",
        "Match reports",
        "Webhook deliveries",
        "Hash lists",
    ):
        assert model in index, model
    cases = opener.open(f"{base}/admin/cases/case/").read().decode()
    assert cases.count("TID-") >= 4  # the demo cases
