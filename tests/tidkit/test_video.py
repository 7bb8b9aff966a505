"""tidkit.hashing.hash_video: MD5 streamed, one PDQ frame per second (vPDQ's default)."""

import hashlib
import math

import av
import numpy as np
import pytest

from tests import corpus
from tidkit import HashingError, formats
from tidkit.hashing import hash_image, hash_video

SCENES = ["astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png"]


@pytest.fixture(scope="module")
def slideshow(tmp_path_factory):
    path = tmp_path_factory.mktemp("video") / "slideshow.mp4"
    return corpus.write_video(path, [corpus.photo(n) for n in SCENES])


def test_one_frame_per_second_from_zero_each_showing_the_scene_on_screen(slideshow):
    result = hash_video(slideshow)
    assert result["media_type"] == "video"
    assert result["md5"] == hashlib.md5(slideshow.read_bytes()).hexdigest()
    assert [f["t"] for f in result["vpdq"]] == [0, 1, 2, 3, 4]
    for frame, name in zip(result["vpdq"], SCENES, strict=True):
        still = corpus.photo(name).convert("RGB").resize((320, 240))
        expected = hash_image(corpus.encode(still, "PNG"))["pdq"]
        assert formats.hamming_distance(frame["pdq"], expected) <= formats.PDQ_MATCH_DISTANCE
        assert frame["q"] >= formats.PDQ_MIN_QUALITY
    assert formats.validate_vpdq(result["vpdq"]) == result["vpdq"]


@pytest.mark.parametrize("rotation", [90, -90, 180])
def test_a_video_stored_sideways_is_hashed_upright_as_players_show_it(
    slideshow, tmp_path, rotation
):
    # As a phone stores a portrait video: the pixels turned, and a display matrix turning them
    # back by ``rotation`` degrees counter-clockwise. Browsers show (and hash) it upright.
    size = (240, 320) if rotation % 180 else (320, 240)
    sideways = [
        corpus.photo(n).convert("RGB").resize((320, 240)).rotate(-rotation, expand=True)
        for n in SCENES
    ]
    path = corpus.write_video(tmp_path / "phone.mp4", sideways, size=size, rotation=rotation)
    result = hash_video(path)["vpdq"]
    for frame, name in zip(result, SCENES, strict=True):
        still = corpus.photo(name).convert("RGB").resize((320, 240))
        expected = hash_image(corpus.encode(still, "PNG"))["pdq"]
        assert formats.hamming_distance(frame["pdq"], expected) <= formats.PDQ_MATCH_DISTANCE
    query_pct, listed_pct = formats.vpdq_match_percentages(result, hash_video(slideshow)["vpdq"])
    assert (query_pct, listed_pct) == (100.0, 100.0)


def test_a_re_encoded_copy_matches_and_an_unrelated_video_does_not(slideshow, tmp_path):
    scenes = [corpus.photo(n) for n in SCENES]
    copy = corpus.write_video(
        tmp_path / "copy.webm", scenes, size=(480, 360), codec="libvpx-vp9", fps=25
    )
    other = corpus.write_video(tmp_path / "other.mp4", [corpus.smooth_noise(s) for s in range(5)])
    listed = hash_video(slideshow)["vpdq"]
    query_pct, listed_pct = formats.vpdq_match_percentages(hash_video(copy)["vpdq"], listed)
    assert formats.vpdq_is_match(query_pct, listed_pct)
    assert listed_pct == 100.0
    query_pct, listed_pct = formats.vpdq_match_percentages(hash_video(other)["vpdq"], listed)
    assert not formats.vpdq_is_match(query_pct, listed_pct)
    assert listed_pct == 0.0


def test_frame_times_follow_the_timestamps_not_the_frame_count(tmp_path):
    # 2.5 s at 4 fps whose first frame starts at 0.5 s: seconds 0, 1 and 2 are sampled, and
    # second 0 shows the first frame (nothing was on screen earlier).
    path = corpus.write_video(
        tmp_path / "late.mp4",
        [corpus.smooth_noise(1), corpus.smooth_noise(2)],
        seconds_per_scene=1.25,
        fps=4,
        start_offset_frames=2,
    )
    frames = hash_video(path)["vpdq"]
    assert [f["t"] for f in frames] == [0, 1, 2]


def test_a_long_video_is_hashed_with_flat_memory_and_one_frame_a_second(tmp_path):
    path = corpus.write_video(
        tmp_path / "long.mp4",
        [corpus.smooth_noise(s, (160, 120)) for s in range(30)],
        fps=5,
        size=(160, 120),
    )
    frames = hash_video(path)["vpdq"]
    assert len(frames) == 30
    assert math.isclose(frames[-1]["t"], 29)


def write_audio_only(path):
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        stream.layout = "mono"
        samples = np.zeros((1, 8000), dtype=np.int16)
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = 8000
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.mark.parametrize(
    ("make", "code"),
    [
        (lambda p: p.write_bytes(b"") and p, "empty"),
        (lambda p: p.write_bytes(b"\x00\x01garbage" * 500) and p, "unreadable"),
        (lambda p: write_audio_only(p.with_suffix(".wav")), "no_video_stream"),
        (
            lambda p: p.write_bytes(corpus.encode(corpus.photo("coffee.png"), "PNG")[:300]) and p,
            "unreadable",
        ),
    ],
    ids=["empty", "garbage", "audio-only", "truncated-image"],
)
def test_unreadable_videos_raise_one_readable_error(tmp_path, make, code):
    target = tmp_path / "bad.mp4"
    path = make(target) or target
    with pytest.raises(HashingError) as info:
        hash_video(path)
    assert info.value.code == code
    assert str(info.value).endswith(".")


def test_a_truncated_video_fails_readably(slideshow, tmp_path):
    data = slideshow.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])  # MP4 keeps its index at the end: now missing
    with pytest.raises(HashingError) as info:
        hash_video(cut)
    assert info.value.code == "unreadable"
