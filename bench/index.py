"""Exact Hamming radius search: tidkit.index against NumPy brute force and faiss IndexBinaryFlat.

    .venv/bin/python bench/index.py [--size 10000000] [--types pdq,phash] [--shapes ...]

For each hash type (PDQ 256 bits at radius 31, pHash 64 bits at radius 8) and data shape it
prints side by side: build time, queries per second on one core, the index's size and the peak
RSS its build added, and the time to load it back from disk (tidkit maps its file: add the first
query's time, which pages in what it touches). Then it checks that the three give identical
results on a common query sample (faiss's ``range_search`` is exact; its radius is exclusive, so
it gets radius + 1), prints "identical results: yes" or stops with an AssertionError, and gives
tidkit's index a burst of removals and additions (no rebuild) before checking it against brute
force again. The default run (1 million hashes) takes well under a minute; 10 million (``--size
10000000``) about three minutes and 3 GB of memory.

Data (seeded). ``uniform``: random hashes. ``clustered``: near-duplicate families of Zipf-
distributed sizes (most images have one or two hashes, a few have thousands), members up to ~30
bits (pHash ~4) from their centre, 5% exact duplicates, and 2% of hashes sharing their first
half with one of ten patterns (hot chunk values, as common image structure gives real PDQ
hashes). ``viral`` (a stress case, not run by default): 30% of all hashes in 100 families.
Queries: 40% near an indexed hash (8 to 32 bits away for PDQ, 2 to 8 for pHash), 10% on a hot
pattern, the rest unrelated (misses, the common case when a platform scans its uploads).

Queries per second are CPU time of this process, every library on one thread
(``faiss.omp_set_num_threads(1)``, ``OPENBLAS_NUM_THREADS=1``), so other work on the machine
does not skew them. tidkit answers one query per call (``query``) and in batches of 100
(``query_many``); faiss one query per ``range_search`` call and the whole sample in one; brute
force one at a time. The two tidkit layouts and faiss are timed in 5 rounds, each timing all
three in turn: the table shows each one's median round, and a line per layout gives its ratio to
faiss round by round (a VM shares its host, whose speed moves by 10 to 30% within a minute:
ratios within a round are what compare). Everything runs in this one process, so nothing forks
after faiss's OpenMP threads start. ``--select`` picks the version of the packed layout's search
(``pdep``, ``popcnt`` or ``portable``; by default the fastest this CPU runs well).

Measured on the development VM (AMD EPYC, family 26, one core; numpy 2.4.6, faiss-cpu 1.15.1) on
2026-12-07, queries per second (one at a time / in batches of 100; faiss one per call / the
whole sample), then the ratio to faiss in each of the 5 rounds, one at a time: memory=2's for
PDQ, the default layout's for pHash (capped, a pHash index scans, at 0.5 to 0.7 times faiss).
The last run is of the final code; the three before it differ only in BLAS's threads, not yet
pinned (they spun: 3 to 5% more CPU time on everything). Round 1 of the third clustered run
(29x) caught the host busy: the default layout fell with it.

    hashes     data        tidkit            tidkit memory=2   faiss        ratio per round
    10M PDQ    uniform      5,434 / 6,247    4,629 / 5,043      67 / 71     74 68 75 82 63
    10M PDQ    clustered    4,692 / 5,137    4,825 / 5,697      86 / 86     51 59 56 61 60
    10M PDQ    uniform      4,958 / 5,675    4,210 / 4,868      70 / 73     58 114 60 66 60
    10M PDQ    clustered    3,732 / 3,918    3,699 / 4,065      72 / 75     29 53 53 48 55
    10M PDQ    uniform      6,619 / 7,756    5,970 / 6,614      85 / 87     67 69 64 78 55
    10M PDQ    clustered    3,744 / 4,022    3,966 / 4,287      78 / 79     46 62 55 53 60
    10M PDQ    uniform      6,585 / 7,175    5,802 / 6,142      83 / 85     66 56 80 72 84
    10M PDQ    clustered    5,138 / 5,537    5,504 / 5,855      86 / 86     56 62 64 61 58
    10M pHash  uniform     18,854 / 21,765     152 / 156       264 / 277    69 88 71 75 67
    10M pHash  clustered   12,001 / 13,850     150 / 158       279 / 287    42 47 45 49 41

With ``--select portable`` (no pdep; before the change that finds a value's end with one select,
which gave it 3 to 14% back): memory=2 3,671 / 3,883 uniform (39 to 42 times faiss, one round
24) and 2,854 / 3,007 clustered (32 to 41 times).

Three earlier 10M PDQ runs, timed once each (not in rounds; the first two before near rows were
checked once each), gave memory=2 68, 72 and 50 times faiss on uniform data and 56, 54 and 51
times on clustered data. At 1M (timed once): PDQ uniform 19,422 / 24,820, memory=2 8,720 /
9,670, faiss 959 / 909; clustered 16,020 / 20,069, 5,981 / 7,507, faiss 893 / 922 (31 MB of
hashes: faiss scans them from the cache); pHash uniform 41,465 / 69,341, memory=2 (a scan) 1,517
/ 1,275, faiss 2,490 / 2,751. Memory at 10M PDQ: 845 MiB (2.77 times the raw 305 MiB) for the
default layout, 607 MiB (1.99 times) for memory=2, whose build left 560 to 584 MiB in the
process; builds take 5 to 11 s. The portable select (no BMI2 pdep, or a CPU where it is slow:
AMD before Zen 3) costs the packed layout about a third of its speed.

So at 10 million PDQ hashes ``memory=2`` (the packed layout, 10 chunks) stays under twice the
raw bytes and answers 4,200 to 6,000 queries/s one at a time (medians), 53 to 74 times faiss
IndexBinaryFlat, and about as fast as the default layout, which takes 2.77 times the raw bytes;
on clustered data single rounds fall under 50x when the host is busy (46x, 48x, and the 29x
above). Loading maps the file: a few milliseconds, plus the first query's few milliseconds as
pages come in. After the burst of 20,000 removals and 20,000 additions in batches of 1,000 (0.2
to 0.35 s of CPU), the default layout answered 4,600 to 6,900 queries/s at 10M PDQ: the new
hashes sit in small segments until merged.

Earlier hosts, for comparison across versions (only the ratios within a run compare): on
2026-12-07 a slower host (faiss 27 to 36 at 10M PDQ) gave the default layout 2,800 to 3,800 and
the first packed layout (4 uint32 per 256 values, 29-byte rows) 1,250 to 1,700, 45 to 54 times
faiss; in 2026-11 a host where faiss gave 70 to 83 gave the default layout 6,300 and the plain
8-chunk memory=2 layout of the time 390 (10M pHash: 16,000 / 118, faiss 196)."""

import argparse
import gc
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

# One thread for NumPy's BLAS too (before NumPy loads it): its idle threads spin for a while
# after a call, and their CPU time would count as this process's, in whatever is being timed.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tidkit import _hamming  # noqa: E402
from tidkit.index import HammingIndex  # noqa: E402

RADIUS = {"pdq": 31, "phash": 8}
BITS = {"pdq": 256, "phash": 64}
BLOCK = 1_000_000  # rows generated at a time (bounds the generator's temporaries)
ROUNDS = 5  # timing rounds (see run)


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


def times(ratio: float) -> str:
    return f"{ratio:.0f}x" if ratio >= 10 else f"{ratio:.1f}x"


def each(search: Callable, queries: list, radius: int) -> list:
    return [search(query, radius) for query in queries]


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

    # tidkit.index: the fastest layout, then one capped at twice the raw hash bytes
    def build_tidkit(memory: float | None) -> tuple[HammingIndex, dict]:
        data_hexes, ids = hexes(data), list(range(size))
        base = peak_reset()
        index = HammingIndex(bits=bits, memory=memory)
        _, build, _ = timed(index.add, ids, data_hexes)
        peak, left = peak_since(base), rss_since(base)
        del data_hexes, ids
        return index, {"build": build, "mb": index.nbytes / 2**20, "peak": peak, "left": left}

    index, rows["tidkit.index"] = build_tidkit(None)
    ours = index.query_many(query_hexes[:sample], radius)
    capped, rows["tidkit.index memory=2"] = build_tidkit(2.0)
    assert capped.query_many(query_hexes[:sample], radius) == ours, "the two layouts differ"
    capped_layout = describe(capped)
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
    brute, _, cpu = timed(brute_force, words, as_words(common), radius)
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
    theirs = results_of_faiss(*flat.range_search(common, radius + 1))
    faiss.write_index_binary(flat, str(folder / "flat.faiss"))
    _, load, _ = timed(faiss.read_index_binary, str(folder / "flat.faiss"))
    rows["faiss IndexBinaryFlat"] = {
        "build": build,
        "mb": size * bits / 8 / 2**20,
        "peak": faiss_peak,
        "left": faiss_left,
        "load": f"{load:.3f}",
    }

    # Queries per second, one at a time and in batches: ROUNDS rounds, each timing all three
    # in turn, so that a change in the machine's speed (a VM shares its host) touches them
    # alike; the table shows each one's median round, and the ratios are taken per round.
    batches = [query_hexes[i : i + 100] for i in range(0, count, 100)]
    contenders = {
        "tidkit.index": index,
        "tidkit.index memory=2": capped,
    }
    speeds: dict[str, list[tuple[float, float]]] = {
        name: [] for name in rows if name != "numpy brute force"
    }
    for _ in range(ROUNDS):
        for name, tidkit_index in contenders.items():
            single = timed(each, tidkit_index.query, query_hexes, radius)[2]
            batched = timed(each, tidkit_index.query_many, batches, radius)[2]
            speeds[name].append((count / single, count / batched))
        single = timed(one_by_one, flat.range_search, common, radius + 1)[2]
        batched = timed(flat.range_search, common, radius + 1)[2]
        speeds["faiss IndexBinaryFlat"].append((sample / single, sample / batched))
    for name, measured in speeds.items():
        one, many = (float(np.median(column)) for column in zip(*measured, strict=True))
        rows[name]["qps"] = f"{one:,.0f} / {many:,.0f}"
    del capped, flat
    gc.collect()

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
    for name in contenders:
        ratios = [
            (ours_[0] / theirs_[0], ours_[1] / theirs_[1])
            for ours_, theirs_ in zip(speeds[name], speeds["faiss IndexBinaryFlat"], strict=True)
        ]
        print(
            f"{name} / faiss, round by round, one at a time: "
            + " ".join(times(one) for one, _ in ratios)
            + "; in batches: "
            + " ".join(times(many) for _, many in ratios)
        )

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
        f"{count / timed(each, index.query, query_hexes, radius)[2]:,.0f} q/s"
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
