"""Canonical hash formats, validators, Hamming distances and the publication and match rules.

DESIGN.md section 3 is the contract: every hash is lowercase hex of a fixed length; anything else
is refused (never silently normalised), so the browser, the server and partners agree byte for byte.
The server's validation calls these functions.
"""

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from tidkit.errors import HashFormatError

MD5: Final = "md5"
PDQ: Final = "pdq"
PHASH: Final = "phash"
VPDQ: Final = "vpdq"

HEX_LENGTHS: Final[Mapping[str, int]] = {MD5: 32, PDQ: 64, PHASH: 16}
BITS: Final[Mapping[str, int]] = {PDQ: 256, PHASH: 64}

# Matching defaults (partners may be stricter).
PDQ_MATCH_DISTANCE: Final = 31
PHASH_MATCH_DISTANCE: Final = 8
VPDQ_FRAME_DISTANCE: Final = PDQ_MATCH_DISTANCE
VPDQ_MATCH_PERCENT: Final = 80.0
# The loosest distance a match of each type may have; for vpdq it bounds each compared frame
# (the video-level rule is VPDQ_MATCH_PERCENT of the listed frames).
MATCH_DISTANCES: Final[Mapping[str, int]] = {
    MD5: 0,
    PDQ: PDQ_MATCH_DISTANCE,
    PHASH: PHASH_MATCH_DISTANCE,
    VPDQ: VPDQ_FRAME_DISTANCE,
}

# Publication rules: Meta's recommendation for PDQ, and its analogue for pHash.
PDQ_MIN_QUALITY: Final = 50
PHASH_MIN_BITS: Final = 8
PHASH_MAX_BITS: Final = 56

MAX_VPDQ_FRAMES: Final = 4 * 60 * 60  # four hours at one frame per second

_HEX_RE = {kind: re.compile(rf"[0-9a-f]{{{n}}}") for kind, n in HEX_LENGTHS.items()}


def validate_hex(value: object, hash_type: str) -> str:
    """Return ``value`` if it is canonical hex of ``hash_type``; raise HashFormatError if not."""
    if hash_type not in HEX_LENGTHS:
        raise HashFormatError(f"Unknown hash type {hash_type!r}.")
    n = HEX_LENGTHS[hash_type]
    if not isinstance(value, str) or not _HEX_RE[hash_type].fullmatch(value):
        raise HashFormatError(
            f"A {hash_type} hash is exactly {n} lowercase hexadecimal characters."
        )
    return value


def validate_quality(value: object) -> int:
    """Return a PDQ quality (an integer from 0 to 100) or raise HashFormatError."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100:
        raise HashFormatError("A quality is a whole number from 0 to 100.")
    return value


def validate_vpdq(frames: object) -> list[dict[str, Any]]:
    """Return a canonical vPDQ frame list or raise HashFormatError.

    Frames are ``{"t": seconds, "pdq": 64 hex, "q": quality}``, at least one, in strictly
    increasing time order, starting at a non-negative time, at most MAX_VPDQ_FRAMES of them.
    """
    if not isinstance(frames, list) or not frames:
        raise HashFormatError("A vpdq hash is a non-empty list of frames.")
    if len(frames) > MAX_VPDQ_FRAMES:
        raise HashFormatError(f"A vpdq hash has at most {MAX_VPDQ_FRAMES} frames.")
    result: list[dict[str, Any]] = []
    previous = -math.inf
    for index, frame in enumerate(frames):
        if not isinstance(frame, dict) or set(frame) != {"t", "pdq", "q"}:
            raise HashFormatError(f"Frame {index} must have exactly the keys t, pdq and q.")
        t = frame["t"]
        if isinstance(t, bool) or not isinstance(t, int | float) or not math.isfinite(t) or t < 0:
            raise HashFormatError(f"Frame {index}: t is a non-negative number of seconds.")
        if t <= previous:
            raise HashFormatError(f"Frame {index}: frame times must strictly increase.")
        previous = t
        try:
            pdq = validate_hex(frame["pdq"], PDQ)
            q = validate_quality(frame["q"])
        except HashFormatError as exc:
            raise HashFormatError(f"Frame {index}: {exc}") from None
        result.append({"t": t, "pdq": pdq, "q": q})
    return result


def hamming_distance(a: str, b: str) -> int:
    """Bits that differ between two hex hashes of the same length."""
    if len(a) != len(b):
        raise HashFormatError("Only hashes of the same length can be compared.")
    return (int(a, 16) ^ int(b, 16)).bit_count()


def bit_count(value: str) -> int:
    """Number of bits set in a hex hash."""
    return int(value, 16).bit_count()


def pdq_publishable(quality: int | None) -> bool:
    """Whether a PDQ hash (or vPDQ frame) of this quality may go on a list."""
    return quality is not None and quality >= PDQ_MIN_QUALITY


def phash_publishable(value: str | None) -> bool:
    """Whether a pHash has enough structure to go on a list (not near-uniform)."""
    return value is not None and PHASH_MIN_BITS <= bit_count(value) <= PHASH_MAX_BITS


def vpdq_match_percentages(
    query: Sequence[Mapping[str, Any]],
    listed: Sequence[Mapping[str, Any]],
    *,
    distance: int = VPDQ_FRAME_DISTANCE,
) -> tuple[float, float]:
    """Compare two vPDQ frame lists as sets; return (query %, listed %) of frames matched.

    Only frames with quality >= PDQ_MIN_QUALITY take part. The query % is the share of the
    query's usable frames within ``distance`` of some listed frame; the listed % is the share of
    the listed video's usable frames within ``distance`` of some query frame. A video matches a
    listed one when the listed % reaches VPDQ_MATCH_PERCENT (DESIGN.md section 3).
    """
    q_hashes = _usable_frame_hashes(query)
    l_hashes = _usable_frame_hashes(listed)
    if not q_hashes or not l_hashes:
        return 0.0, 0.0

    def matched(side: list[int], other: list[int]) -> int:
        return sum(1 for h in side if any((h ^ o).bit_count() <= distance for o in other))

    query_pct = 100.0 * matched(q_hashes, l_hashes) / len(q_hashes)
    listed_pct = 100.0 * matched(l_hashes, q_hashes) / len(l_hashes)
    return query_pct, listed_pct


def vpdq_is_match(query_pct: float, listed_pct: float) -> bool:
    """The default vPDQ rule: at least 80% of the listed video's frames matched by the query."""
    del query_pct  # stated in answers, not part of the default rule
    return listed_pct >= VPDQ_MATCH_PERCENT


def _usable_frame_hashes(frames: Iterable[Mapping[str, Any]]) -> list[int]:
    return list({int(f["pdq"], 16) for f in frames if pdq_publishable(f["q"])})
