"""Images per second for `tidkit scan` on 12-megapixel JPEGs: one process, then every core.

    .venv/bin/python bench/scan.py [--count 48] [--entries 100000]

Hashes camera-like 4000x3000 JPEGs (bench/hashing.py's corpus) with tidkit.scan.scan in fast
mode and matches each against a list of random MD5, PDQ and pHash entries, as `tidkit scan`
does: first in this process, then with a worker per core (forkserver). Prints images per second
for both, and the CPU time per image of the single-process run, which unlike wall time does not
depend on what else the machine is running.
"""

import argparse
import random
import resource
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.hashing import make_corpus  # noqa: E402
from tidkit.scan import available_cores, scan  # noqa: E402
from tidkit.store import Entry, LocalList  # noqa: E402


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


def run(files: list[Path], local: LocalList, workers: int) -> tuple[float, float]:
    """(images per second, CPU seconds per image of this process)."""
    before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    results = list(scan(files, local, workers=workers))
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    assert all(r.error is None for r in results), [r.error for r in results if r.error]
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return len(results) / wall, cpu / len(results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=48, help="JPEGs to scan")
    parser.add_argument("--entries", type=int, default=100_000, help="entries on the list")
    args = parser.parse_args()
    local = random_list(args.entries)
    cores = available_cores()
    with tempfile.TemporaryDirectory() as scratch:
        files = make_corpus(Path(scratch), args.count)
        run(files[:2], local, 1)  # warm the page cache and the imports
        single, cpu_per_image = run(files, local, 1)
        pooled, _ = run(files, local, cores)
    print(f"tidkit scan, fast mode, {args.count} 12 MP JPEGs, list of {args.entries:,} entries")
    print(f"  1 process:        {single:6.1f} images/s  ({cpu_per_image * 1000:.0f} ms CPU/image)")
    print(f"  {cores} worker(s):      {pooled:6.1f} images/s")
    print(f"  ideal on {cores} idle core(s): {cores / cpu_per_image:6.1f} images/s")


if __name__ == "__main__":
    main()
