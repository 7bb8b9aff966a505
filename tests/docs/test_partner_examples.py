"""docs/partners.md's runnable example, run as a partner would run it, against a live server."""

import os
import subprocess
import sys
from pathlib import Path

from cases.services import case_accept, case_create
from hashlists.services import list_changes_sequence
from partners.models import MatchReport
from partners.services import api_key_create

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "native_api.py"


def test_the_native_api_example_runs_and_is_idempotent(
    live_server, default_list, partner, staff_user, image_item
):
    case, _pin = case_create(reporter="self", under_18_when_made=True, items=[image_item])
    case_accept(case=case, staff=staff_user)
    list_changes_sequence()
    _key, raw = api_key_create(partner=partner, name="docs", scopes=["lists:read", "matches:write"])

    def run() -> list[str]:
        out = subprocess.run(
            [sys.executable, str(EXAMPLE)],
            env={**os.environ, "TID_URL": live_server.url, "TID_API_KEY": raw},
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return out.stdout.splitlines()

    first = run()
    assert first[0] == "lists: take-it-down (seq 3)"  # md5, pdq and phash of the photo
    assert first[1] == "take-it-down: 3 active entries at seq 3"
    assert first[2].startswith("lookup: entry ") and first[2].endswith(" at distance 0")
    assert first[3].endswith(": created") and first[4] == "webhook check: True"
    report = MatchReport.objects.get()
    assert (report.partner, report.action, report.distance) == (partner, "removed", 0)
    assert report.entry.value == image_item["pdq"]

    second = run()
    assert second[3] == first[3].replace("created", "already sent")
    assert MatchReport.objects.count() == 1
