"""tidkit.hashing on real photographs and their variants (DESIGN.md section 3)."""

import hashlib
import io
import itertools
import os
import random
import re
import subprocess
import sys
import zlib
from pathlib import Path

import imagehash
import numpy as np
import pdqhash
import pytest
from PIL import Image, ImageOps

from tests import corpus
from tidkit import HashingError, formats
from tidkit.hashing import hash_image


def reference_hashes(path: Path) -> tuple[str, int, str]:
    """PDQ (pdqhash, the C++ reference) and pHash (imagehash) of the canonical pixels, computed
    independently of tidkit: EXIF transpose, composite over white, RGB."""
    image = ImageOps.exif_transpose(Image.open(path))
    if "A" in image.mode:
        white = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, image.convert("RGBA"))
    image = image.convert("RGB")
    vector, quality = pdqhash.compute(np.asarray(image))
    bits = "".join(str(int(b)) for b in vector)
    return f"{int(bits, 2):064x}", int(quality), str(imagehash.phash(image))


def test_hashes_equal_the_references_on_every_corpus_file(photo_corpus):
    for item in photo_corpus:
        result = hash_image(item.path)
        pdq, quality, phash = reference_hashes(item.path)
        assert result["media_type"] == "image"
        assert result["md5"] == hashlib.md5(item.path.read_bytes()).hexdigest(), item
        assert (result["pdq"], result["pdq_quality"], result["phash"]) == (pdq, quality, phash), (
            item
        )


def test_pdq_hex_is_what_python_threatexchange_prints(photo_corpus, tmp_path):
    cli = Path(sys.executable).with_name("threatexchange")
    # Its CLI neither applies EXIF nor flattens alpha: compare on plain RGB files.
    files = [f for f in photo_corpus if f.variant in ("original-png", "jpeg-q75", "webp")][:12]
    out = subprocess.run(
        [str(cli), "hash", "photo", *map(str, (f.path for f in files))],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        env={**os.environ, "HOME": str(tmp_path)},
    ).stdout.split("\n")
    printed = [line.split()[1] for line in out if line.startswith("pdq ")]
    assert printed == [hash_image(f.path)["pdq"] for f in files]


def test_accepts_bytes_paths_and_file_objects_alike(photo_corpus):
    path = photo_corpus[0].path
    with open(path, "rb") as fh:
        assert (
            hash_image(path)
            == hash_image(path.read_bytes())
            == hash_image(fh)
            == hash_image(str(path))
        )


@pytest.mark.parametrize("orientation", [2, 3, 4, 5, 6, 7, 8])
def test_exif_rotated_png_hashes_exactly_like_its_upright_twin(orientation):
    upright = corpus.photo("chelsea.png").convert("RGB")
    rotated = hash_image(corpus.with_orientation(upright, orientation))
    plain = hash_image(corpus.encode(upright, "PNG"))
    assert (rotated["pdq"], rotated["phash"]) == (plain["pdq"], plain["phash"])
    assert rotated["md5"] != plain["md5"]


def test_variants_stay_within_the_match_thresholds_of_their_original(photo_corpus):
    originals = {f.twin: hash_image(f.path) for f in photo_corpus if f.variant == "original-png"}
    worst_pdq = worst_phash = 0
    for item in photo_corpus:
        # A half-transparent variant is a visibly different picture (blended with white); it is
        # in the corpus for the exact-equality test, not for robustness.
        if item.twin in corpus.TEXTURES or item.variant == "transparent-png":
            continue
        h, o = hash_image(item.path), originals[item.twin]
        d_pdq = formats.hamming_distance(h["pdq"], o["pdq"])
        d_phash = formats.hamming_distance(h["phash"], o["phash"])
        if item.variant != "cropped-1pct":  # pHash is not crop-tolerant by design; PDQ is
            assert d_phash <= formats.PHASH_MATCH_DISTANCE, (item, d_phash)
            worst_phash = max(worst_phash, d_phash)
        assert d_pdq <= formats.PDQ_MATCH_DISTANCE, (item, d_pdq)
        worst_pdq = max(worst_pdq, d_pdq)
    assert worst_pdq > 0  # the variants really are different pixels


def test_unrelated_photos_are_far_apart(photo_corpus):
    originals = [hash_image(f.path) for f in photo_corpus if f.variant == "original-png"]
    usable = [h for h in originals if h["pdq_quality"] >= formats.PDQ_MIN_QUALITY]
    assert len(usable) >= 12
    for a, b in itertools.combinations(usable, 2):
        assert formats.hamming_distance(a["pdq"], b["pdq"]) > formats.PDQ_MATCH_DISTANCE
        assert formats.hamming_distance(a["phash"], b["phash"]) > formats.PHASH_MATCH_DISTANCE


@pytest.mark.parametrize(
    "image",
    [
        Image.new("RGB", (400, 300), (0, 0, 0)),
        Image.new("RGB", (400, 300), (255, 255, 255)),
        Image.new("RGB", (640, 480), (90, 140, 200)),
        Image.new("RGBA", (200, 200), (0, 0, 0, 0)),  # fully transparent: white after compositing
    ],
    ids=["black", "white", "flat-colour", "transparent"],
)
def test_featureless_images_get_quality_below_50_and_are_not_publishable(image):
    result = hash_image(corpus.encode(image, "PNG"))
    assert result["pdq_quality"] < formats.PDQ_MIN_QUALITY
    assert not formats.pdq_publishable(result["pdq_quality"])
    assert not formats.phash_publishable(result["phash"])


def test_real_photos_are_publishable(photo_corpus):
    for item in photo_corpus:
        if item.variant == "original-png" and item.twin not in ("page", "moon"):
            result = hash_image(item.path)
            assert formats.pdq_publishable(result["pdq_quality"]), item


def test_transparency_is_composited_over_white():
    base = corpus.photo("astronaut.png").convert("RGB")
    rgba = base.copy()
    rgba.putalpha(Image.linear_gradient("L").resize(base.size))
    flattened = Image.alpha_composite(Image.new("RGBA", base.size, "white"), rgba).convert("RGB")
    a, b = hash_image(corpus.encode(rgba, "PNG")), hash_image(corpus.encode(flattened, "PNG"))
    assert (a["pdq"], a["phash"]) == (b["pdq"], b["phash"])
    # ... and not over black, which is what dropping the alpha channel would amount to.
    c = hash_image(corpus.encode(rgba.convert("RGB"), "PNG"))
    assert formats.hamming_distance(a["pdq"], c["pdq"]) > 0


def test_animated_images_hash_their_first_frame():
    frames = [corpus.smooth_noise(seed) for seed in (1, 2, 3)]
    gif = corpus.encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=200)
    animated = Image.open(io.BytesIO(gif))
    assert animated.n_frames == 3
    first = animated.convert("RGB")
    animated.seek(1)
    second = animated.convert("RGB")
    result = hash_image(gif)
    expected = hash_image(corpus.encode(first, "PNG"))
    assert (result["pdq"], result["phash"]) == (expected["pdq"], expected["phash"])
    assert result["pdq"] != hash_image(corpus.encode(second, "PNG"))["pdq"]


def png_claiming_size(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims a huge image (a decompression bomb)."""
    data = bytearray(corpus.encode(Image.new("L", (8, 8)), "PNG"))
    ihdr = 8 + 8  # signature, then length and type of the IHDR chunk
    data[ihdr : ihdr + 8] = width.to_bytes(4, "big") + height.to_bytes(4, "big")
    crc = zlib.crc32(bytes(data[ihdr - 4 : ihdr + 13]))
    data[ihdr + 13 : ihdr + 17] = crc.to_bytes(4, "big")
    return bytes(data)


JPEG = corpus.encode(corpus.photo("coffee.png").convert("RGB"), "JPEG", quality=90)


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"", "empty"),
        (b"hello, this is a text file\n" * 20, "unsupported"),
        (os.urandom(4096), "unsupported"),
        (JPEG[: len(JPEG) // 2], "truncated"),
        # (seeded: about 1 in 15 random middles decodes, with warnings only, into an image)
        (JPEG[:2000] + random.Random(0).randbytes(3000) + JPEG[-1000:], "truncated"),
        (png_claiming_size(40_000, 40_000), "too_large"),
        (b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n", "unsupported"),
    ],
    ids=["empty", "text", "random", "truncated-jpeg", "corrupt-jpeg", "bomb", "pdf"],
)
def test_bad_files_raise_one_readable_error(data, code):
    with pytest.raises(HashingError) as info:
        hash_image(data)
    assert info.value.code == code
    message = str(info.value)
    assert message.endswith(".") and "Traceback" not in message and len(message) > 10


def test_missing_file_is_a_hashing_error(tmp_path):
    with pytest.raises(HashingError, match="cannot be read"):
        hash_image(tmp_path / "missing.jpg")


def test_fast_mode_stays_close_to_exact_on_large_jpegs(tmp_path):
    for name in ("astronaut.png", "coffee.png", "rocket.jpg"):
        big = corpus.photo(name).convert("RGB").resize((3200, 2400), Image.Resampling.BICUBIC)
        path = tmp_path / f"{name}.jpg"
        big.save(path, quality=92)
        exact, fast = hash_image(path), hash_image(path, mode="fast")
        assert fast["md5"] == exact["md5"]
        assert formats.hamming_distance(fast["pdq"], exact["pdq"]) <= 8
        assert formats.hamming_distance(fast["phash"], exact["phash"]) <= 2


def test_no_django_anywhere_in_tidkit():
    root = Path(__file__).resolve().parents[2] / "tidkit"
    importing_django = re.compile(r"^\s*(import|from)\s+(django|rest_framework)\b", re.MULTILINE)
    for path in root.rglob("*.py"):
        assert not importing_django.search(path.read_text()), path
    code = "import tidkit.hashing, tidkit.formats, sys; print('django' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root.parent
    )
    assert out.stdout.strip() == "False"
