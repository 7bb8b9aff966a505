"""Hash files on all cores and match them against a synced list (``tidkit scan``).

Files are hashed in worker processes started with ``forkserver`` (``spawn`` where there is no
forkserver): never ``fork``, which would copy a parent whose NumPy or FFmpeg threads may hold
locks. Matching happens in the parent, against one copy of the list. Results come back in the
order the files were given, while at most a few files per worker are in flight, so memory stays
flat over millions of files.

A file that cannot be hashed (unreadable, damaged, not media) is a result with an ``error``,
never an exception: one bad file must not stop a scan of a million.
"""

import itertools
import multiprocessing
import os
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from tidkit import hashing
from tidkit.errors import HashingError
from tidkit.store import LocalList, Match

__all__ = ["ProgressBar", "ScanResult", "available_cores", "hash_file", "iter_files", "scan"]

# Suffixes are hints only (hash_file tells media apart by content); these skip a wasted decode.
VIDEO_SUFFIXES = frozenset(
    ".mp4 .m4v .mov .webm .mkv .avi .wmv .flv .3gp .3g2 .mpg .mpeg .ts .mts .m2ts .ogv".split()  # noqa: SIM905
)
IMAGE_SUFFIXES = frozenset(
    ".jpg .jpeg .jpe .png .gif .webp .bmp .tif .tiff .heic .heif .avif .ico".split()  # noqa: SIM905
)
IN_FLIGHT_PER_WORKER = 4


@dataclass
class ScanResult:
    """One file's outcome: its hashes and matches, or why it could not be hashed."""

    path: str
    media_type: str | None = None
    hashes: dict[str, Any] | None = None
    matches: list[Match] = field(default_factory=list)
    error: dict[str, str] | None = None  # {"code", "message"}
    scanned_at: str = ""

    def to_json(self) -> dict[str, Any]:
        """The JSON Lines object of ``tidkit scan --json`` (and the input of ``tidkit report``)."""
        hashes = None
        if self.hashes is not None:
            hashes = {k: v for k, v in self.hashes.items() if k != "media_type"}
        return {
            "path": self.path,
            "media_type": self.media_type,
            "hashes": hashes,
            "matches": [m.to_json() for m in self.matches],
            "error": self.error,
            "scanned_at": self.scanned_at,
        }


def iter_files(paths: Iterable[str | os.PathLike[str]]) -> Iterator[str]:
    """Each path given, with directories walked recursively (sorted, symlinked directories not
    followed). A path that does not exist is yielded as is, so that it is reported."""
    for raw in paths:
        path = os.fspath(raw)
        if not os.path.isdir(path):
            yield path
            continue
        for root, dirs, files in os.walk(path):
            dirs.sort()
            for name in sorted(files):
                yield os.path.join(root, name)


def hash_file(path: str | os.PathLike[str], *, mode: hashing.Mode = "fast") -> dict[str, Any]:
    """Hash an image or a video, telling them apart by content (the suffix is only a hint).

    Raises HashingError for files that are neither, or cannot be read.
    """
    suffix = Path(path).suffix.lower()
    if suffix in VIDEO_SUFFIXES:
        return hashing.hash_video(path)
    try:
        return hashing.hash_image(path, mode=mode)
    except HashingError as image_error:
        if image_error.code != "unsupported" or suffix in IMAGE_SUFFIXES:
            raise
        try:
            return hashing.hash_video(path)
        except HashingError:
            raise HashingError(
                "The file is not an image or a video this tool can read.", code="unsupported"
            ) from None


def scan(
    paths: Iterable[str | os.PathLike[str]],
    local: LocalList,
    *,
    workers: int | None = None,
    mode: hashing.Mode = "fast",
    on_progress: Callable[[int, int], None] | None = None,
    **thresholds: Any,
) -> Iterator[ScanResult]:
    """Hash every file under ``paths`` and match it against ``local``; yield one result per file
    in order. ``workers`` defaults to every core; 1 hashes in this process. ``thresholds`` are
    passed to LocalList.match (stricter distances, if wanted). ``on_progress(done, total)`` is
    called after each file."""
    files = list(iter_files(paths))
    workers = workers or available_cores()
    hashed = (
        map(_hash_task, files, [mode] * len(files))
        if workers == 1 or len(files) <= 1
        else _hash_in_pool(files, mode, workers)
    )
    for done, (path, hashes, error) in enumerate(hashed, start=1):
        result = ScanResult(path=path, error=error, scanned_at=_now())
        if hashes is not None:
            result.media_type, result.hashes = hashes["media_type"], hashes
            result.matches = local.match(hashes, **thresholds)
        if on_progress:
            on_progress(done, len(files))
        yield result


Hashed = tuple[str, dict[str, Any] | None, dict[str, str] | None]


def _hash_task(path: str, mode: hashing.Mode) -> Hashed:
    """Runs in a worker: the file's hashes, or the reason it has none."""
    try:
        return path, hash_file(path, mode=mode), None
    except HashingError as exc:
        return path, None, {"code": exc.code, "message": str(exc)}
    except (OSError, MemoryError) as exc:
        return path, None, {"code": "unreadable", "message": f"The file cannot be read: {exc}"}


def _hash_in_pool(files: list[str], mode: hashing.Mode, workers: int) -> Iterator[Hashed]:
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
    pending: Iterator[str] = iter(files)
    window: deque[tuple[str, Future[Hashed]]] = deque()
    executor = ProcessPoolExecutor(max_workers=workers, mp_context=context)
    try:
        while True:
            try:
                while len(window) < workers * IN_FLIGHT_PER_WORKER:
                    path = next(pending, None)
                    if path is None:
                        break
                    try:
                        window.append((path, executor.submit(_hash_task, path, mode)))
                    except BrokenProcessPool:
                        pending = itertools.chain([path], pending)  # never started: resubmit
                        raise
                if not window:
                    return
                result = window[0][1].result()
            except BrokenProcessPool:
                # A decoder crashed a worker (a segfault on a hostile file, the OOM killer), and
                # the pool with it. Files it had finished keep their results; those in flight
                # are reported; a fresh pool hashes the rest.
                executor.shutdown(wait=False, cancel_futures=True)
                executor = ProcessPoolExecutor(max_workers=workers, mp_context=context)
                lost = list(window)
                window.clear()
                yield from (_finished_or_crashed(path, future) for path, future in lost)
                continue
            window.popleft()
            yield result
    finally:
        executor.shutdown(wait=True, cancel_futures=True)


def _finished_or_crashed(path: str, future: Future[Hashed]) -> Hashed:
    if future.done() and not future.cancelled() and future.exception() is None:
        return future.result()
    message = (
        "A hashing process crashed on this file or on one hashed alongside it; scan it again "
        "on its own to tell which."
    )
    return path, None, {"code": "crashed", "message": message}


def available_cores() -> int:
    """The cores this process may run on (fewer than the machine's in a container or a cpuset)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class ProgressBar:
    """A one-line progress bar on a terminal: ``[#####.....]  120/400 files  35.2/s  ETA 8s``.
    Plain text, redrawn at most ten times a second."""

    def __init__(self, stream: TextIO = sys.stderr, *, width: int = 30, label: str = "files"):
        self.stream, self.width, self.label = stream, width, label
        self.started = time.monotonic()
        self._drawn = 0.0

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if done < total and now - self._drawn < 0.1:
            return
        self._drawn = now
        filled = self.width * done // total if total else self.width
        rate = done / max(now - self.started, 1e-9)
        eta = f"ETA {round((total - done) / rate)}s" if rate and done < total else "done"
        bar = "#" * filled + "." * (self.width - filled)
        line = f"\r[{bar}] {done}/{total} {self.label}  {rate:.1f}/s  {eta}"
        self.stream.write(line.ljust(72))
        if done >= total:
            self.stream.write("\n")
        self.stream.flush()
