"""Hash files on all cores and match them against a synced list (``tidkit scan``).

Files are hashed in worker processes started with ``forkserver`` (``spawn`` where there is no
forkserver): never ``fork``, which would copy a parent whose NumPy or FFmpeg threads may hold
locks. Matching happens in the parent, against one copy of the list. Results come back in the
order the files were given, while at most a few files per worker are in flight, so memory stays
flat over millions of files.

Where the time goes (bench/scan.py prints it): a worker spends the same CPU on an image as one
process alone does, and the parent about a millisecond a file on matching and bookkeeping, so
N cores scan nearly N times as fast as one. What a worker pays once is its start: the
forkserver imports the hashing code once for all the workers it forks (WORKER_PRELOAD). Each
worker keeps the memory a file freed for the next (keep_freed_memory) and decodes videos on one
thread. The parent hashes nothing while there are workers: a decoder that crashes on a hostile
file must take down a worker, never the scan.

A file that cannot be hashed (unreadable, damaged, not media) is a result with an ``error``,
never an exception: one bad file must not stop a scan of a million.
"""

import ctypes
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

__all__ = [
    "ProgressBar",
    "ScanResult",
    "available_cores",
    "hash_file",
    "iter_files",
    "keep_freed_memory",
    "scan",
]

# Suffixes are hints only (hash_file tells media apart by content); these skip a wasted decode.
VIDEO_SUFFIXES = frozenset(
    ".mp4 .m4v .mov .webm .mkv .avi .wmv .flv .3gp .3g2 .mpg .mpeg .ts .mts .m2ts .ogv".split()  # noqa: SIM905
)
IMAGE_SUFFIXES = frozenset(
    ".jpg .jpeg .jpe .png .gif .webp .bmp .tif .tiff .heic .heif .avif .ico".split()  # noqa: SIM905
)
IN_FLIGHT_PER_WORKER = 4
# Imported by the forkserver before it forks any worker, so each worker starts with them loaded
# instead of spending about 0.45 s of CPU importing them itself (half of it on scipy.fftpack,
# which imagehash.phash imports on its first call): a quarter of the CPU of a 48-photo scan on
# two cores. "__main__" is the forkserver's own default.
WORKER_PRELOAD = ("__main__", "tidkit.scan", "scipy.fftpack")
# glibc's mallopt parameters, and what keep_freed_memory sets them to.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_TRIM_THRESHOLD = 64 << 20
_MMAP_THRESHOLD = 32 << 20  # the most glibc's own adaptive threshold would reach


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


def hash_file(
    path: str | os.PathLike[str], *, mode: hashing.Mode = "fast", video_threads: int = 0
) -> dict[str, Any]:
    """Hash an image or a video, telling them apart by content (the suffix is only a hint).
    ``video_threads`` is passed to hash_video as ``threads``.

    Raises HashingError for files that are neither, or cannot be read.
    """
    suffix = Path(path).suffix.lower()
    if suffix in VIDEO_SUFFIXES:
        return hashing.hash_video(path, threads=video_threads)
    try:
        return hashing.hash_image(path, mode=mode)
    except HashingError as image_error:
        if image_error.code != "unsupported" or suffix in IMAGE_SUFFIXES:
            raise
        try:
            return hashing.hash_video(path, threads=video_threads)
        except HashingError:
            raise HashingError(
                "The file is not an image or a video this tool can read.", code="unsupported"
            ) from None


def keep_freed_memory() -> None:
    """Let malloc keep the memory one file's hashing freed for the next file (glibc only).

    Hashing a 12 MP photo in fast mode allocates and frees about 20 MB. By default glibc hands
    that back to the system as soon as a few megabytes are free at the top of the heap, and the
    next file faults it all in again: some 5,000 page faults, 10-15 ms of system CPU on top of
    about 55 ms of hashing. Keeping up to 64 MB free instead costs a process at most that much
    memory. Called in every hashing worker, and by ``tidkit scan`` for its own process; a
    library calling scan() with one worker decides for its own process.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)
    mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD)


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


def _hash_task(path: str, mode: hashing.Mode, video_threads: int = 0) -> Hashed:
    """Runs in a worker: the file's hashes, or the reason it has none."""
    try:
        return path, hash_file(path, mode=mode, video_threads=video_threads), None
    except HashingError as exc:
        return path, None, {"code": exc.code, "message": str(exc)}
    except (OSError, MemoryError) as exc:
        return path, None, {"code": "unreadable", "message": f"The file cannot be read: {exc}"}


def _hash_in_pool(files: list[str], mode: hashing.Mode, workers: int) -> Iterator[Hashed]:
    context = _worker_context()
    pending: Iterator[str] = iter(files)
    window: deque[tuple[str, Future[Hashed]]] = deque()
    executor = _pool(workers, context)
    try:
        while True:
            try:
                while len(window) < workers * IN_FLIGHT_PER_WORKER:
                    path = next(pending, None)
                    if path is None:
                        break
                    try:
                        # Videos decode on one thread: the workers already spread the files
                        # over the cores, and FFmpeg's threads would add 6-8% of CPU a video.
                        task = executor.submit(_hash_task, path, mode, 1)
                        window.append((path, task))
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
                executor = _pool(workers, context)
                lost = list(window)
                window.clear()
                yield from (_finished_or_crashed(path, future) for path, future in lost)
                continue
            window.popleft()
            yield result
    finally:
        executor.shutdown(wait=True, cancel_futures=True)


def _pool(workers: int, context: multiprocessing.context.BaseContext) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(workers, mp_context=context, initializer=keep_freed_memory)


def _worker_context() -> multiprocessing.context.BaseContext:
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    # The process has one forkserver, started by its first pool: the preload applies from then.
    context.set_forkserver_preload(list(WORKER_PRELOAD))
    return context


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
