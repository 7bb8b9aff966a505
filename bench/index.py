"""Exact Hamming radius search: tidkit.index against NumPy brute force and faiss IndexBinaryFlat.

    .venv/bin/python bench/index.py [--size 10000000] [--types pdq,phash] [--shapes ...]

For each hash type (PDQ 256 bits at radius 31, pHash 64 bits at radius 8) and data shape it
prints side by side: build time, queries per second on one core, the index's size and the peak
RSS its build added, and the time to load it back from disk (tidkit maps its file: add the first
query's time, which pages in what it touches). Then it checks that the three give identical
results on a common query sample (faiss's ``range_search`` is exact; its radius is exclusive,
so it gets radius + 1), prints "identical results: yes" or stops with an AssertionError, and
gives tidkit's index a burst of removals and additions (no rebuild) before checking it against
brute force again. The default run (1 million hashes) takes well under a minute; 10 million
(``--size 10000000``) about three minutes and 3 GB of memory.

Data (seeded). ``uniform``: random hashes. ``clustered``: near-duplicate families of Zipf-
distributed sizes (most images have one or two hashes, a few have thousands), members up to ~30
bits (pHash ~4) from their centre, 5% exact duplicates, and 2% of hashes sharing their first
half with one of ten patterns (hot chunk values, as common image structure gives real PDQ
hashes). ``viral`` (a stress case, not run by default): 30% of all hashes in 100 families.
Queries: 40% near an indexed hash (8 to 32 bits away for PDQ, 2 to 8 for pHash), 10% on a hot
pattern, the rest unrelated (misses, the common case when a platform scans its uploads).

Queries per second are CPU time of this process, every library on one thread
(``faiss.omp_set_num_threads(1)``), so other work on the machine does not skew them. tidkit
answers one query per call (``query``) and in batches of 100 (``query_many``); faiss one query
per ``range_search`` call and the whole sample in one; brute force one at a time. Everything
runs in this one process, so nothing forks after faiss's OpenMP threads start.

Measured on the development VM (AMD EPYC, one core; numpy 2.4.6, faiss-cpu 1.15.1) on
2026-12-07, the machine otherwise idle, queries per second (one at a time / in batches of 100;
faiss one per call / the whole sample; NumPy one at a time). This VM's host was slower than on
the earlier runs below (faiss 27 to 36 at 10M PDQ where it gave 70 to 83, tidkit's default
3,300 to 3,900 where it gave 6,300), and the figures move by about 10% from run to run: compare
within a run. Two 10M PDQ runs:

    hashes     data        tidkit             tidkit memory=2    faiss          NumPy
    1M PDQ     uniform      8,819 / 14,923    2,565 / 3,025        248 / 271       39
    1M PDQ     clustered    6,949 / 11,078    2,366 / 2,743        241 / 258       39
    1M pHash   uniform     14,959 / 38,863      534 / 610          965 / 1,059    230
    1M pHash   clustered   10,690 / 27,373      544 / 622          925 / 1,086    235
    10M PDQ    uniform      3,816 / 4,366     1,557 / 1,768         29 / 29         3
    10M PDQ    clustered    3,107 / 3,818     1,428 / 1,658         32 / 32         4
    10M PDQ    uniform      3,313 / 4,349     1,714 / 2,011         36 / 36         4
    10M PDQ    clustered    2,817 / 3,380     1,255 / 1,527         27 / 27         4
    10M pHash  uniform      8,240 / 13,754       59 / 62           109 / 111       20
    10M pHash  clustered    5,582 / 8,135        59 / 62           106 / 110       19

Memory (the index's arrays, and the RSS its build left), build and load, same day:

    hashes     tidkit MiB (x raw)  RSS left  memory=2 MiB (x raw)  RSS left  faiss MiB  build s
    1M PDQ              84 (2.77)       119             61 (1.98)        46         31     1.1
    10M PDQ            845 (2.77)       835            602 (1.97)       578        305    13.0
    10M pHash          226 (2.96)       264            124 (1.62)        86         76     3.5

So at 10 million PDQ hashes the default layout answers 90 to 130 times faiss IndexBinaryFlat
in 2.77 times the raw hash bytes, and ``memory=2`` (the packed layout, 10 chunks) stays under
twice the raw bytes at 45 to 54 times faiss one query at a time and 52 to 61 times in batches
(1,250 to 1,700 queries/s, 1,500 to 2,000 in batches); the memory=2 build takes 16 s. Each
table holds a row number per hash, so under 2x there is room for 10 chunks, not 11: about 2.3
times the probes and candidates of the default layout (tidkit/index.py). A pHash index has no
tables under 2x: capped, it scans, slower than faiss's scan. Loading maps the file: 2 to 5 ms,
plus the first query's 2 to 6 ms as pages come in. After the burst of 20,000 removals and
20,000 additions in batches of 1,000 (0.8 s of CPU), the default layout answered 2,800 to 3,400
queries/s at 10M PDQ: the new hashes sit in small segments until merged.

Earlier runs (2026-11, faster host; memory=2 was then a plain layout with 8 chunks of 20 bits),
busy machine (load average 4 to 7) and, for 10M, idle:

    hashes     data        tidkit             old memory=2       faiss          NumPy
    1M PDQ     uniform     17,729 / 22,842    1,212 / 1,327        846 / 950       83
    10M PDQ    uniform      6,269 / 7,024       384 / 411           83 / 83         5
    10M PDQ    clustered    4,394 / 4,835       388 / 397           79 / 82         5
    10M PDQ    uniform      6,324 / 7,079       393 / 399           71 / 72         5   (idle)
    10M PDQ    clustered    4,659 / 5,133       385 / 401           70 / 72         5   (idle)
    10M pHash  uniform     16,033 / 19,652      118 / 121          196 / 200       28   (idle)
"""

import argparse
import gc
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tidkit import _hamming  # noqa: E402
from tidkit.index import HammingIndex  # noqa: E402

RADIUS = {"pdq": 31, "phash": 8}
BITS = {"pdq": 256, "phash": 64}
BLOCK = 1_000_000  # rows generated at a time (bounds the generator's temporaries)


# -- memory ---------------------------------------------------------------------------------


def _status(field: str) -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def peak_reset() -> float:
    """Reset the peak-RSS mark (Linux: /proc/self/clear_refs) and return the RSS in MB."""
    gc.collect()
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass
    return _status("VmRSS")


def peak_since(base: float) -> float:
    return _status("VmHWM") - base


def rss_since(base: float) -> float:
    """What a build left in memory (MB): the RSS now, less that before it."""
    gc.collect()
    return _status("VmRSS") - base


def describe(index: HammingIndex) -> str:
    return ", ".join(f"{s.n:,} rows in {len(s.widths)} chunks" for s in index._segments)


# -- data -----------------------------------------------------------------------------------


def sparse_bits(rng: np.random.Generator, shape: tuple[int, int], ands: np.ndarray) -> np.ndarray:
    """Random bytes where each bit is set with probability 2**-ands[row] (AND of random bytes)."""
    out = np.full(shape, 0xFF, dtype=np.uint8)
    for k in range(int(ands.max())):
        layer = rng.integers(0, 256, shape, dtype=np.uint8)
        out &= np.where((ands > k)[:, None], layer, np.uint8(0xFF))
    return out


def families(rng: np.random.Generator, n: int, shape: str) -> np.ndarray:
    """The family of each of ``n`` hashes. ``clustered``: family sizes drawn from a Zipf law
    (exponent 2.5, at most 10,000: most images have one or two hashes, a few have thousands).
    ``viral``: a stress case, 30% of all hashes in 100 families, the rest in families of ~10."""
    if shape == "clustered":
        sizes = np.minimum(rng.zipf(2.5, n), 10_000)
        sizes = sizes[: np.searchsorted(np.cumsum(sizes), n) + 1]
        return rng.permutation(np.repeat(np.arange(len(sizes)), sizes)[:n])
    viral = rng.random(n) < 0.3
    return np.where(viral, rng.integers(0, 100, n), 100 + rng.integers(0, n // 10, n))


def make_hashes(rng: np.random.Generator, n: int, bits: int, shape: str) -> np.ndarray:
    width = bits // 8
    if shape == "uniform":
        return rng.integers(0, 256, (n, width), dtype=np.uint8)
    family = families(rng, n, shape)
    centres = rng.integers(0, 256, (int(family.max()) + 1, width), dtype=np.uint8)
    data = np.empty((n, width), dtype=np.uint8)
    # PDQ members lie up to ~30 bits from their centre (bits set with p = 1/8 .. 1/64), pHash
    # members up to ~4 (p = 1/16 .. 1/128).
    spread = (3, 7) if bits == 256 else (4, 8)
    for at in range(0, n, BLOCK):
        rows = min(BLOCK, n - at)
        noise = sparse_bits(rng, (rows, width), rng.integers(*spread, rows))
        noise[rng.random(rows) < 0.05] = 0  # exact duplicates of the centre
        block = centres[family[at : at + rows]] ^ noise
        hot = rng.random(rows) < 0.02
        block[hot] = hot_hashes(rng, int(hot.sum()), width)
        data[at : at + rows] = block
    return data


def hot_hashes(rng: np.random.Generator, count: int, width: int) -> np.ndarray:
    """Hashes whose first half is one of ten patterns (the rest random): hot chunk values, as
    the structure of common kinds of images gives real PDQ hashes, without being matches."""
    patterns = np.random.default_rng(0).integers(0, 256, (10, width // 2), dtype=np.uint8)
    out = rng.integers(0, 256, (count, width), dtype=np.uint8)
    out[:, : width // 2] = patterns[rng.integers(0, 10, count)]
    return out


def make_queries(rng: np.random.Generator, data: np.ndarray, count: int, hash_type: str):
    bits, width = BITS[hash_type], data.shape[1]
    near = count // 2
    # Distances spread around the radius: bits flipped with p = 1/8 to 1/32, about 32 to 8 bits
    # for PDQ and 8 to 2 for pHash.
    picked = data[rng.integers(0, len(data), near)]
    queries = [picked ^ sparse_bits(rng, picked.shape, rng.integers(3, 6, near))]
    hot = count // 10
    queries.append(hot_hashes(rng, hot, width))
    queries.append(rng.integers(0, 256, (count - near - hot, width), dtype=np.uint8))
    queries = np.concatenate(queries)
    assert queries.shape == (count, bits // 8)
    return queries[rng.permutation(count)]


def hexes(rows: np.ndarray) -> list[str]:
    width = rows.shape[1] * 2
    out: list[str] = []
    for at in range(0, len(rows), BLOCK):
        text = rows[at : at + BLOCK].tobytes().hex()
        out += [text[i : i + width] for i in range(0, len(text), width)]
    return out


# -- timing ---------------------------------------------------------------------------------


def timed(fn: Callable, *args):
    """(result, wall seconds, CPU seconds)."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn(*args)
    return result, time.perf_counter() - wall, time.process_time() - cpu


def results_of_faiss(lims, distances, labels) -> list[list[tuple[int, int]]]:
    out = []
    for q in range(len(lims) - 1):
        found = slice(lims[q], lims[q + 1])
        pairs = zip(labels[found].tolist(), distances[found].tolist(), strict=True)
        out.append(sorted(pairs, key=lambda p: (p[1], p[0])))
    return out


def brute_force(words: np.ndarray, queries: np.ndarray, radius: int, ids=None):
    """XOR and popcount against every row, one query at a time."""
    out = []
    for query in queries:
        counts = np.bitwise_count(words ^ query)
        distances = counts[:, 0].astype(np.int64)
        for word in range(1, counts.shape[1]):  # faster than .sum(axis=1)
            distances += counts[:, word]
        hits = np.flatnonzero(distances <= radius)
        labels = hits if ids is None else ids[hits]
        order = np.lexsort((labels, distances[hits]))
        out.append(list(zip(labels[order].tolist(), distances[hits][order].tolist(), strict=True)))
    return out


def one_by_one(search: Callable, queries: np.ndarray, radius: int) -> list:
    return [search(query[None], radius) for query in queries]


def parse_words(text: list[str]) -> np.ndarray:
    """Hex hashes to rows of 64-bit words: the brute force's whole build."""
    words = np.frombuffer(bytes.fromhex("".join(text)), dtype=">u8").astype(np.uint64)
    return words.reshape(len(text), -1)


def as_words(rows: np.ndarray) -> np.ndarray:
    return rows.view(">u8").astype(np.uint64)


# -- one configuration ----------------------------------------------------------------------


def run(hash_type: str, shape: str, size: int, count: int, sample: int, seed: int, folder: Path):
    import faiss  # imported here so that a missing faiss fails after the data is described

    bits, radius = BITS[hash_type], RADIUS[hash_type]
    rng = np.random.default_rng(seed)
    data = make_hashes(rng, size, bits, shape)
    queries = make_queries(rng, data, count, hash_type)
    query_hexes = hexes(queries)
    common = queries[:sample]
    rows: dict[str, dict] = {}
    print(f"\n== {size:,} {hash_type} hashes, {shape}, radius {radius} ==", flush=True)

    # tidkit.index: the fastest layout, then (while it is still in memory) one capped at twice
    # the raw hash bytes
    def build_tidkit(memory: float | None) -> tuple[HammingIndex, dict]:
        data_hexes, ids = hexes(data), list(range(size))
        base = peak_reset()
        index = HammingIndex(bits=bits, memory=memory)
        _, build, _ = timed(index.add, ids, data_hexes)
        peak, left = peak_since(base), rss_since(base)
        del data_hexes, ids
        _, wall, cpu_single = timed(lambda: [index.query(h, radius) for h in query_hexes])
        batches = [query_hexes[i : i + 100] for i in range(0, count, 100)]
        _, wall, cpu_batch = timed(lambda: [index.query_many(b, radius) for b in batches])
        row = {
            "build": build,
            "qps": f"{count / cpu_single:,.0f} / {count / cpu_batch:,.0f}",
            "mb": index.nbytes / 2**20,
            "peak": peak,
            "left": left,
        }
        return index, row

    index, rows["tidkit.index"] = build_tidkit(None)
    ours = index.query_many(query_hexes[:sample], radius)
    capped, rows["tidkit.index memory=2"] = build_tidkit(2.0)
    assert capped.query_many(query_hexes[:sample], radius) == ours, "the two layouts differ"
    capped_layout = describe(capped)
    del capped
    path = folder / f"{hash_type}.index"
    _, save, _ = timed(index.save, path)
    loaded, load, _ = timed(HammingIndex.load, path)
    _, first, _ = timed(loaded.query, query_hexes[0], radius)
    assert loaded.query_many(query_hexes[:sample], radius) == ours
    matches = sum(len(r) for r in ours) / sample
    rows["tidkit.index"]["load"] = f"{load:.3f} (+{first * 1000:.0f} ms 1st query)"
    rows["tidkit.index memory=2"]["load"] = "(the same)"
    del loaded

    # numpy brute force
    text = hexes(data)
    base = peak_reset()
    words, build, _ = timed(parse_words, text)
    brute_peak, brute_left = peak_since(base), rss_since(base)
    del text
    brute, wall, cpu = timed(brute_force, words, as_words(common), radius)
    np.save(folder / "words.npy", words)
    _, load, _ = timed(lambda: np.load(folder / "words.npy", mmap_mode="r"))
    rows["numpy brute force"] = {
        "build": build,
        "qps": f"{sample / cpu:,.0f}",
        "mb": words.nbytes / 2**20,
        "peak": brute_peak,
        "left": brute_left,
        "load": f"{load:.3f}",
    }

    # faiss IndexBinaryFlat
    faiss.omp_set_num_threads(1)
    base = peak_reset()
    flat = faiss.IndexBinaryFlat(bits)
    _, build, _ = timed(flat.add, data)
    faiss_peak, faiss_left = peak_since(base), rss_since(base)
    _, wall, cpu_single = timed(one_by_one, flat.range_search, common, radius + 1)
    (lims, distances, labels), wall, cpu_batch = timed(flat.range_search, common, radius + 1)
    theirs = results_of_faiss(lims, distances, labels)
    faiss.write_index_binary(flat, str(folder / "flat.faiss"))
    del flat
    gc.collect()
    _, load, _ = timed(faiss.read_index_binary, str(folder / "flat.faiss"))
    rows["faiss IndexBinaryFlat"] = {
        "build": build,
        "qps": f"{sample / cpu_single:,.0f} / {sample / cpu_batch:,.0f}",
        "mb": size * bits / 8 / 2**20,
        "peak": faiss_peak,
        "left": faiss_left,
        "load": f"{load:.3f}",
    }

    print(
        f"{'':24}{'build s':>9}{'queries/s (1 core)':>22}{'index MiB':>10}{'RSS left +MiB':>14}"
        f"{'peak +MiB':>10}  load s"
    )
    for name, row in rows.items():
        print(
            f"{name:24}{row['build']:9.2f}{row['qps']:>22}{row['mb']:10.0f}{row['left']:14.0f}"
            f"{row['peak']:10.0f}  {row['load']}"
        )
    raw = size * bits / 8
    print(
        f"tidkit: {describe(index)}, {index.nbytes / raw:.2f}x the raw hash bytes; with "
        f"memory=2: {capped_layout}, {rows['tidkit.index memory=2']['mb'] * 2**20 / raw:.2f}x; "
        f"{matches:.1f} matches per query on average; save {save:.2f} s"
    )
    assert ours == theirs, "tidkit.index and faiss differ"
    assert ours == brute, "tidkit.index and brute force differ"
    print(f"identical results: yes ({sample} queries, {sum(map(len, ours)):,} matches)")

    # Incremental: a burst of removals and re-additions, no rebuild; exact throughout.
    alive = np.ones(size, dtype=bool)
    gone = rng.choice(size, min(size // 10, 20_000), replace=False)
    fresh = make_hashes(rng, len(gone), bits, shape)
    wall, cpu = time.perf_counter(), time.process_time()
    for at in range(0, len(gone), 1000):
        index.remove(gone[at : at + 1000].tolist())
        index.add(list(range(size + at, size + at + 1000)), hexes(fresh[at : at + 1000]))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    alive[gone] = False
    all_words = np.concatenate((words[alive], as_words(fresh)))
    all_ids = np.concatenate((np.flatnonzero(alive), np.arange(size, size + len(gone))))
    expected = brute_force(all_words, as_words(common), radius, all_ids)
    assert index.query_many(query_hexes[:sample], radius) == expected
    print(
        f"incremental: {len(gone):,} removals and {len(gone):,} additions in batches of 1,000: "
        f"{cpu:.2f} s CPU; still identical to brute force: yes; "
        f"{count / timed(lambda: [index.query(h, radius) for h in query_hexes])[2]:,.0f} q/s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=1_000_000, help="hashes in the index")
    parser.add_argument("--queries", type=int, default=2000, help="queries timed for tidkit")
    parser.add_argument("--sample", type=int, help="queries for faiss, brute force and checks")
    parser.add_argument("--types", default="pdq,phash")
    parser.add_argument("--shapes", default="uniform,clustered")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--select",
        choices=["pdep", "popcnt", "portable"],
        help="the version of the packed layout's search to use (default: the fastest here)",
    )
    args = parser.parse_args()
    if args.select:
        _hamming.packed_kernel(args.select)
    sample = args.sample or (200 if args.size <= 2_000_000 else 50)
    print(
        f"numpy {np.__version__}, one core, CPU time; {os.cpu_count()} CPUs on this machine; "
        f"memory=2 finds values in its runs with the {_hamming.packed_kernel()} select"
    )
    with tempfile.TemporaryDirectory() as folder:
        for hash_type in args.types.split(","):
            for shape in args.shapes.split(","):
                run(hash_type, shape, args.size, args.queries, sample, args.seed, Path(folder))


if __name__ == "__main__":
    main()
