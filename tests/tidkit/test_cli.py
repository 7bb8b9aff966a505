"""The `tidkit` command end to end, in a subprocess against a live server: sync, scan --json,
report; re-running report stores nothing new; exit statuses and messages for what goes wrong."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from hashlists.models import Snapshot
from partners.models import MatchReport
from tests import corpus
from tests.helpers import accepted_case, free_port
from tests.tidkit.server import partner_key, photo_items, snapshot
from tidkit.hashing import hash_video

pytestmark = pytest.mark.django_db(transaction=True)
ROOT = Path(__file__).resolve().parents[2]


def tidkit(*args: str | Path, env: dict | None = None, cwd: Path | None = None):  # noqa: ANN201
    """Run ``python -m tidkit ARGS`` as a partner would; returns the CompletedProcess."""
    return subprocess.run(
        [sys.executable, "-m", "tidkit", *map(str, args)],
        env={"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT), **(env or {})},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.fixture
def world(live_server, partner, default_list, staff_user, tmp_path):
    """Two listed photos; a platform folder with three copies of them, two unrelated photos and
    a text file; a key that may read lists and write matches."""
    reported, folder = tmp_path / "reported", tmp_path / "platform"
    reported.mkdir()
    folder.mkdir()
    listed = []
    for name in ("astronaut.png", "coffee.png"):
        image = corpus.photo(name).convert("RGB")
        path = reported / name
        path.write_bytes(corpus.encode(image, "PNG"))
        listed.append(path)
        variants = corpus.variants(image)
        (folder / f"copy-{name}.jpg").write_bytes(variants["jpeg-q75"])
    big = corpus.photo("astronaut.png").convert("RGB")
    big = big.resize((1600, 1600), Image.Resampling.LANCZOS)
    (folder / "astronaut-big.jpg").write_bytes(corpus.encode(big, "JPEG", quality=85))
    for name in ("camera.png", "horse.png"):
        (folder / name).write_bytes(corpus.encode(corpus.photo(name).convert("RGB"), "PNG"))
    (folder / "readme.txt").write_text("hello\n")
    accepted_case(staff_user, photo_items(listed))
    snapshot(default_list)
    env = {
        "TIDKIT_URL": live_server.url,
        "TIDKIT_API_KEY": partner_key(partner, "lists:read", "matches:write"),
    }
    return env, folder, tmp_path / "state"


def test_sync_scan_report_end_to_end_and_report_again_changes_nothing(world, partner, tmp_path):
    env, folder, state = world

    synced = tidkit("sync", "--state", state, "--memory", "2", env=env)  # (a capped index)
    assert synced.returncode == 0, synced.stderr
    assert synced.stdout == (
        "take-it-down: at seq 6 (new; snapshot 6 loaded); feed: 0 added, 0 removed; "
        "6 entries (2 md5, 2 pdq, 2 phash, 0 vpdq)\n"
    )
    assert json.loads((state / "checkpoint.json").read_text())["memory"] == 2

    scanned = tidkit("scan", folder, "--json", "--state", state, env=env)
    assert scanned.returncode == 1, scanned.stderr  # 1: something matched
    lines = [json.loads(line) for line in scanned.stdout.splitlines()]
    assert [Path(line["path"]).name for line in lines] == sorted(p.name for p in folder.iterdir())
    matched = {Path(line["path"]).name for line in lines if line["matches"]}
    assert matched == {"copy-astronaut.png.jpg", "copy-coffee.png.jpg", "astronaut-big.jpg"}
    (text,) = [line for line in lines if line["path"].endswith("readme.txt")]
    assert text["error"]["code"] == "unsupported" and text["hashes"] is None
    assert "Scanned 6 files against take-it-down@6: 3 matched, 1 could not be read" in (
        scanned.stderr
    )
    assert "\r[" not in scanned.stderr  # no progress bar when stderr is not a terminal
    results = tmp_path / "results.jsonl"
    results.write_text(scanned.stdout)

    reported = tidkit(
        "report", results, "--state", state, "--action", "removed",
        "--content-ref", "cdn://media/{name}",
        env={"TIDKIT_API_KEY": env["TIDKIT_API_KEY"]},  # the server comes from the state
    )  # fmt: skip
    assert reported.returncode == 0, reported.stderr
    posted = sum(len(line["matches"]) for line in lines)
    assert reported.stdout == f"Reported {posted} matches: {posted} new, 0 already reported.\n"
    reports = MatchReport.objects.filter(partner=partner)
    assert reports.count() == posted
    assert set(reports.values_list("action", flat=True)) == {"removed"}
    assert {r.content_ref for r in reports} == {f"cdn://media/{name}" for name in matched}
    expected_entries = {m["entry_id"] for line in lines for m in line["matches"]}
    assert {str(r.entry.public_id) for r in reports} == expected_entries

    again = tidkit("report", results, "--state", state, "--action", "removed", env=env)
    assert again.returncode == 0, again.stderr
    assert f"0 new, {posted} already reported" in again.stdout
    assert MatchReport.objects.filter(partner=partner).count() == posted


def test_report_can_record_a_later_outcome_on_matches_sent_before(world, partner, tmp_path):
    env, folder, state = world
    tidkit("sync", "--state", state, env=env)
    scanned = tidkit("scan", folder / "copy-coffee.png.jpg", "--json", "--state", state, env=env)
    results = tmp_path / "results.jsonl"
    results.write_text(scanned.stdout)

    first = tidkit("report", results, "--action", "pending_review", "--state", state, env=env)
    assert first.returncode == 0, first.stderr
    later = tidkit(
        "report", results, "--action", "removed", "--update-existing", "--json",
        "--state", state, env=env,
    )  # fmt: skip

    assert later.returncode == 0, later.stderr
    outcomes = [json.loads(line) for line in later.stdout.splitlines()]
    assert outcomes and all(not o["created"] for o in outcomes)
    reports = MatchReport.objects.filter(partner=partner)
    assert {str(r.public_id) for r in reports} == {o["id"] for o in outcomes}
    assert set(reports.values_list("action", flat=True)) == {"removed"}


def test_scan_prints_a_table_and_a_progress_bar_when_asked(world):
    env, folder, state = world
    tidkit("sync", "--state", state, env=env)

    scanned = tidkit("scan", folder, "--state", state, "--progress", "--workers", "2", env=env)

    rows = {Path(line.split()[1]).name: line.split()[0] for line in scanned.stdout.splitlines()}
    assert rows == {
        "astronaut-big.jpg": "MATCH",
        "camera.png": "-",
        "copy-astronaut.png.jpg": "MATCH",
        "copy-coffee.png.jpg": "MATCH",
        "horse.png": "-",
        "readme.txt": "ERROR",
    }
    assert "] 6/6 files" in scanned.stderr


def test_exit_statuses_name_what_went_wrong(world, live_server, tmp_path):
    env, folder, state = world
    unsynced = tidkit("scan", folder, "--state", tmp_path / "nowhere", env=env)
    assert (unsynced.returncode, unsynced.stdout) == (6, "")
    assert "No list has been synced into" in unsynced.stderr

    for cap in ("0.5", "two"):
        no_cap = tidkit("sync", "--state", state, "--memory", cap, env=env)
        assert no_cap.returncode == 2 and "--memory: must be 0 (no cap) or at least 1" in (
            no_cap.stderr
        )

    no_url = tidkit("sync", "--state", state, env={"TIDKIT_API_KEY": "x"})
    assert no_url.returncode == 2 and "Give the server with --url" in no_url.stderr

    bad_key = tidkit("sync", "--state", state, env={**env, "TIDKIT_API_KEY": "tid_nope_nope"})
    assert bad_key.returncode == 4
    assert "The API key was not accepted" in bad_key.stderr
    assert "This API key is not valid: unknown, revoked or expired." in bad_key.stderr

    down = tidkit(
        "sync", "--state", state, "--retries", "0", "--url", f"http://127.0.0.1:{free_port()}",
        env={"TIDKIT_API_KEY": env["TIDKIT_API_KEY"]},
    )  # fmt: skip
    assert down.returncode == 5 and "Could not reach" in down.stderr

    Snapshot.objects.update(signature=b"\0" * 64)
    forged = tidkit("sync", "--state", state, env=env)
    assert forged.returncode == 3
    assert "does not carry a valid signature" in forged.stderr
    assert not state.exists() or not (state / "checkpoint.json").exists()

    no_matches = tidkit("report", tmp_path / "missing.jsonl", "--action", "removed", env=env)
    assert no_matches.returncode == 6 and "Cannot read" in no_matches.stderr


def test_python_dash_m_and_version():
    version = tidkit("--version")
    assert (version.returncode, version.stdout.strip()) == (0, "tidkit 0.1.0")


def test_a_video_match_is_reported_with_its_frame_percentages(
    live_server, partner, default_list, staff_user, tmp_path
):
    scenes = [corpus.smooth_noise(seed) for seed in (21, 22, 23)]
    listed = corpus.write_video(tmp_path / "listed.mp4", scenes)
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    corpus.write_video(uploads / "reupload.mp4", scenes, size=(400, 300), crf=32)
    accepted_case(staff_user, [hash_video(listed)])
    env = {
        "TIDKIT_URL": live_server.url,
        "TIDKIT_API_KEY": partner_key(partner, "lists:read", "matches:write"),
        "TIDKIT_STATE": str(tmp_path / "state"),
    }
    assert tidkit("sync", env=env).returncode == 0
    scanned = tidkit("scan", uploads, "--json", env=env)
    results = tmp_path / "results.jsonl"
    results.write_text(scanned.stdout)

    reported = tidkit("report", results, "--action", "restricted", env=env)

    assert reported.returncode == 0, reported.stderr
    (report,) = MatchReport.objects.filter(partner=partner)
    assert (report.hash_type, report.action) == ("vpdq", "restricted")
    assert report.listed_match_percent == 100.0 and report.query_match_percent == 100.0
    assert report.distance <= 31
