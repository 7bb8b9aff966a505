"""Real photographs and their variants, made on the fly from the photos scikit-image ships.

Each variant is a file on disk as a reporter would select it. ``CorpusFile.twin`` names the
original photo a variant comes from (itself for originals), so tests can compare related and
unrelated pairs. Nothing here is committed: the files are regenerated per test session.
"""

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import skimage
from PIL import Image

PHOTOS = [
    "astronaut.png",
    "chelsea.png",
    "coffee.png",
    "rocket.jpg",
    "camera.png",
    "motorcycle_left.png",
    "hubble_deep_field.jpg",
    "retina.jpg",
    "ihc.png",
    "page.png",
    "coins.png",
    "moon.png",
    "brick.png",
    "grass.png",
    "gravel.png",
    "horse.png",
]
# Fine textures and a scanned page: real photographs, but perceptual hashes are known to be fragile
# on them (a 1% crop moves a brick wall's PDQ by ~80 bits). They stay in the corpus for the
# exact-equality tests and are left out of the robustness ones, which are about scenes and people.
TEXTURES = {"page", "brick", "grass", "gravel"}
DATA_DIR = Path(skimage.__file__).parent / "data"

# EXIF orientation tag values and the transpose that *stores* an upright image so that applying
# the orientation on display makes it upright again.
ORIENTATION_STORE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


@dataclass(frozen=True)
class CorpusFile:
    path: Path
    twin: str  # the photo it derives from
    variant: str  # "original", "jpeg-q75", ...

    def __str__(self) -> str:
        return f"{self.twin}:{self.variant}"


def photo(name: str) -> Image.Image:
    image = Image.open(DATA_DIR / name)
    image.load()
    return image


def encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def with_orientation(
    image: Image.Image, orientation: int, fmt: str = "PNG", **params: object
) -> bytes:
    """Store ``image`` transposed, tagged so that a viewer applying EXIF shows it upright."""
    stored = image.transpose(ORIENTATION_STORE[orientation])
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(stored, fmt, exif=exif, **params)


def variants(image: Image.Image) -> dict[str, bytes]:
    """The ways a photo reaches a platform again: re-encoded, resized, cropped, converted."""
    rgb = image.convert("RGB")
    w, h = rgb.size
    crop = max(1, round(min(w, h) * 0.01))
    alpha = rgb.copy()
    alpha.putalpha(Image.linear_gradient("L").resize(rgb.size).point(lambda v: 128 + v // 2))
    return {
        "original-png": encode(rgb, "PNG"),
        "jpeg-q90": encode(rgb, "JPEG", quality=90),
        "jpeg-q75": encode(rgb, "JPEG", quality=75),
        "jpeg-progressive": encode(rgb, "JPEG", quality=85, progressive=True),
        "resized-half": encode(
            rgb.resize((w // 2, h // 2), Image.Resampling.LANCZOS), "JPEG", quality=90
        ),
        "resized-up": encode(rgb.resize((w * 3 // 2, h * 3 // 2), Image.Resampling.BICUBIC), "PNG"),
        "cropped-1pct": encode(rgb.crop((crop, crop, w - crop, h - crop)), "JPEG", quality=90),
        "grayscale": encode(rgb.convert("L"), "PNG"),
        "webp": encode(rgb, "WEBP", quality=80),
        "transparent-png": encode(alpha, "PNG"),
        "exif-rotate-6-jpeg": with_orientation(rgb, 6, "JPEG", quality=90),
        "exif-rotate-3-png": with_orientation(rgb, 3),
    }


def build(root: Path) -> list[CorpusFile]:
    files = []
    for name in PHOTOS:
        stem = name.split(".")[0]
        for variant, data in variants(photo(name)).items():
            ext = {
                "original-png": "png",
                "resized-up": "png",
                "grayscale": "png",
                "webp": "webp",
                "transparent-png": "png",
                "exif-rotate-3-png": "png",
            }.get(variant, "jpg")
            path = root / f"{stem}-{variant}.{ext}"
            path.write_bytes(data)
            files.append(CorpusFile(path=path, twin=stem, variant=variant))
    return files


def smooth_noise(seed: int, size: tuple[int, int] = (640, 480)) -> Image.Image:
    """A random but photo-like (smooth) picture, for tests needing many distinct images."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(size[1] // 10, size[0] // 10, 3), dtype=np.uint8)
    return Image.fromarray(small).resize(size, Image.Resampling.BICUBIC)


def write_video(
    path: Path,
    scenes: list[Image.Image],
    *,
    seconds_per_scene: float = 1.0,
    fps: int = 10,
    size: tuple[int, int] = (320, 240),
    codec: str = "libx264",
    crf: int = 23,
    start_offset_frames: int = 0,
    rotation: int = 0,
) -> Path:
    """Encode ``scenes`` as a video, each shown for ``seconds_per_scene`` (a slideshow), with a
    display matrix turning it ``rotation`` degrees counter-clockwise (as a phone stores a
    portrait video: sideways, with a rotation to show it upright) unless 0."""
    import av

    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        if rotation:
            stream.set_display_rotation(rotation)
        if codec == "libx264":
            stream.options = {"crf": str(crf), "preset": "veryfast"}
        pts = start_offset_frames
        for scene in scenes:
            rgb = np.asarray(scene.convert("RGB").resize(size, Image.Resampling.BILINEAR))
            for _ in range(round(seconds_per_scene * fps)):
                frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
                frame.pts = pts
                pts += 1
                for packet in stream.encode(frame):
                    container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
