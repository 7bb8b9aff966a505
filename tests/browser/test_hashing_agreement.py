"""The browser's hashing library (static/tid/hashing.js) agrees with tidkit.hashing.

DESIGN.md section 3: MD5 identical; PDQ identical to the C++ reference (pdqhash) and pHash
identical to imagehash on at least 99% of real photos and their variants, never more than 2 bits
apart; Meta's conformance bar (within 10 bits whenever quality >= 80) everywhere; videos' vPDQ
frames match tidkit's under the vPDQ rule. Measured here in headless Chromium on files fed
through a real <input type=file>, as a reporter's files arrive. ``pytest -s`` prints the
distribution of distances.
"""

import base64
import hashlib
import random
import zlib
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests import corpus
from tidkit import HashingError, formats
from tidkit.hashing import hash_image, hash_video

AGREED_BITS = 2  # "never more than 2 bits apart"
MIN_IDENTICAL = 0.99  # "identical on at least 99%"
META_BITS, META_QUALITY = 10, 80  # Meta's PDQ conformance bar
HASH_TIMEOUT_MS = 120_000

# The live server's home page reads the test database once (see hashing_page), which must exist;
# the tests themselves touch no data (each runs in a transaction rolled back, which is cheap).
# Transactional: it shares the live server, whose tests pytest-django runs after the plain
# database tests (a live server flushes the database when it is done).
pytestmark = pytest.mark.django_db(transaction=True)

# Hash every file of the page's file input, one at a time; failures become {error, code}.
HASH_INPUT = """
async (selector) => {
  const { hashFile } = await import("/static/tid/hashing.js");
  const results = {};
  for (const file of document.querySelector(selector).files) {
    const progress = [];
    try {
      const result = await hashFile(file, { onProgress: (f) => progress.push(f) });
      results[file.name] = { ...result, progress };
    } catch (error) {
      results[file.name] = { error: error.message, code: error.code, name: error.name };
    }
  }
  return results;
}
"""

# Send the input's first file through a real module Worker; collect every message about it.
HASH_IN_WORKER = """
async (selector) => {
  const file = document.querySelector(selector).files[0];
  const worker = new Worker("/static/tid/hash-worker.js", { type: "module" });
  try {
    return await new Promise((resolve, reject) => {
      const messages = [];
      worker.onerror = (event) => reject(new Error(event.message || "worker failed to start"));
      worker.onmessage = ({ data }) => {
        messages.push(data);
        if (data.type !== "progress") resolve(messages);
      };
      worker.postMessage({ id: "file-1", file });
    });
  } finally {
    worker.terminate();
  }
}
"""

# The canonical pixels image.js decodes, as base64 RGBA.
DECODE_INPUT = """
async (selector) => {
  const { decodeCanonical, sniff } = await import("/static/tid/image.js");
  const file = document.querySelector(selector).files[0];
  const { width, height, data } = await decodeCanonical(file, (await sniff(file)).format);
  let binary = "";
  for (let i = 0; i < data.length; i += 0x8000) {
    binary += String.fromCharCode.apply(null, data.subarray(i, i + 0x8000));
  }
  return { width, height, rgba: btoa(binary) };
}
"""


def choose_files(page, paths: list[Path]) -> str:
    """Put ``paths`` in a fresh <input type=file multiple>, as a reporter picking them."""
    selector = "#hashing-agreement-input"
    page.evaluate(
        """(id) => {
            document.getElementById(id)?.remove();
            const input = document.createElement("input");
            input.type = "file";
            input.multiple = true;
            input.id = id;
            document.body.append(input);
        }""",
        selector[1:],
    )
    page.set_input_files(selector, [str(p) for p in paths])
    return selector


def hash_in_browser(page, paths: list[Path]) -> dict[str, dict]:
    return page.evaluate(HASH_INPUT, choose_files(page, paths))


def distance(a: str, b: str) -> int:
    return formats.hamming_distance(a, b)


@pytest.fixture(scope="module")
def hashing_page(request, browser, django_db_setup, django_db_blocker):
    """The reporter site's home page (its real Content-Security-Policy) with nothing else open.

    Shared by the module's tests: after this first load the page only fetches static files, so
    the tests need no transactional database. live_server is requested here, dynamically, so that
    pytest-django does not give every test one (an emptying of every table after each test,
    seconds apiece).
    """
    live_server = request.getfixturevalue("live_server")
    context = browser.new_context(locale="en-US")
    context.set_default_timeout(HASH_TIMEOUT_MS)
    page = context.new_page()
    with django_db_blocker.unblock():  # the home page reads the partner list; nothing is written
        response = page.goto(live_server.url + "/")
    assert response is not None and response.ok
    assert "script-src 'self'" in response.headers["content-security-policy"]
    yield page
    context.close()


@pytest.fixture(scope="module")
def corpus_agreement(hashing_page, photo_corpus):
    """Every corpus file hashed by the browser and by tidkit: [(file, browser, tidkit)]."""
    # tidkit works on the second core while the browser hashes.
    with ThreadPoolExecutor(max_workers=1) as pool:
        theirs = pool.map(hash_image, [f.path for f in photo_corpus])
        ours = hash_in_browser(hashing_page, [f.path for f in photo_corpus])
        return [(f, ours[f.path.name], t) for f, t in zip(photo_corpus, theirs, strict=True)]


def test_every_corpus_file_hashes_like_tidkit(corpus_agreement):
    pdq_distances, phash_distances, quality_gaps = Counter(), Counter(), Counter()
    for item, ours, theirs in corpus_agreement:
        assert "error" not in ours, (str(item), ours)
        assert ours["media_type"] == "image"
        assert ours["md5"] == theirs["md5"] == hashlib.md5(item.path.read_bytes()).hexdigest()
        pdq_distances[distance(ours["pdq"], theirs["pdq"])] += 1
        phash_distances[distance(ours["phash"], theirs["phash"])] += 1
        quality_gaps[abs(ours["pdq_quality"] - theirs["pdq_quality"])] += 1
    n = len(corpus_agreement)
    print(f"\nbrowser vs tidkit on {n} corpus files (distance in bits: files)")
    print(f"  PDQ     {dict(sorted(pdq_distances.items()))}")
    print(f"  pHash   {dict(sorted(phash_distances.items()))}")
    print(f"  quality {dict(sorted(quality_gaps.items()))} (absolute difference: files)")
    assert pdq_distances[0] >= MIN_IDENTICAL * n
    assert phash_distances[0] >= MIN_IDENTICAL * n
    assert quality_gaps[0] >= MIN_IDENTICAL * n
    assert max(pdq_distances) <= AGREED_BITS
    assert max(phash_distances) <= AGREED_BITS
    assert max(quality_gaps) <= 1


def test_meta_conformance_floor_holds_on_every_file(corpus_agreement):
    for item, ours, theirs in corpus_agreement:
        if max(ours["pdq_quality"], theirs["pdq_quality"]) >= META_QUALITY:
            assert distance(ours["pdq"], theirs["pdq"]) <= META_BITS, str(item)


def test_every_variant_kind_is_covered_and_progress_runs_to_one(corpus_agreement):
    variants = {item.variant for item, _, _ in corpus_agreement}
    assert {"transparent-png", "exif-rotate-6-jpeg", "grayscale", "webp"} <= variants
    for item, ours, _ in corpus_agreement:
        progress = ours["progress"]
        assert progress == sorted(progress), str(item)
        assert progress[0] == 0 and progress[-1] == 1, str(item)


def test_every_exif_orientation_in_every_format_is_applied_as_pillow_does(hashing_page, tmp_path):
    # Chromium applies EXIF orientation itself to JPEG and PNG but not to WebP, which Pillow
    # rotates too: hashing.js must end up with Pillow's upright pixels in all three.
    upright = corpus.photo("chelsea.png").convert("RGB")
    formats_ = {"jpg": ("JPEG", {"quality": 90}), "png": ("PNG", {}), "webp": ("WEBP", {})}
    paths = []
    for suffix, (fmt, params) in formats_.items():
        for orientation in range(2, 9):
            path = tmp_path / f"o{orientation}.{suffix}"
            path.write_bytes(corpus.with_orientation(upright, orientation, fmt, **params))
            paths.append(path)
    results = hash_in_browser(hashing_page, paths)
    for path in paths:
        theirs = hash_image(path)
        assert {k: results[path.name][k] for k in theirs} == theirs, path.name


def every_colour_and_alpha() -> Image.Image:
    """256x256 RGBA: x is the colour level, y the alpha, so each (level, alpha) pair occurs."""
    level = np.arange(256, dtype=np.uint8)
    rgba = np.empty((256, 256, 4), dtype=np.uint8)
    rgba[..., 0] = level[None, :]
    rgba[..., 1] = level[::-1][None, :]
    rgba[..., 2] = (level[None, :].astype(int) * 7 % 256).astype(np.uint8)
    rgba[..., 3] = level[:, None]
    return Image.fromarray(rgba, "RGBA")


@pytest.mark.parametrize(
    ("fmt", "suffix", "params"),
    [("PNG", "png", {}), ("WEBP", "webp", {"lossless": True})],
    ids=["png", "lossless-webp"],
)
def test_transparency_is_composited_over_white_exactly_as_pillow_does(
    hashing_page, tmp_path, fmt, suffix, params
):
    image = every_colour_and_alpha()
    path = tmp_path / f"alpha.{suffix}"
    path.write_bytes(corpus.encode(image, fmt, **params))
    decoded = hashing_page.evaluate(DECODE_INPUT, choose_files(hashing_page, [path]))
    ours = np.frombuffer(base64.b64decode(decoded["rgba"]), np.uint8).reshape(256, 256, 4)
    white = Image.new("RGBA", image.size, (255, 255, 255, 255))
    pillow = np.asarray(Image.alpha_composite(white, Image.open(path).convert("RGBA")))
    assert (ours[..., 3] == 255).all()
    assert np.array_equal(ours[..., :3], pillow[..., :3])


@pytest.mark.parametrize(
    "image",
    [
        Image.new("RGB", (400, 300), (0, 0, 0)),
        Image.new("RGB", (640, 480), (90, 140, 200)),
        Image.new("RGBA", (200, 200), (0, 0, 0, 0)),
        Image.fromarray(np.tile(np.linspace(0, 255, 640).astype(np.uint8), (480, 1))),
    ],
    ids=["black", "flat-colour", "transparent", "gradient"],
)
def test_featureless_pictures_hash_like_tidkit_and_stay_unpublishable(
    hashing_page, tmp_path, image
):
    # Flat and mirror-symmetric pictures put DCT coefficients exactly at the median: the ties
    # must fall as they do in scipy and the C++ reference, not by rounding noise.
    path = tmp_path / "flat.png"
    path.write_bytes(corpus.encode(image, "PNG"))
    ours = hash_in_browser(hashing_page, [path])["flat.png"]
    theirs = hash_image(path)
    assert {k: ours[k] for k in theirs} == theirs
    assert not formats.phash_publishable(ours["phash"])
    assert not formats.pdq_publishable(ours["pdq_quality"])


def test_an_animated_gif_hashes_its_first_frame(hashing_page, tmp_path):
    frames = [corpus.smooth_noise(seed) for seed in (1, 2, 3)]
    gif = tmp_path / "animated.gif"
    gif.write_bytes(
        corpus.encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=200)
    )
    first = tmp_path / "first.png"
    first.write_bytes(corpus.encode(Image.open(gif).convert("RGB"), "PNG"))
    results = hash_in_browser(hashing_page, [gif, first])
    ours, theirs = results["animated.gif"], hash_image(gif)
    assert (ours["md5"], ours["pdq"], ours["phash"]) == (
        theirs["md5"],
        theirs["pdq"],
        theirs["phash"],
    )
    assert (ours["pdq"], ours["phash"]) == (
        results["first.png"]["pdq"],
        results["first.png"]["phash"],
    )


def png_claiming_size(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims a huge image (a decompression bomb)."""
    data = bytearray(corpus.encode(Image.new("L", (8, 8)), "PNG"))
    ihdr = 8 + 8
    data[ihdr : ihdr + 8] = width.to_bytes(4, "big") + height.to_bytes(4, "big")
    data[ihdr + 13 : ihdr + 17] = zlib.crc32(bytes(data[ihdr - 4 : ihdr + 13])).to_bytes(4, "big")
    return bytes(data)


JPEG = corpus.encode(corpus.photo("coffee.png").convert("RGB"), "JPEG", quality=90)
PNG = corpus.encode(corpus.photo("chelsea.png").convert("RGB"), "PNG")
BAD_FILES = {
    "empty.jpg": (b"", "empty"),
    "notes.txt": (b"hello, this is a text file\n" * 20, "unsupported"),
    "noise.bin": (random.Random(4).randbytes(4096), "unsupported"),
    "document.pdf": (b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n", "unsupported"),
    "half.jpg": (JPEG[: len(JPEG) // 2], "truncated"),
    "cut.png": (PNG[: len(PNG) * 9 // 10], "truncated"),
    "bomb.png": (png_claiming_size(40_000, 40_000), "too_large"),
}


def test_files_that_cannot_be_hashed_reject_with_tidkits_code_and_a_sentence(
    hashing_page, tmp_path
):
    paths = []
    for name, (data, _) in BAD_FILES.items():
        (tmp_path / name).write_bytes(data)
        paths.append(tmp_path / name)
    results = hash_in_browser(hashing_page, paths)
    for name, (data, code) in BAD_FILES.items():
        outcome = results[name]
        assert outcome.get("code") == code, (name, outcome)
        assert outcome["name"] == "HashingError"
        message = outcome["error"]
        assert message.endswith(".") and message[0].isupper() and len(message) > 15, message
        with pytest.raises(HashingError) as info:
            hash_image(data)
        assert getattr(info.value, "code", None) == code, name


def test_md5_is_read_in_slices_and_exact_across_their_boundaries(hashing_page, photo_corpus):
    # Videos of gigabytes are read a slice at a time; an odd slice size puts boundaries anywhere.
    item = max(photo_corpus, key=lambda f: f.path.stat().st_size)
    outcome = hashing_page.evaluate(
        """async (selector) => {
            const { md5File } = await import("/static/tid/md5.js");
            const slices = [];
            const file = document.querySelector(selector).files[0];
            const onProgress = (fraction) => slices.push(fraction);
            const md5 = await md5File(file, { chunkBytes: 65_537, onProgress });
            return { md5, slices };
        }""",
        choose_files(hashing_page, [item.path]),
    )
    assert outcome["md5"] == hashlib.md5(item.path.read_bytes()).hexdigest()
    assert len(outcome["slices"]) == -(-item.path.stat().st_size // 65_537) > 10
    assert outcome["slices"][-1] == 1


def test_the_worker_sends_progress_then_the_result(hashing_page, photo_corpus):
    item = next(f for f in photo_corpus if f.variant == "jpeg-q90")
    messages = hashing_page.evaluate(HASH_IN_WORKER, choose_files(hashing_page, [item.path]))
    *progress, last = messages
    assert progress and all(m["type"] == "progress" and m["id"] == "file-1" for m in progress)
    fractions = [m["fraction"] for m in progress]
    assert fractions == sorted(fractions) and fractions[0] >= 0 and fractions[-1] == 1
    assert last == {"id": "file-1", "type": "result", "result": hash_image(item.path)}


def test_the_worker_refuses_damaged_files_and_hands_videos_back_to_the_page(hashing_page, tmp_path):
    broken = tmp_path / "half.jpg"
    broken.write_bytes(BAD_FILES["half.jpg"][0])
    *_, last = hashing_page.evaluate(HASH_IN_WORKER, choose_files(hashing_page, [broken]))
    assert last["type"] == "error" and last["code"] == "truncated" and last["id"] == "file-1"
    assert last["message"].endswith(".")
    video = corpus.write_video(tmp_path / "clip.webm", [corpus.smooth_noise(5)], codec="libvpx-vp9")
    messages = hashing_page.evaluate(HASH_IN_WORKER, choose_files(hashing_page, [video]))
    assert messages[-1]["type"] == "error" and messages[-1]["code"] == "video_in_window"


SCENES = ["astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png"]


def can_play(page, mime: str) -> bool:
    return page.evaluate("(m) => document.createElement('video').canPlayType(m) !== ''", mime)


@pytest.mark.parametrize(
    ("codec", "suffix", "mime"),
    [
        ("libvpx-vp9", "webm", 'video/webm; codecs="vp9"'),
        ("libx264", "mp4", 'video/mp4; codecs="avc1.64001e"'),
    ],
    ids=["vp9-webm", "h264-mp4"],
)
def test_a_video_hashes_like_tidkit_under_the_vpdq_rule(
    hashing_page, tmp_path, codec, suffix, mime
):
    if not can_play(hashing_page, mime):
        pytest.skip(f"this Chromium cannot play {mime} (Debian builds may lack H.264)")
    path = corpus.write_video(
        tmp_path / f"slideshow.{suffix}", [corpus.photo(n) for n in SCENES], codec=codec
    )
    ours = hash_in_browser(hashing_page, [path])[path.name]
    theirs = hash_video(path)
    assert ours["media_type"] == "video"
    assert ours["md5"] == theirs["md5"] == hashlib.md5(path.read_bytes()).hexdigest()
    assert [f["t"] for f in ours["vpdq"]] == [f["t"] for f in theirs["vpdq"]] == [0, 1, 2, 3, 4]
    gaps = [distance(a["pdq"], b["pdq"]) for a, b in zip(ours["vpdq"], theirs["vpdq"], strict=True)]
    print(f"\n{suffix}: per-frame PDQ distance browser vs tidkit: {gaps}")
    assert formats.validate_vpdq(ours["vpdq"]) == ours["vpdq"]
    query_pct, listed_pct = formats.vpdq_match_percentages(ours["vpdq"], theirs["vpdq"])
    assert formats.vpdq_is_match(query_pct, listed_pct)
    assert (query_pct, listed_pct) == (100.0, 100.0)
    progress = ours["progress"]
    assert progress == sorted(progress) and progress[-1] == 1


@pytest.mark.parametrize("rotation", [90, -90, 180])
def test_a_phone_video_stored_sideways_hashes_upright_like_tidkit(hashing_page, tmp_path, rotation):
    # Phones store portrait video sideways with a display matrix; Chromium shows it turned,
    # and tidkit must hash the frames turned the same way, or the copy never matches.
    if not can_play(hashing_page, 'video/mp4; codecs="avc1.64001e"'):
        pytest.skip("this Chromium cannot play H.264 in MP4")
    size = (240, 320) if rotation % 180 else (320, 240)
    sideways = [corpus.photo(n).rotate(-rotation, expand=True) for n in SCENES]
    path = corpus.write_video(tmp_path / "phone.mp4", sideways, size=size, rotation=rotation)
    ours = hash_in_browser(hashing_page, [path])[path.name]["vpdq"]
    theirs = hash_video(path)["vpdq"]
    assert [f["t"] for f in ours] == [f["t"] for f in theirs] == [0, 1, 2, 3, 4]
    for a, b in zip(ours, theirs, strict=True):
        assert distance(a["pdq"], b["pdq"]) <= formats.VPDQ_FRAME_DISTANCE
    assert formats.vpdq_match_percentages(ours, theirs) == (100.0, 100.0)


def test_video_frames_are_taken_at_each_second_by_timestamp(hashing_page, tmp_path):
    # 2.5 s at 4 fps whose first frame starts at 0.5 s: tidkit samples seconds 0, 1 and 2, and
    # second 0 shows the first frame. The browser must pick the same frames.
    path = corpus.write_video(
        tmp_path / "late.webm",
        [corpus.smooth_noise(1), corpus.smooth_noise(2)],
        seconds_per_scene=1.25,
        fps=4,
        start_offset_frames=2,
        codec="libvpx-vp9",
    )
    ours = hash_in_browser(hashing_page, [path])["late.webm"]["vpdq"]
    theirs = hash_video(path)["vpdq"]
    assert [f["t"] for f in ours] == [f["t"] for f in theirs] == [0, 1, 2]
    for a, b in zip(ours, theirs, strict=True):
        assert distance(a["pdq"], b["pdq"]) <= formats.VPDQ_FRAME_DISTANCE


def test_a_video_the_browser_cannot_play_rejects_readably(hashing_page, tmp_path):
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"\x00\x00\x00\x18ftypmp42" + random.Random(2).randbytes(20_000))
    outcome = hash_in_browser(hashing_page, [garbage])["garbage.mp4"]
    assert outcome["code"] == "unreadable", outcome
    assert outcome["error"].endswith(".") and "video" in outcome["error"]
