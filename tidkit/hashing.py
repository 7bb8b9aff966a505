"""Fingerprint images and videos the way the reporter's browser does (DESIGN.md section 3).

Public API (stable for partners):

- ``hash_image(source, *, mode="exact") -> dict`` with ``media_type, md5, pdq, pdq_quality, phash``
- ``hash_video(source, *, threads=0) -> dict`` with ``media_type, md5, vpdq``
- ``HashingError`` (from tidkit.errors) for every file that cannot be hashed.

Canonical preprocessing, identical in the browser: decode; apply the EXIF orientation; composite
any transparency over opaque white; for animated images use the first frame. One decode serves
every hash type.

Modes
-----
``exact`` hashes the full-resolution pixels and equals the references bit for bit: PDQ equals
Meta's C++ implementation (the ``pdqhash`` package) and pHash equals ``imagehash.phash``. The
server and the browser use it: the hashes a reporter submits must be the same whoever computes
them, and a reporter's handful of files makes speed irrelevant.

``fast`` lets the JPEG decoder scale the image down by a power of two while decoding (libjpeg's
DCT scaling, "draft" mode) and shrinks other large images with a box filter before hashing, so
that PDQ and pHash work on roughly a megapixel instead of twelve. It is for partners scanning at
volume (``tidkit scan`` uses it): matching has a 31-bit PDQ and 8-bit pHash tolerance, and
bench/hashing.py measures how far fast hashes land from exact ones (a few bits).
"""

import contextlib
import hashlib
import io
import math
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, Literal

import imagehash
import numpy as np
import pdqhash
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from tidkit.errors import HashingError

__all__ = ["HashingError", "hash_image", "hash_video", "md5_file", "image_hashes_from_pil"]

Source = str | os.PathLike[str] | bytes | IO[bytes]
Mode = Literal["exact", "fast"]

# Larger than any camera (a 200 MP phone sensor) yet far below what a decompression bomb claims.
MAX_IMAGE_PIXELS = 250_000_000
# The edge that fast mode aims for: at least this many pixels on the short side after draft.
FAST_MIN_EDGE = 512
# Videos: one frame per second from t=0, as vPDQ's default; cap the hashing work for a file.
VPDQ_SECONDS_PER_FRAME = 1
MAX_VIDEO_SECONDS = 4 * 60 * 60
_CHUNK = 1 << 20

ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated file is an error, never a partial hash


def hash_image(source: Source, *, mode: Mode = "exact") -> dict[str, Any]:
    """Hash one image file. Returns ``{media_type, md5, pdq, pdq_quality, phash}``.

    ``source`` is a path, the file's bytes, or a binary file object. Raises HashingError with a
    readable message for empty, corrupt, truncated, oversized or non-image files.
    """
    if mode not in ("exact", "fast"):
        raise ValueError("mode is 'exact' or 'fast'")
    data = _read_all(source)
    if not data:
        raise HashingError("The file is empty.", code="empty")
    image = _decode_canonical(data, mode=mode)
    pdq, quality, phash = image_hashes_from_pil(image)
    return {
        "media_type": "image",
        "md5": hashlib.md5(data, usedforsecurity=False).hexdigest(),
        "pdq": pdq,
        "pdq_quality": quality,
        "phash": phash,
    }


def image_hashes_from_pil(image: Image.Image) -> tuple[str, int, str]:
    """PDQ hex, PDQ quality and pHash hex of an already canonical RGB image."""
    if image.mode != "RGB":
        image = image.convert("RGB")
    pdq, quality = pdq_from_rgb(np.asarray(image))
    return pdq, quality, str(imagehash.phash(image))


def pdq_from_rgb(pixels: np.ndarray) -> tuple[str, int]:
    """PDQ of an RGB uint8 array (H, W, 3): hex as python-threatexchange prints it, and quality."""
    vector, quality = pdqhash.compute(np.ascontiguousarray(pixels, dtype=np.uint8))
    # The first bit of the vector is the most significant bit of the hex string.
    return np.packbits(vector.astype(np.uint8)).tobytes().hex(), int(quality)


def md5_file(path: str | os.PathLike[str]) -> str:
    """MD5 of a file read in chunks (memory stays flat for multi-gigabyte videos)."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def hash_video(source: str | os.PathLike[str], *, threads: int = 0) -> dict[str, Any]:
    """Hash one video file. Returns ``{media_type, md5, vpdq}``.

    ``threads`` is how many threads decode it: 0 lets FFmpeg choose (about one a core), which
    is right for one file at a time; where every core already hashes a file of its own (tidkit
    scan's workers), 1 does the same work with 6-8% less CPU.

    vpdq is a list of ``{"t": seconds, "pdq": hex, "q": quality}``, one frame per second from
    t=0: for each whole second t, the frame on screen at t (the last frame that starts at or
    before t), which is what a browser's video element shows after seeking to t, turned upright
    by the video's display rotation as the browser shows it. Raises HashingError for empty,
    unreadable or audio-only files.
    """
    import av  # imported here: image-only users need not load FFmpeg

    path = Path(source)
    try:
        if path.stat().st_size == 0:
            raise HashingError("The file is empty.", code="empty")
    except OSError as exc:
        raise HashingError(f"The file cannot be read: {exc.strerror}.", code="unreadable") from exc
    md5 = md5_file(path)
    try:
        container = av.open(str(path), mode="r")
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise _unreadable_video() from exc
    with container:
        if not container.streams.video:
            raise HashingError("The file has no video in it.", code="no_video_stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        stream.thread_count = threads
        frames: list[dict[str, Any]] = []
        try:
            for t, frame in _frames_each_second(container.decode(stream)):
                pdq, quality = pdq_from_rgb(_upright(frame))
                frames.append({"t": t, "pdq": pdq, "q": quality})
        except (av.FFmpegError, OSError, ValueError) as exc:
            raise _unreadable_video() from exc
    if not frames:
        raise HashingError("No frame of the video could be decoded.", code="unreadable")
    return {"media_type": "video", "md5": md5, "vpdq": frames}


def _upright(frame: Any) -> np.ndarray:
    """The frame's RGB pixels as the video is shown: turned by its display matrix, as browsers
    (and players) do. Phone videos are mostly stored sideways with a 90-degree rotation to show
    them upright, and the reporter's browser hashes the upright frames; so must we, or a
    portrait phone video would never match its own report. (``frame.rotation`` is the matrix's
    counter-clockwise rotation; a mirroring in the matrix, which cameras do not write, is not
    applied.)"""
    rgb = frame.to_ndarray(format="rgb24")
    turns = round((frame.rotation or 0) / 90) % 4
    return np.rot90(rgb, k=turns)


def _unreadable_video() -> HashingError:
    return HashingError(
        "The file could not be read as a video. It may be damaged or in a format that is not "
        "supported.",
        code="unreadable",
    )


def _frames_each_second(decoded: Iterator[Any]) -> Iterator[tuple[int, Any]]:
    """Yield (t, frame) for t = 0, 1, 2, ...: the frame on screen at each whole second."""
    next_t = 0
    previous = None
    for frame in decoded:
        time = frame.time if frame.time is not None else 0.0
        # Every whole second that passed before this frame starts showed the previous frame.
        while previous is not None and time > next_t + 1e-6:
            yield next_t, previous
            next_t += VPDQ_SECONDS_PER_FRAME
            if next_t > MAX_VIDEO_SECONDS:
                return
        previous = frame
    if previous is not None and (next_t == 0 or (previous.time or 0.0) >= next_t - 1e-6):
        yield next_t, previous


def _read_all(source: Source) -> bytes:
    if isinstance(source, bytes | bytearray | memoryview):
        return bytes(source)
    if hasattr(source, "read"):
        return source.read()  # type: ignore[union-attr]
    try:
        return Path(source).read_bytes()  # type: ignore[arg-type]
    except OSError as exc:
        raise HashingError(f"The file cannot be read: {exc.strerror}.", code="unreadable") from exc


def _decode_canonical(data: bytes, *, mode: Mode) -> Image.Image:
    """Decode to the canonical RGB image of DESIGN.md section 3 (one decode for all hashes)."""
    with _readable_image_errors():
        image = Image.open(io.BytesIO(data))
    width, height = image.size
    # Checked from the header, before any pixel is decoded.
    if width * height > MAX_IMAGE_PIXELS:
        raise HashingError(
            f"The image is too large to process ({width}×{height} pixels).", code="too_large"
        )
    with _readable_image_errors():
        if mode == "fast" and image.format == "JPEG":
            _draft(image)
        image.seek(0)  # animated images: the first frame
        image.load()
        ImageOps.exif_transpose(image, in_place=True)
        image = _flatten(image)
        return _shrink(image) if mode == "fast" else image


@contextlib.contextmanager
def _readable_image_errors() -> Iterator[None]:
    """Turn Pillow's many failure modes into one HashingError with a readable message."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise HashingError("The image is too large to process.", code="too_large") from exc
    except UnidentifiedImageError as exc:
        raise HashingError(
            "The file is not an image this service can read (JPEG, PNG, WebP, GIF, ...).",
            code="unsupported",
        ) from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        # Pillow reports truncated and corrupt data as OSError ("image file is truncated").
        raise HashingError(
            "The image file is damaged or incomplete and could not be read.", code="truncated"
        ) from exc


def _draft(image: Image.Image) -> None:
    """Ask libjpeg to decode at the smallest power-of-two scale with both edges >= FAST_MIN_EDGE."""
    width, height = image.size
    if min(width, height) >= 2 * FAST_MIN_EDGE:
        scale = min(width, height) / FAST_MIN_EDGE
        target = (math.ceil(width / scale), math.ceil(height / scale))
        image.draft("RGB", target)


def _shrink(image: Image.Image) -> Image.Image:
    """Fast mode for formats without draft decoding: box-reduce large images by a whole factor."""
    factor = min(image.size) // FAST_MIN_EDGE
    return image.reduce(factor) if factor >= 2 else image


def _flatten(image: Image.Image) -> Image.Image:
    """Composite any transparency over opaque white and return an RGB image."""
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        # 16-bit grey: scale to 8 bits as a browser does, rather than clipping.
        image = image.point(lambda v: v / 256).convert("L")
    has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        image.mode == "P" and "transparency" in image.info
    )
    if not has_alpha:
        return image if image.mode == "RGB" else image.convert("RGB")
    rgba = image.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")
