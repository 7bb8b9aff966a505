"""Images per second for `tidkit scan` on 12-megapixel JPEGs: one process, then every core.

    .venv/bin/python bench/scan.py [--count 48] [--passes 4] [--entries 100000]

Hashes camera-like 4000x3000 JPEGs (bench/hashing.py's corpus; each of ``--count`` files is
scanned ``--passes`` times, so that the workers' start is a small part of the run, as in a real
scan) with tidkit.scan.scan in fast mode and matches each against a list of random MD5, PDQ and
pHash entries, as `tidkit scan` does: first in this process, then with a worker per core
(forkserver). Prints images per second for both and the speed-up, and where the time goes: CPU
time per image in the parent (matching, bookkeeping) and in the workers (hashing), which unlike
wall time does not depend on what else the machine runs. From those, the speed-up that idle
cores would give: cores x (CPU per image in one process) / (CPU per image with workers, parent
and workers together). And the start: how long until the first result, and the CPU the
forkserver spends importing the hashing code once for all workers (tidkit.scan.WORKER_PRELOAD).

Worker CPU is read from /proc (Linux); elsewhere it prints as n/a.

Measured 2026-11-25 on the 2-core development VM, otherwise idle, defaults (192 images):

                   images/s   CPU ms/image: parent  workers    total
      1 process        17.8                   56.1       -    56.1
      2 workers        33.2                    0.8    55.8    56.6
      speed-up: 1.86x on 2 core(s); idle cores would give 1.98x
      start: first result after 0.36 s with workers; the forkserver's imports: 0.39 s of CPU

Before the forkserver preloaded the hashing code and workers kept freed memory for the next
file, the same run gave 1.4x: each worker spent 0.5 s of CPU importing (scipy.fftpack for
pHash) and 11-15 ms of system CPU per image on page faults (glibc returned each image's ~20 MB
to the system after every file).
"""

import argparse
import multiprocessing
import os
import random
import resource
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.hashing import make_corpus  # noqa: E402
from tidkit.scan import available_cores, keep_freed_memory, scan  # noqa: E402
from tidkit.store import Entry, LocalList  # noqa: E402

CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def random_list(count: int) -> LocalList:
    rng = random.Random(1)

    def entries():  # noqa: ANN202
        for n in range(count):
            hash_type, width = [("md5", 32), ("pdq", 64), ("phash", 16)][n % 3]
            yield Entry(
                str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                hash_type,
                f"{rng.getrandbits(width * 4):0{width}x}",
                "image",
                90 if hash_type == "pdq" else None,
            )

    return LocalList.from_entries(entries())


def process_cpu(pid: int) -> float | None:
    """CPU seconds (user + system) a process has used, itself only; None if unknown."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def forkserver_pid() -> int | None:
    """The forkserver this process started (tidkit.scan's workers are its children)."""
    try:
        children = Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children").read_text().split()
    except OSError:
        return None
    for child in map(int, children):
        try:
            if b"forkserver" in Path(f"/proc/{child}/cmdline").read_bytes():
                return child
        except OSError:
            continue
    return None


@dataclass
class Run:
    images: int
    wall: float
    first_result: float
    parent_cpu: float
    worker_cpu: float | None  # None: no workers, or their CPU time is unknown

    @property
    def rate(self) -> float:
        return self.images / self.wall

    def per_image(self, seconds: float | None) -> float | None:
        return None if seconds is None else seconds / self.images


def run(files: list[Path], local: LocalList, workers: int) -> Run:
    """Scan ``files``; worker CPU is sampled while results arrive and once after the last, before
    the pool shuts down (a worker's /proc entry goes with it)."""
    worker_cpu: dict[int, float | None] = {}

    def sample() -> None:
        for child in multiprocessing.active_children():
            if child.pid is not None:
                worker_cpu[child.pid] = process_cpu(child.pid)

    cpu_before, started = own_cpu(), time.perf_counter()
    results, first_result, sampled = [], 0.0, started
    scanning = scan(files, local, workers=workers)
    for result in scanning:
        results.append(result)
        now = time.perf_counter()
        first_result = first_result or now - started
        if workers > 1 and (now - sampled > 0.1 or len(results) == len(files)):
            sample()
            sampled = now
    wall = time.perf_counter() - started
    parent_cpu = own_cpu() - cpu_before
    assert all(r.error is None for r in results), [r.error for r in results if r.error]
    unknown = not worker_cpu or None in worker_cpu.values()
    workers_total = None if unknown else sum(worker_cpu.values())  # type: ignore[arg-type]
    return Run(len(results), wall, first_result, parent_cpu, workers_total)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=48, help="distinct JPEGs")
    parser.add_argument("--passes", type=int, default=4, help="times each JPEG is scanned")
    parser.add_argument("--entries", type=int, default=100_000, help="entries on the list")
    args = parser.parse_args()
    keep_freed_memory()  # as `tidkit scan` does for its own process
    local = random_list(args.entries)
    cores = available_cores()
    with tempfile.TemporaryDirectory() as scratch:
        files = make_corpus(Path(scratch), args.count) * args.passes
        run(files[:2], local, 1)  # warm the page cache and this process's imports
        single = run(files, local, 1)
        pooled = run(files, local, cores)
    server = forkserver_pid()
    preload_cpu = process_cpu(server) if server else None

    def ms(seconds: float | None) -> str:
        return "    n/a" if seconds is None else f"{seconds * 1000:7.1f}"

    def row(label: str, result: Run, *, workers: bool) -> str:
        parent, hashing = result.per_image(result.parent_cpu), result.per_image(result.worker_cpu)
        total = parent + hashing if hashing is not None else None if workers else parent
        hashing_ms = ms(hashing) if workers else "      -"
        return f"  {label:<12}{result.rate:9.1f}   {ms(parent):>20} {hashing_ms} {ms(total)}"

    print(
        f"tidkit scan, fast mode: {len(files)} images ({args.count} distinct 12 MP JPEGs x "
        f"{args.passes}), list of {args.entries:,} entries, {cores} core(s)"
    )
    print(f"  {'':<12} images/s   CPU ms/image: parent  workers    total")
    print(row("1 process", single, workers=False))
    print(row(f"{cores} workers", pooled, workers=True))
    speedup = pooled.rate / single.rate
    line = f"  speed-up: {speedup:.2f}x on {cores} core(s)"
    if pooled.worker_cpu is not None:
        total = (pooled.parent_cpu + pooled.worker_cpu) / pooled.images
        bound = cores * single.per_image(single.parent_cpu) / total  # type: ignore[operator]
        line += f"; idle cores would give {bound:.2f}x (CPU per image, one process / workers)"
    print(line)
    preload = "n/a" if preload_cpu is None else f"{preload_cpu:.2f} s"
    print(
        f"  start: first result after {pooled.first_result:.2f} s with workers "
        f"({single.first_result:.2f} s in one process); the forkserver's imports, once: "
        f"{preload} of CPU"
    )


if __name__ == "__main__":
    main()
