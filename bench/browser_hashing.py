"""The reporter's browser against the C++ reference: hashing time per photo and per video.

    .venv/bin/python bench/browser_hashing.py [--rounds 5] [--skip-video]

Starts the project (manage.py runserver on a free loopback port, SQLite in a scratch folder),
opens headless Chromium (Debian's, with the browser tests' flags) and, in one run, side by side:

- a 12-megapixel JPEG: the browser's hashFile (static/tid/hashing.js: decode, MD5, PDQ and pHash)
  against pdqhash.compute (Meta's C++ PDQ, on pixels already decoded) and against tidkit's whole
  pipeline (decode, MD5, PDQ, pHash). Rounds are interleaved and the best of each is kept, so
  that no side gets a quieter moment of the machine. Goal: the browser within 2x of pdqhash.
- a 60-second 720p video (VP9 WebM, 30 fps, a keyframe every 2 s): the browser's hashFile (MD5
  plus one PDQ per second, seeking a <video> element), and tidkit.hash_video for reference.
  Goal: under 15 s.

It prints the figures and checks that the browser's hashes equal tidkit's; it asserts nothing.
The media are generated once into bench/.data/ (not in git).
"""

import argparse
import hashlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pdqhash
from PIL import Image
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests import corpus  # noqa: E402
from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS  # noqa: E402
from tidkit import formats  # noqa: E402
from tidkit.hashing import hash_image, hash_video  # noqa: E402

DATA = ROOT / "bench" / ".data"
PHOTO_SIZE = (4000, 3000)
VIDEO_SECONDS, VIDEO_FPS, VIDEO_SIZE = 60, 30, (1280, 720)

# Time hashFile on the first file of an input, inside the page (no Playwright round trip).
TIME_HASH_FILE = """
async (selector) => {
  const { hashFile } = await import("/static/tid/hashing.js");
  const file = document.querySelector(selector).files[0];
  const start = performance.now();
  const result = await hashFile(file);
  return { ms: performance.now() - start, result };
}
"""


def make_photo(path: Path) -> Path:
    """A camera-like 12 MP JPEG: a real photo upscaled, with film grain, at quality 92."""
    if not path.exists():
        rng = np.random.default_rng(12)
        big = corpus.photo("astronaut.png").convert("RGB").resize(PHOTO_SIZE, Image.BICUBIC)
        grain = rng.normal(0, 6, size=(PHOTO_SIZE[1], PHOTO_SIZE[0], 1))
        pixels = np.clip(np.asarray(big, dtype=np.int16) + grain, 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(path, quality=92)
    return path


def make_video(path: Path) -> Path:
    """60 s of 720p: slow pans across real photos, a new photo every 5 s, VP9 as phones' WebM."""
    if path.exists():
        return path
    import av

    photos = [
        np.asarray(corpus.photo(name).convert("RGB").resize((1600, 1000), Image.BICUBIC))
        for name in corpus.PHOTOS[:6]
    ]
    width, height = VIDEO_SIZE
    partial = path.with_suffix(".partial")
    with av.open(str(partial), mode="w", format="webm") as container:
        stream = container.add_stream("libvpx-vp9", rate=VIDEO_FPS)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.gop_size = 2 * VIDEO_FPS
        stream.options = {"deadline": "realtime", "cpu-used": "8", "row-mt": "1", "b": "2M"}
        per_photo = 5 * VIDEO_FPS
        for i in range(VIDEO_SECONDS * VIDEO_FPS):
            photo, step = photos[(i // per_photo) % len(photos)], i % per_photo
            frame = np.ascontiguousarray(photo[step : step + height, 2 * step : 2 * step + width])
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    partial.rename(path)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def project_server():
    """manage.py runserver on the embedded default (SQLite in a scratch folder, DEBUG so that
    WhiteNoise serves static files straight from STATICFILES_DIRS, node_modules included)."""
    port = free_port()
    with tempfile.TemporaryDirectory() as scratch:
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tidportal.settings.local",
            "DJANGO_DEBUG": "True",
            "DATABASE_URL": f"sqlite:///{scratch}/bench.sqlite3",
        }
        server = subprocess.Popen(  # noqa: S603 - this interpreter and this project's manage.py
            [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    # The loopback URL built above, never user input.
                    with urllib.request.urlopen(url + "/static/tid/hashing.js", timeout=2):  # noqa: S310
                        break
                except OSError:
                    if server.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(server.stderr.read().decode()) from None
                    time.sleep(0.3)
            yield url
        finally:
            server.terminate()
            server.wait(timeout=30)


def choose(page, path: Path) -> str:
    page.evaluate(
        """() => {
            document.getElementById("bench-input")?.remove();
            const input = Object.assign(document.createElement("input"), {type: "file"});
            input.id = "bench-input";
            document.body.append(input);
        }"""
    )
    page.set_input_files("#bench-input", str(path))
    return "#bench-input"


def seconds(fn) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def bench_photo(page, path: Path, rounds: int) -> None:
    pixels = np.asarray(Image.open(path).convert("RGB"))
    selector = choose(page, path)
    # Warm up each side once: module loading and the JIT, imports and caches.
    page.evaluate(TIME_HASH_FILE, selector)
    pdqhash.compute(pixels)
    hash_image(path)
    browser_ms, pdq_ms, tidkit_ms = [], [], []
    for _ in range(rounds):
        measured = page.evaluate(TIME_HASH_FILE, selector)
        browser_ms.append(measured["ms"])
        pdq_ms.append(1000 * seconds(lambda: pdqhash.compute(pixels))[0])
        elapsed, reference = seconds(lambda: hash_image(path))
        tidkit_ms.append(1000 * elapsed)
    same = measured["result"] == reference
    mb = path.stat().st_size / 1e6
    print(f"\n12-megapixel JPEG ({PHOTO_SIZE[0]}x{PHOTO_SIZE[1]}, {mb:.1f} MB), {rounds} rounds")
    print(f"{'':44}{'best ms':>9}{'median ms':>11}")
    rows = [
        ("browser hashFile (decode+MD5+PDQ+pHash)", browser_ms),
        ("pdqhash.compute (C++ PDQ on decoded pixels)", pdq_ms),
        ("tidkit hash_image (decode+MD5+PDQ+pHash)", tidkit_ms),
    ]
    for name, values in rows:
        print(f"{name:44}{min(values):>9.0f}{statistics.median(values):>11.0f}")
    ratio = min(browser_ms) / min(pdq_ms)
    print(f"browser / pdqhash: {ratio:.2f}x (goal <= 2x); ", end="")
    print(f"browser / tidkit: {min(browser_ms) / min(tidkit_ms):.2f}x")
    print(f"browser hashes equal tidkit's (MD5, PDQ, quality, pHash): {same}")


def bench_video(page, path: Path) -> None:
    measured = page.evaluate(TIME_HASH_FILE, choose(page, path))
    tidkit_s, reference = seconds(lambda: hash_video(path))
    ours = measured["result"]
    query_pct, listed_pct = formats.vpdq_match_percentages(ours["vpdq"], reference["vpdq"])
    md5 = hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()
    md5_same = ours["md5"] == reference["md5"] == md5
    print(f"\n{VIDEO_SECONDS}-second {VIDEO_SIZE[1]}p video (VP9 WebM, {VIDEO_FPS} fps, ", end="")
    print(f"{path.stat().st_size / 1e6:.1f} MB)")
    frames = len(ours["vpdq"])
    print(f"browser hashFile: {measured['ms'] / 1000:.1f} s for {frames} frames (goal < 15 s)")
    print(f"tidkit hash_video: {tidkit_s:.1f} s for {len(reference['vpdq'])} frames")
    print(f"MD5 equal: {md5_same}; vPDQ match with tidkit: {query_pct:.0f}% / {listed_pct:.0f}%")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds per photo side")
    parser.add_argument("--skip-video", action="store_true", help="only the photo")
    args = parser.parse_args()
    DATA.mkdir(parents=True, exist_ok=True)
    print("preparing media in bench/.data/ (first run only) ...", flush=True)
    photo = make_photo(DATA / "photo-12mp.jpg")
    video = None if args.skip_video else make_video(DATA / "video-60s-720p.webm")
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    with project_server() as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.set_default_timeout(600_000)
        page.goto(url + "/healthz")
        bench_photo(page, photo, args.rounds)
        if video:
            bench_video(page, video)
        browser.close()


if __name__ == "__main__":
    main()
