"""tidkit.formats: the canonical hash formats every part of the system validates against."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tidkit import HashFormatError, formats

HEX = "0123456789abcdef"


@pytest.mark.parametrize(("hash_type", "length"), [("md5", 32), ("pdq", 64), ("phash", 16)])
def test_canonical_hex_is_accepted_as_is(hash_type, length):
    value = ("0123456789abcdef" * 4)[:length]
    assert formats.validate_hex(value, hash_type) == value


@pytest.mark.parametrize(
    "value",
    [
        "",
        "A" * 32,
        "0" * 31,
        "0" * 33,
        "g" * 32,
        " " + "0" * 31,
        "0" * 31 + "\n",
        None,
        12,
        b"0" * 32,
    ],
    ids=[
        "empty",
        "uppercase",
        "short",
        "long",
        "non-hex",
        "leading-space",
        "newline",
        "none",
        "int",
        "bytes",
    ],
)
def test_anything_else_is_refused_not_normalised(value):
    with pytest.raises(HashFormatError, match="32 lowercase hexadecimal"):
        formats.validate_hex(value, "md5")


@given(st.text(max_size=80))
def test_validate_hex_accepts_exactly_the_canonical_strings(value):
    canonical = len(value) == 64 and all(c in HEX for c in value)
    try:
        formats.validate_hex(value, "pdq")
    except HashFormatError:
        assert not canonical
    else:
        assert canonical


@given(st.binary(min_size=32, max_size=32), st.binary(min_size=32, max_size=32))
def test_hamming_distance_counts_differing_bits(a, b):
    expected = sum(bin(x ^ y).count("1") for x, y in zip(a, b, strict=True))
    assert formats.hamming_distance(a.hex(), b.hex()) == expected
    assert formats.hamming_distance(a.hex(), a.hex()) == 0


def test_hamming_distance_refuses_mixed_lengths():
    with pytest.raises(HashFormatError):
        formats.hamming_distance("0" * 16, "0" * 64)


@pytest.mark.parametrize(
    ("quality", "ok"), [(None, False), (0, False), (49, False), (50, True), (100, True)]
)
def test_pdq_is_published_from_quality_50(quality, ok):
    assert formats.pdq_publishable(quality) is ok


@pytest.mark.parametrize(
    ("bits", "ok"),
    [(0, False), (7, False), (8, True), (32, True), (56, True), (57, False), (64, False)],
)
def test_phash_is_published_with_8_to_56_bits_set(bits, ok):
    value = f"{(1 << bits) - 1:016x}"
    assert formats.phash_publishable(value) is ok


def frame(t, pdq="ab" * 32, q=90):
    return {"t": t, "pdq": pdq, "q": q}


def test_a_valid_vpdq_list_passes():
    frames = [frame(0), frame(1), frame(2.5)]
    assert formats.validate_vpdq(frames) == frames


@pytest.mark.parametrize(
    ("frames", "message"),
    [
        ([], "non-empty"),
        ("nope", "non-empty"),
        ([frame(0), frame(0)], "strictly increase"),
        ([frame(-1)], "non-negative"),
        ([frame(float("nan"))], "non-negative"),
        ([frame(True)], "non-negative"),
        ([frame(0, pdq="AB" * 32)], "Frame 0: A pdq hash"),
        ([frame(0, q=101)], "Frame 0: A quality"),
        ([{"t": 0, "pdq": "ab" * 32}], "exactly the keys"),
        ([{**frame(0), "extra": 1}], "exactly the keys"),
        ([frame(t) for t in range(formats.MAX_VPDQ_FRAMES + 1)], "at most"),
    ],
)
def test_malformed_vpdq_lists_are_refused_with_the_reason(frames, message):
    with pytest.raises(HashFormatError, match=message):
        formats.validate_vpdq(frames)


def test_vpdq_percentages_count_usable_frames_on_each_side():
    a, b, c, d = ("00" * 32), ("ff" * 32), ("0f" * 32), ("f0" * 32)
    near_a = "01" + "00" * 31  # one bit from a
    listed = [frame(0, a), frame(1, b), frame(2, c), frame(3, d, q=10)]  # d is featureless
    query = [frame(0, near_a), frame(1, b), frame(2, "5a" * 32), frame(3, "a5" * 32)]
    query_pct, listed_pct = formats.vpdq_match_percentages(query, listed)
    assert listed_pct == pytest.approx(200 / 3)  # a and b of the usable a, b, c
    assert query_pct == 50.0  # near_a and b of four
    assert not formats.vpdq_is_match(query_pct, listed_pct)
    query.append(frame(4, c))
    assert formats.vpdq_is_match(*formats.vpdq_match_percentages(query, listed))


def test_vpdq_without_usable_frames_matches_nothing():
    featureless = [frame(0, q=0)]
    assert formats.vpdq_match_percentages(featureless, featureless) == (0.0, 0.0)
