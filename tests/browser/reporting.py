"""Shared steps for the reporter-site browser tests: real media files, a phone-sized page in a
given language, keyboard helpers, and the checks that no request carries a file.

The tests find things by role, label and the pages' ``data-testid`` hooks, never by layout.
"""

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from django.core.cache import cache
from django.test import RequestFactory
from playwright.sync_api import Browser, Page, Request, expect

from tests import corpus
from tidkit.formats import hamming_distance
from tidkit.hashing import hash_image

# DESIGN.md section 3: the browser's PDQ and pHash equal the Python references bit for bit on
# almost every photo and are "never more than 2 bits apart".
AGREED_BITS = 2
# Far above a report of a few hashes, far below any photo: a body this size cannot be a file.
MAX_BODY_BYTES = 64 * 1024
# Hashing a video in a headless browser on a busy machine takes a while.
HASH_TIMEOUT_MS = 120_000
PHONE = {"width": 390, "height": 844}


@dataclass
class Media:
    """Files as a reporter would pick them from their phone's gallery."""

    photo_jpeg: Path
    photo_png: Path
    video: Path
    text: Path
    broken_jpeg: Path

    @property
    def photos(self) -> list[Path]:
        return [self.photo_jpeg, self.photo_png]


def write_media(root: Path) -> Media:
    video = root / "clip.webm"
    corpus.write_video(
        video, [corpus.smooth_noise(7), corpus.smooth_noise(8)], codec="libvpx-vp9", fps=10
    )
    text = root / "notes.txt"
    text.write_text("Not a picture at all.\n")
    broken = root / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 this is not really a JPEG" * 10)
    jpeg = root / "astronaut.jpg"
    jpeg.write_bytes(corpus.encode(corpus.photo("astronaut.png").convert("RGB"), "JPEG"))
    png = root / "coffee.png"
    png.write_bytes(corpus.encode(corpus.photo("coffee.png"), "PNG"))
    return Media(photo_jpeg=jpeg, photo_png=png, video=video, text=text, broken_jpeg=broken)


def md5_of(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def assert_image_hashes_agree(item: dict, path: Path) -> None:
    """``item`` (from the page or the database) has the hashes tidkit computes for ``path``."""
    reference = hash_image(path)
    assert item["md5"] == reference["md5"] == md5_of(path)
    assert hamming_distance(item["pdq"], reference["pdq"]) <= AGREED_BITS, path.name
    assert hamming_distance(item["phash"], reference["phash"]) <= AGREED_BITS, path.name


def reset_throttles() -> None:
    """Forget the local client's request counts: every test starts as a first-time visitor.

    Only this client's keys are deleted: the cache is shared with other test runs.
    """
    from tidportal.clients import client_key

    key = client_key(RequestFactory().get("/", REMOTE_ADDR="127.0.0.1"))
    cache.delete_many([f"throttle:{scope}:{key}" for scope in ("public_report", "public_case")])


@dataclass
class Traffic:
    """Every request a page made, to check what left the browser."""

    origin: str
    requests: list[Request] = field(default_factory=list)

    def record(self, request: Request) -> None:
        if not request.url.startswith(("data:", "blob:")):
            self.requests.append(request)

    @property
    def api_calls(self) -> list[Request]:
        return [r for r in self.requests if "/api/" in r.url]

    def bodies(self, path: str) -> list[dict]:
        return [json.loads(r.post_data_buffer) for r in self.api_calls if r.url.endswith(path)]

    def assert_no_file_left_the_device(self, *files: Path) -> None:
        """Every request stayed on the site; every body is small JSON without any file's bytes."""
        assert self.requests, "the page made no requests at all?"
        for request in self.requests:
            assert request.url.startswith(self.origin), request.url
            body = request.post_data_buffer
            if body is None:
                continue
            assert len(body) < MAX_BODY_BYTES, (request.url, len(body))
            assert request.headers.get("content-type", "").startswith("application/json")
            json.loads(body)
            for path in files:
                # A 64-byte run from the middle of the file, where headers do not repeat.
                data = path.read_bytes()
                middle = len(data) // 2
                assert data[middle : middle + 64] not in body, path.name


@contextmanager
def phone_page(browser: Browser, origin: str, *, locale: str = "en-US") -> Iterator[Page]:
    """A phone-sized page in ``locale`` recording console errors and every request."""
    context = browser.new_context(viewport=PHONE, locale=locale)
    page = context.new_page()
    page.console_errors = []  # type: ignore[attr-defined]
    page.traffic = Traffic(origin)  # type: ignore[attr-defined]
    page.on("console", lambda m: m.type == "error" and page.console_errors.append(m.text))
    page.on("pageerror", lambda e: page.console_errors.append(str(e)))
    page.on("request", page.traffic.record)
    try:
        yield page
    finally:
        context.close()


def choose_files(page: Page, paths: list[Path]) -> None:
    page.get_by_test_id("file-input").set_input_files([str(p) for p in paths])


def wait_for_hashes(page: Page, count: int) -> None:
    try:
        expect(page.get_by_test_id("hashed-item")).to_have_count(count, timeout=HASH_TIMEOUT_MS)
        # And nothing still working.
        expect(page.locator("[data-state=hashing]")).to_have_count(0, timeout=HASH_TIMEOUT_MS)
    except AssertionError as exc:
        # Say what each file shows, so that a failure explains itself.
        files = page.locator("[data-file-list]").all_inner_texts()
        raise AssertionError(f"{exc}\nFiles on the page: {files}") from exc


def hashed_items(page: Page) -> list[dict]:
    """The hashes the page computed, read from the test hooks."""
    return page.get_by_test_id("hashed-item").evaluate_all(
        """items => items.map(el => ({
            media_type: el.dataset.mediaType, md5: el.dataset.md5, pdq: el.dataset.pdq,
            pdq_quality: el.dataset.pdqQuality, phash: el.dataset.phash,
            vpdq_frames: el.dataset.vpdqFrames,
        }))"""
    )


def focused(page: Page) -> dict:
    return page.evaluate(
        """() => { const el = document.activeElement; return {
            tag: el.tagName.toLowerCase(), id: el.id, testid: el.dataset.testid || "",
            text: (el.textContent || "").trim(), label: el.getAttribute("aria-label") || "",
            type: el.type || "", value: el.value || "" }; }"""
    )


def tab_to(page: Page, matches, *, limit: int = 40) -> dict:  # noqa: ANN001 - a predicate
    """Press Tab until the focused element satisfies ``matches``; fail after ``limit`` presses."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        current = focused(page)
        if matches(current):
            return current
    raise AssertionError(f"Tab never reached the element; last focused: {focused(page)}")


def assert_page_is_clean(page: Page) -> None:
    assert page.console_errors == []  # type: ignore[attr-defined]  # CSP violations show here
    # Nothing kept behind in the browser: no storage, and no cookie but the CSRF token.
    storage = page.evaluate("[localStorage.length, sessionStorage.length]")
    assert storage == [0, 0]
    assert {c["name"] for c in page.context.cookies()} <= {"csrftoken", "django_language"}
