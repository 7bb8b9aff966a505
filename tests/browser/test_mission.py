"""The mission in one test (issue 7): a reporter hashes photos in Chromium and submits them; staff
accept the case in the admin; a platform runs `tidkit sync`, then `tidkit scan` over a folder
holding re-encoded, resized and slightly cropped copies of those photos among unrelated ones,
which finds exactly the copies; `tidkit report` posts them as removed; the reporter's status page
shows the removals.

Everything is the real thing: the browser's own hashing, the admin action, the sequencer and the
snapshot task beat runs, the `tidkit` command in subprocesses over HTTP against the live server.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from playwright.sync_api import expect

from cases.models import Case
from hashlists import tasks as hashlist_tasks
from hashlists.models import HashEntry, Snapshot
from partners.models import MatchReport
from partners.services import api_key_create, partner_create
from tests import corpus
from tests.browser.reporting import (
    assert_image_hashes_agree,
    assert_page_is_clean,
    choose_files,
    hashed_items,
    phone_page,
    reset_throttles,
    wait_for_hashes,
)
from tests.conftest import REVIEWER_PERMISSIONS, staff_with

pytestmark = pytest.mark.django_db(transaction=True)
ROOT = Path(__file__).resolve().parents[2]

REPORTED = {"astronaut": "astronaut.png", "coffee": "coffee.png", "chelsea": "chelsea.png"}
UNRELATED = ["camera.png", "horse.png", "motorcycle_left.png", "rocket.jpg"]
COPIES = ["jpeg-q75", "resized-half", "cropped-1pct"]


def write_files(root: Path) -> tuple[list[Path], Path, set[str]]:
    """The reporter's photos (as on their phone), and the platform's uploads: copies of them
    among unrelated photos and a file that is no picture. Returns (photos, uploads, copies)."""
    phone, uploads = root / "phone", root / "uploads"
    phone.mkdir()
    uploads.mkdir()
    photos, copies = [], set()
    for stem, source in REPORTED.items():
        image = corpus.photo(source).convert("RGB")
        photo = phone / f"{stem}.jpg"
        photo.write_bytes(corpus.encode(image, "JPEG", quality=92))
        photos.append(photo)
        variants = corpus.variants(image)
        for variant in COPIES:
            copy = uploads / f"user-{len(copies):03d}.jpg"
            copy.write_bytes(variants[variant])
            copies.add(copy.name)
    for n, source in enumerate(UNRELATED):
        image = corpus.photo(source).convert("RGB")
        (uploads / f"other-{n:03d}.jpg").write_bytes(corpus.encode(image, "JPEG", quality=85))
    (uploads / "caption.txt").write_text("not a picture\n")
    return photos, uploads, copies


def tidkit(*args: str | Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tidkit", *map(str, args)],
        env={"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_the_mission_report_accept_sync_scan_report_and_the_reporter_sees_removals(
    browser, live_server, default_list, django_user_model, tmp_path
):
    reset_throttles()
    photos, uploads, copies = write_files(tmp_path)

    # 1. The reporter hashes the photos on their phone and sends the report.
    with phone_page(browser, live_server.url) as page:
        page.goto(live_server.url + "/report/")
        page.get_by_label("Me. I am the person in the images.").check()
        page.get_by_label("Yes, under 18").check()
        page.get_by_role("button", name="Continue").click()
        choose_files(page, photos)
        wait_for_hashes(page, len(photos))
        for item, path in zip(hashed_items(page), photos, strict=True):
            assert_image_hashes_agree(item, path)
        page.get_by_role("button", name="Continue").click()
        page.get_by_test_id("submit").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("Your report was sent")
        case_number = page.get_by_test_id("case-number").inner_text()
        pin = page.get_by_test_id("case-pin").inner_text()
        page.traffic.assert_no_file_left_the_device(*photos)
        assert_page_is_clean(page)

    # 2. A reviewer accepts the case in the admin; beat's snapshot task signs the list.
    staff_with(django_user_model, "reviewer", *REVIEWER_PERMISSIONS)
    admin = browser.new_context(viewport={"width": 1280, "height": 900})
    staff = admin.new_page()
    staff.goto(live_server.url + "/admin/login/")
    staff.get_by_label("Username").fill("reviewer")
    staff.get_by_label("Password").fill("pw")
    staff.get_by_role("button", name="Log in").click()
    staff.goto(f"{live_server.url}/admin/cases/case/?q={case_number}")
    staff.locator("input.action-select").check()
    staff.locator("select[name=action]").select_option("accept")
    staff.get_by_role("button", name="Go").click()
    expect(staff.get_by_text("1 case(s) accepted.")).to_be_visible()
    admin.close()
    case = Case.objects.get(case_number=case_number)
    assert case.status == Case.Status.ACCEPTED
    hashlist_tasks.hash_list_snapshots_due()
    assert Snapshot.objects.filter(hash_list=default_list).exists()
    listed = HashEntry.objects.filter(status=HashEntry.Status.ACTIVE)
    assert listed.count() == 3 * len(photos)  # md5, pdq and phash of each photo

    # 3. A platform syncs the list, scans its uploads and reports the copies as removed.
    platform = partner_create(name="Photo Site", readable_lists=[default_list])
    key = api_key_create(partner=platform, name="scanner", scopes=["lists:read", "matches:write"])[
        1
    ]
    env = {"TIDKIT_URL": live_server.url, "TIDKIT_API_KEY": key, "TIDKIT_STATE": str(tmp_path)}
    synced = tidkit("sync", env=env)
    assert synced.returncode == 0, synced.stderr
    assert f"{len(photos) * 3} entries" in synced.stdout

    scanned = tidkit("scan", uploads, "--json", env=env)
    assert scanned.returncode == 1, scanned.stderr
    lines = [json.loads(line) for line in scanned.stdout.splitlines()]
    assert {Path(line["path"]).name for line in lines if line["matches"]} == copies
    assert [Path(line["path"]).name for line in lines if line["error"]] == ["caption.txt"]
    results = tmp_path / "results.jsonl"
    results.write_text(scanned.stdout)

    reported = tidkit("report", results, "--action", "removed", env=env)
    assert reported.returncode == 0, reported.stderr
    reports = MatchReport.objects.filter(partner=platform)
    assert reports.count() == sum(len(line["matches"]) for line in lines)
    assert {r.entry.sources.get().media_item.case_id for r in reports} == {case.pk}
    assert set(reports.values_list("action", flat=True)) == {"removed"}

    # 4. The reporter looks the case up and sees that a platform removed copies.
    reset_throttles()
    with phone_page(browser, live_server.url) as page:
        page.goto(live_server.url + "/status/")
        page.get_by_label("Case number").fill(case_number)
        page.get_by_label("PIN", exact=True).fill(pin)
        page.get_by_role("button", name="Check case").click()
        expect(page.get_by_test_id("case-status")).to_contain_text("Active on the list")
        expect(page.get_by_test_id("platforms-matched")).to_have_text("1 platform")
        expect(page.get_by_test_id("platforms-removed")).to_have_text("1 platform")
        assert_page_is_clean(page)
