"""tidkit.scan on real photographs and videos against a list synced from a live server: a folder
of re-encoded, resized and slightly cropped copies of listed photos among unrelated ones gives
exactly the copies; unreadable files are reported, never fatal; results are in order and in the
JSON Lines shape `tidkit report` reads."""

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from tests import corpus
from tests.helpers import accepted_case
from tests.tidkit.server import partner_key, photo_items, random_image, snapshot
from tidkit import formats
from tidkit.client import TidClient
from tidkit.hashing import hash_video
from tidkit.scan import IN_FLIGHT_PER_WORKER, iter_files, scan
from tidkit.store import LocalList
from tidkit.sync import open_list, sync

pytestmark = pytest.mark.django_db(transaction=True)

LISTED = ["astronaut", "chelsea", "coffee", "rocket"]
UNRELATED = ["camera", "motorcycle_left", "hubble_deep_field", "horse", "coins", "moon", "retina"]
COPIES = ["jpeg-q75", "resized-half", "cropped-1pct", "webp"]


def write_folder(root: Path) -> tuple[dict[str, Path], dict[str, str]]:
    """The listed originals (as the reporter has them) and a platform's folder: copies of the
    listed photos among unrelated photos, in nested directories. Returns (originals, {path in
    the folder: photo it copies, or "" for unrelated})."""
    originals, expected = {}, {}
    reported = root / "reported"
    folder = root / "platform"
    for directory in (reported, folder / "uploads" / "2026", folder / "archive"):
        directory.mkdir(parents=True)
    for name in LISTED + UNRELATED:
        source = next(p for p in corpus.PHOTOS if p.startswith(name + "."))
        image = corpus.photo(source).convert("RGB")
        variants = corpus.variants(image)
        if name in LISTED:
            originals[name] = reported / f"{name}.png"
            originals[name].write_bytes(variants["original-png"])
            for variant in COPIES:
                path = folder / "uploads" / "2026" / f"{name}-{variant}.img"
                path.write_bytes(variants[variant])
                expected[str(path)] = name
            # A large re-encode: fast mode decodes it at a reduced scale.
            big = folder / "archive" / f"{name}-large.jpg"
            big.write_bytes(
                corpus.encode(image.resize((2400, 2400), Image.Resampling.BICUBIC), "JPEG")
            )
            expected[str(big)] = name
        else:
            for variant in ("original-png", "jpeg-q90", "resized-half"):
                path = folder / "archive" / f"{name}-{variant}.img"
                path.write_bytes(variants[variant])
                expected[str(path)] = ""
    return originals, expected


@pytest.fixture(scope="module")
def files(tmp_path_factory):  # noqa: ANN001, ANN201
    root = tmp_path_factory.mktemp("scan")
    originals, expected = write_folder(root)
    return originals, expected, root / "platform"


@pytest.fixture
def synced(live_server, partner, default_list, staff_user, tmp_path, files):
    """A synced list holding four real photos (one case) and unrelated random entries."""
    originals, expected, folder = files
    accepted_case(staff_user, photo_items([originals[name] for name in LISTED]))
    rng = random.Random(3)
    for _ in range(20):
        accepted_case(staff_user, [random_image(rng)])
    snapshot(default_list)
    state = tmp_path / "state"
    sync(TidClient(live_server.url, partner_key(partner)), state)
    local, _checkpoint = open_list(state)
    return local, originals, expected, folder


def photo_of_entries(local, originals) -> dict[str, str]:  # noqa: ANN001
    """{entry id: listed photo name}, from the listed hash values."""
    from tidkit.hashing import hash_image

    by_value = {}
    for name, path in originals.items():
        for value in hash_image(path).values():
            by_value[value] = name
    return {e.id: by_value[e.value] for e in local.entries() if e.value in by_value}


def test_a_folder_scan_finds_exactly_the_copies_of_listed_photos(synced, tmp_path):
    local, originals, expected, folder = synced
    odd = tmp_path / "odd"
    odd.mkdir()
    (odd / "broken.jpg").write_bytes(originals["astronaut"].read_bytes()[:5000])
    (odd / "notes.txt").write_text("not a picture\n")
    (odd / "empty.png").write_bytes(b"")

    results = list(scan([folder, odd], local, workers=2))

    errors = {Path(r.path).name: r.error["code"] for r in results if r.error}
    assert errors == {"broken.jpg": "truncated", "notes.txt": "unsupported", "empty.png": "empty"}
    matched = {r.path for r in results if r.matches}
    copies = {path for path, name in expected.items() if name}
    assert matched == copies
    assert len(copies) == len(LISTED) * (len(COPIES) + 1)
    photo_of = photo_of_entries(local, originals)
    for result in results:
        if result.matches:
            assert {photo_of[m.entry_id] for m in result.matches} == {expected[result.path]}
            assert any(m.hash_type == "pdq" for m in result.matches), result.path
            for m in result.matches:
                limit = {"pdq": formats.PDQ_MATCH_DISTANCE, "phash": formats.PHASH_MATCH_DISTANCE}
                assert m.distance <= limit.get(m.hash_type, 0)
    in_folder = [r.path for r in results[: len(expected)]]
    assert in_folder == sorted(in_folder, key=lambda p: (os.path.dirname(p), p))
    assert [Path(r.path).name for r in results[len(expected) :]] == [
        "broken.jpg",
        "empty.png",
        "notes.txt",
    ]


def test_an_identical_file_matches_by_md5_and_one_process_agrees_with_many(synced, tmp_path):
    local, originals, _expected, folder = synced
    exact = tmp_path / "exact.png"
    exact.write_bytes(originals["coffee"].read_bytes())

    alone = list(scan([exact, folder / "uploads"], local, workers=1))
    pooled = list(scan([exact, folder / "uploads"], local, workers=2))

    assert [(r.path, r.matches, r.error) for r in alone] == [
        (r.path, r.matches, r.error) for r in pooled
    ]
    assert {m.hash_type: m.distance for m in alone[0].matches} == {"md5": 0, "pdq": 0, "phash": 0}


def test_missing_paths_are_reported_and_the_scan_goes_on(synced, tmp_path):
    local, originals, _expected, _folder = synced
    results = list(scan([tmp_path / "gone.jpg", originals["rocket"]], local, workers=1))

    assert results[0].error["code"] == "unreadable"
    assert "No such file" in results[0].error["message"]
    assert results[0].to_json()["hashes"] is None
    assert results[1].error is None and results[1].matches


def test_json_lines_shape(synced):
    local, originals, _expected, _folder = synced
    (result,) = scan([originals["chelsea"]], local, workers=1)

    line = result.to_json()

    assert set(line) == {"path", "media_type", "hashes", "matches", "error", "scanned_at"}
    assert line["media_type"] == "image" and line["error"] is None
    assert set(line["hashes"]) == {"md5", "pdq", "pdq_quality", "phash"}
    assert {m["hash_type"] for m in line["matches"]} == {"md5", "pdq", "phash"}
    assert all(set(m) == {"entry_id", "hash_type", "distance"} for m in line["matches"])


def test_a_re_encoded_copy_of_a_listed_video_matches_by_vpdq(
    live_server, partner, default_list, staff_user, tmp_path
):
    scenes = [corpus.smooth_noise(seed) for seed in (11, 12, 13, 14)]
    videos = tmp_path / "videos"
    videos.mkdir()
    listed = corpus.write_video(videos / "listed.mp4", scenes)
    # The copy: another size and a much lower quality; the other video: different scenes.
    corpus.write_video(videos / "copy.mp4", scenes, size=(480, 360), crf=35)
    corpus.write_video(videos / "other.mp4", [corpus.smooth_noise(s) for s in (1, 2, 3)])
    listed_hashes = hash_video(listed)
    accepted_case(staff_user, [listed_hashes])
    state = tmp_path / "state"
    sync(TidClient(live_server.url, partner_key(partner)), state)
    local, _ = open_list(state)

    results = {Path(r.path).name: r for r in scan([videos], local, workers=2)}

    # Workers decode on one thread each; the frames hashed are the same as FFmpeg's threads give.
    assert results["listed.mp4"].hashes["vpdq"] == listed_hashes["vpdq"]
    assert [m.hash_type for m in results["listed.mp4"].matches] == ["md5", "vpdq"]
    (match,) = results["copy.mp4"].matches
    assert match.hash_type == "vpdq"
    assert match.listed_match_percent == 100.0 and match.query_match_percent == 100.0
    assert match.distance <= formats.VPDQ_FRAME_DISTANCE
    assert results["copy.mp4"].to_json()["matches"][0]["listed_match_percent"] == 100.0
    assert results["other.mp4"].matches == [] and results["other.mp4"].error is None


def _hashing_workers() -> list[int]:
    """The processes the forkserver (a child of this process) forked: the hashing workers.
    Other descendants (a browser driver's, say) are left alone."""
    children = _children()
    return [worker for server in _forkservers(children) for worker in children.get(server, [])]


def _forkservers(children: dict[int, list[int]] | None = None) -> list[int]:
    children = _children() if children is None else children
    return [
        child
        for child in children.get(os.getpid(), [])
        if b"forkserver" in Path(f"/proc/{child}/cmdline").read_bytes()
    ]


def _children() -> dict[int, list[int]]:
    """{pid: its children's pids} for every process."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(parent, []).append(int(entry))
    return children


def test_hashing_workers_start_with_the_hashing_code_loaded(tmp_path):
    """The forkserver imports what hashing needs before it forks a worker, so that each worker
    does not spend 0.45 s of CPU importing it again (a module the preload cannot import is
    skipped silently, hence this test): PDQ's and pHash's native code is in its memory."""
    for n in range(2):
        (tmp_path / f"{n}.png").write_bytes(corpus.encode(corpus.smooth_noise(n), "PNG"))

    results = list(scan([tmp_path], LocalList.from_entries([]), workers=2))

    assert [r.error for r in results] == [None, None]
    (server,) = _forkservers()
    maps = Path(f"/proc/{server}/maps").read_text()
    assert "pdqhash" in maps
    assert f"scipy{os.sep}fft{os.sep}_pocketfft" in maps  # imagehash.phash's DCT


MEMORY_PROBE = """
import resource, sys
from tidkit.hashing import hash_image
from tidkit.scan import keep_freed_memory
keep_freed_memory()
hash_image(sys.argv[1], mode="fast")
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(4):
    hash_image(sys.argv[1], mode="fast")
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) // 4)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_a_hashing_process_reuses_the_memory_of_the_previous_file(tmp_path):
    """Without keep_freed_memory glibc returns the ~20 MB a 12 MP photo needs after every file
    and faults it back in for the next (about 5,000 page faults, a sixth of the CPU time)."""
    photo = corpus.photo("chelsea.png").convert("RGB").resize((4000, 3000))
    path = tmp_path / "photo.jpg"
    path.write_bytes(corpus.encode(photo, "JPEG", quality=92))

    probe = subprocess.run(
        [sys.executable, "-c", MEMORY_PROBE, str(path)],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    )

    assert int(probe.stdout) < 500  # page faults a file


@pytest.fixture(scope="module")
def slow_copies(tmp_path_factory):  # noqa: ANN001, ANN201
    """Large PNG copies of a listed photo: each takes a worker a noticeable time to decode."""
    folder = tmp_path_factory.mktemp("slow")
    big = corpus.photo("coffee.png").convert("RGB").resize((2400, 1600), Image.Resampling.BICUBIC)
    for n in range(16):
        (folder / f"copy-{n:02d}.png").write_bytes(corpus.encode(big.rotate(n / 4), "PNG"))
    return folder


@pytest.mark.parametrize("pause", [0.0, 1.0], ids=["at-once", "after-the-pool-noticed"])
def test_a_crashed_hashing_process_costs_only_the_files_in_flight(synced, slow_copies, pause):
    """Kill the hashing workers mid-scan (as a decoder segfault or the OOM killer would): the
    files in flight are reported as crashed, a fresh pool hashes the rest, in order. With a
    pause, the pool knows it is broken before the scan hands it the next file."""
    local = synced[0]
    workers = 2
    results = scan([slow_copies], local, workers=workers)
    first = next(results)
    workers_seen = _hashing_workers()
    assert len(workers_seen) >= workers
    for pid in workers_seen:
        os.kill(pid, signal.SIGKILL)
    time.sleep(pause)
    rest = list(results)

    everything = [first, *rest]
    assert [r.path for r in everything] == list(iter_files([slow_copies]))
    crashed = [r for r in everything if r.error and r.error["code"] == "crashed"]
    assert 1 <= len(crashed) <= workers * IN_FLIGHT_PER_WORKER
    assert "crashed on this file or on one hashed alongside it" in crashed[0].error["message"]
    assert all(r.matches for r in everything if r not in crashed)
