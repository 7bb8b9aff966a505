// What a file is, and its canonical pixels (DESIGN.md section 3): decoded, EXIF orientation
// applied, transparency composited over opaque white, first frame of an animation. Works in a
// window and in a Web Worker (createImageBitmap and OffscreenCanvas exist in both).
//
// Exactness against tidkit (Pillow), measured in Chromium on the test corpus and on a PNG and a
// lossless WebP holding every (colour, alpha) pair:
// - imageOrientation "from-image" applies EXIF orientation exactly as ImageOps.exif_transpose,
//   for JPEG and PNG. Chromium ignores the EXIF orientation of WebP files, which Pillow applies:
//   where the browser is found to do so, the orientation is read here and applied while drawing.
// - colorSpaceConversion "none" leaves pixels as stored, as Pillow does (no ICC transform).
// - premultiplyAlpha "none" keeps the decoded colours unpremultiplied; drawing that bitmap over
//   an opaque white canvas then gives, byte for byte, Pillow's alpha_composite(white, rgba).
//   (The default, premultiplied, bitmap loses precision and is off by one level on lossless
//   WebP with alpha.) tests/browser/test_hashing_agreement.py keeps this checked.

import { HashingError } from "./hash-error.js";

// As tidkit.hashing.MAX_IMAGE_PIXELS: larger than any camera, far below a decompression bomb.
export const MAX_IMAGE_PIXELS = 250_000_000;

const BITMAP_OPTIONS = {
  imageOrientation: "from-image",
  colorSpaceConversion: "none",
  premultiplyAlpha: "none",
};

// Image formats that browsers decode: a decoding failure on one of these means a damaged file.
const DECODABLE = new Set(["jpeg", "png", "gif", "webp", "bmp", "ico", "avif"]);
// ISO base media ("ftyp") brands that are still images rather than movies.
const IMAGE_BRANDS = new Set([
  "avif", "avis", "heic", "heix", "heim", "heis", "hevc", "hevx", "mif1", "msf1",
]);
const HEAD_BYTES = 64;
// JPEG keeps its dimensions after the metadata segments (EXIF can be 64 KiB, several APPn more).
const JPEG_SCAN_BYTES = 1024 * 1024;

function ascii(bytes, start, length) {
  return String.fromCharCode(...bytes.subarray(start, start + length));
}

async function readBytes(file, start, end) {
  try {
    return new Uint8Array(await file.slice(start, end).arrayBuffer());
  } catch (error) {
    throw new HashingError(
      "The file cannot be read. It may have been moved, deleted or changed since it was chosen.",
      "unreadable",
      { cause: error },
    );
  }
}

/**
 * Recognise a file from its first bytes (the name and the browser's MIME type can lie or be
 * missing). Returns {kind: "image" | "video" | "unknown", format}.
 */
export async function sniff(file) {
  const b = await readBytes(file, 0, HEAD_BYTES);
  const at = (offset, ...values) => values.every((v, i) => b[offset + i] === v);
  const text = (offset, length) => ascii(b, offset, length);
  const image = (format) => ({ kind: "image", format });
  const video = (format) => ({ kind: "video", format });
  if (at(0, 0xff, 0xd8, 0xff)) return image("jpeg");
  if (at(0, 0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a)) return image("png");
  if (text(0, 6) === "GIF87a" || text(0, 6) === "GIF89a") return image("gif");
  if (text(0, 4) === "RIFF" && text(8, 4) === "WEBP") return image("webp");
  if (text(0, 4) === "RIFF" && text(8, 4) === "AVI ") return video("avi");
  if (text(0, 2) === "BM" && at(6, 0, 0, 0, 0)) return image("bmp"); // reserved bytes are 0
  if (at(0, 0x00, 0x00, 0x01, 0x00)) return image("ico");
  if (at(0, 0x49, 0x49, 0x2a, 0x00) || at(0, 0x4d, 0x4d, 0x00, 0x2a)) return image("tiff");
  if (text(4, 4) === "ftyp") {
    // MP4, MOV, 3GP and friends, unless the major brand says still image (AVIF, HEIC).
    const brand = text(8, 4);
    if (IMAGE_BRANDS.has(brand)) return image(brand.startsWith("avi") ? "avif" : "heif");
    return video("mp4");
  }
  if (at(0, 0x1a, 0x45, 0xdf, 0xa3)) return video("matroska"); // also WebM
  if (text(0, 4) === "OggS") return video("ogg");
  if (at(0, 0x00, 0x00, 0x01, 0xba)) return video("mpeg");
  if (b[0] === 0x47 && file.size > 188 && (await readBytes(file, 188, 189))[0] === 0x47) {
    return video("mpeg-ts");
  }
  if (file.type.startsWith("video/")) return video("unknown");
  return { kind: "unknown", format: "unknown" };
}

// Width and height from the header, where that is cheap, so that a decompression bomb is refused
// before the browser tries to allocate it. Null when unknown (the decoded size is checked too).
async function headerSize(file, format) {
  const b = await readBytes(file, 0, format === "jpeg" ? JPEG_SCAN_BYTES : 32);
  const be16 = (o) => (b[o] << 8) | b[o + 1];
  const le16 = (o) => b[o] | (b[o + 1] << 8);
  const be32 = (o) => ((b[o] << 24) | (b[o + 1] << 16) | (b[o + 2] << 8) | b[o + 3]) >>> 0;
  const le32 = (o) => (b[o] | (b[o + 1] << 8) | (b[o + 2] << 16) | (b[o + 3] << 24)) >>> 0;
  if (format === "png" && b.length >= 24) return [be32(16), be32(20)];
  if (format === "gif" && b.length >= 10) return [le16(6), le16(8)];
  if (format === "bmp" && b.length >= 26) return [le32(18) | 0, Math.abs(le32(22) | 0)];
  if (format === "webp" && b.length >= 30) {
    const chunk = ascii(b, 12, 4);
    const le24 = (o) => b[o] | (b[o + 1] << 8) | (b[o + 2] << 16);
    if (chunk === "VP8X") return [1 + le24(24), 1 + le24(27)];
    if (chunk === "VP8 ") return [le16(26) & 0x3fff, le16(28) & 0x3fff];
    if (chunk === "VP8L") {
      const bits = le32(21);
      return [1 + (bits & 0x3fff), 1 + ((bits >>> 14) & 0x3fff)];
    }
  }
  if (format === "jpeg") {
    // Walk the marker segments to the first start-of-frame (SOF0-15 except DHT, JPG, DAC).
    let offset = 2;
    while (offset + 9 < b.length) {
      if (b[offset] !== 0xff) return null;
      const marker = b[offset + 1];
      if (marker === 0xff) {
        offset += 1; // fill byte
        continue;
      }
      if (marker >= 0xc0 && marker <= 0xcf && ![0xc4, 0xc8, 0xcc].includes(marker)) {
        return [be16(offset + 7), be16(offset + 5)];
      }
      if (marker === 0xd9 || marker === 0xda) return null;
      offset += 2 + be16(offset + 2);
    }
  }
  return null;
}

// The orientation tag (0x0112) of IFD0 in an EXIF block ("Exif\0\0" prefix optional), 1 if none.
function exifOrientation(exif) {
  const base = ascii(exif, 0, 6) === "Exif\0\0" ? 6 : 0;
  const order = ascii(exif, base, 2);
  if (order !== "II" && order !== "MM") return 1;
  const little = order === "II";
  const u16 = (o) => (little ? exif[o] | (exif[o + 1] << 8) : (exif[o] << 8) | exif[o + 1]);
  const u32 = (o) => (little ? u16(o) + u16(o + 2) * 65536 : u16(o) * 65536 + u16(o + 2));
  const ifd = base + u32(base + 4);
  if (ifd + 2 > exif.length) return 1;
  for (let i = 0, count = u16(ifd); i < count && ifd + 14 + 12 * i <= exif.length; i++) {
    const entry = ifd + 2 + 12 * i;
    if (u16(entry) === 0x0112) {
      const value = u16(entry + 8);
      return value >= 1 && value <= 8 ? value : 1;
    }
  }
  return 1;
}

// The EXIF orientation of an extended WebP file (its EXIF chunk usually follows the image data:
// only the chunk headers are read on the way).
async function webpOrientation(file) {
  if (ascii(await readBytes(file, 12, 16), 0, 4) !== "VP8X") return 1;
  for (let offset = 12; offset + 8 <= file.size; ) {
    const head = await readBytes(file, offset, offset + 8);
    const size = (head[4] | (head[5] << 8) | (head[6] << 16) | (head[7] << 24)) >>> 0;
    if (ascii(head, 0, 4) === "EXIF") {
      return exifOrientation(await readBytes(file, offset + 8, offset + 8 + size));
    }
    offset += 8 + size + (size & 1); // chunks are padded to an even length
  }
  return 1;
}

// A 2x1 lossless WebP tagged "rotate 90° clockwise" (EXIF orientation 6).
const ROTATED_WEBP =
  "UklGRlIAAABXRUJQVlA4WAoAAAAIAAAAAQAAAAAAVlA4TBEAAAAvAQAAAA8Q87//8x8OMqL/AQBFWElGGgAAAE1NACoA" +
  "AAAIAAEBEgADAAAAAQAGAAAAAAAA";
let webpOrientationHonoured = null;

/** Whether this browser applies a WebP file's EXIF orientation itself (found out once). */
function browserOrientsWebp() {
  webpOrientationHonoured ??= (async () => {
    const bytes = Uint8Array.from(atob(ROTATED_WEBP), (c) => c.charCodeAt(0));
    try {
      const blob = new Blob([bytes], { type: "image/webp" });
      const bitmap = await createImageBitmap(blob, BITMAP_OPTIONS);
      const rotated = bitmap.width === 1;
      bitmap.close();
      return rotated;
    } catch {
      return true; // cannot tell: trust the browser
    }
  })();
  return webpOrientationHonoured;
}

// Canvas transforms (a, b, c, d, e, f) that draw a stored w x h bitmap upright, per EXIF
// orientation: Pillow's exif_transpose. Whole-pixel flips and quarter turns, drawn without
// smoothing, copy pixels exactly.
const ORIENTATIONS = {
  2: (w) => [-1, 0, 0, 1, w, 0], // mirror left-right
  3: (w, h) => [-1, 0, 0, -1, w, h], // rotate 180°
  4: (w, h) => [1, 0, 0, -1, 0, h], // mirror top-bottom
  5: () => [0, 1, 1, 0, 0, 0], // transpose
  6: (w, h) => [0, 1, -1, 0, h, 0], // rotate 90° clockwise
  7: (w, h) => [0, -1, -1, 0, h, w], // transverse
  8: (w) => [0, -1, 1, 0, 0, w], // rotate 90° counter-clockwise
};

function tooLarge(width, height, detail = "") {
  return new HashingError(
    `The image is too large to process (${width}×${height} pixels)${detail}.`,
    "too_large",
  );
}

/**
 * Decode an image file to its canonical pixels, drawn on a canvas and read back in strips:
 * {width, height, readRows(y, count) -> RGBA bytes of rows y..y+count-1 (alpha all 255),
 * close()}. `format` is sniff()'s. Reading strips keeps one full-size copy of the pixels in
 * memory (the canvas) instead of two or three. Rejects with HashingError: unsupported,
 * truncated, too_large, unreadable.
 */
export async function openCanonical(file, format) {
  const declared = await headerSize(file, format);
  if (declared && declared[0] * declared[1] > MAX_IMAGE_PIXELS) throw tooLarge(...declared);
  // Orientation the browser leaves for us to apply (WebP in Chromium), 1 otherwise.
  let orientation = 1;
  if (format === "webp" && !(await browserOrientsWebp())) orientation = await webpOrientation(file);
  let bitmap;
  try {
    bitmap = await createImageBitmap(file, BITMAP_OPTIONS);
  } catch (error) {
    if (DECODABLE.has(format)) {
      throw new HashingError(
        "The image file is damaged or incomplete and could not be read.",
        "truncated",
        { cause: error },
      );
    }
    throw new HashingError(
      "The file is not an image this service can read (JPEG, PNG, WebP, GIF, ...).",
      "unsupported",
      { cause: error },
    );
  }
  const swap = orientation >= 5;
  const width = swap ? bitmap.height : bitmap.width;
  const height = swap ? bitmap.width : bitmap.height;
  let canvas = null;
  let context = null;
  try {
    if (width * height > MAX_IMAGE_PIXELS) throw tooLarge(width, height);
    try {
      canvas = new OffscreenCanvas(width, height);
      context = canvas.getContext("2d", { willReadFrequently: true });
    } catch {
      // Handled below: the browser refused a canvas this large.
    }
    if (!context) throw tooLarge(width, height, " for this browser");
    context.fillStyle = "#ffffff";
    context.fillRect(0, 0, width, height);
    if (orientation !== 1) {
      context.imageSmoothingEnabled = false;
      context.setTransform(...ORIENTATIONS[orientation](bitmap.width, bitmap.height));
    }
    context.drawImage(bitmap, 0, 0);
    context.resetTransform();
  } finally {
    bitmap.close();
  }
  return {
    width,
    height,
    readRows(y, count) {
      try {
        return context.getImageData(0, y, width, count).data;
      } catch (error) {
        if (error instanceof RangeError) throw tooLarge(width, height, " for this browser");
        throw error;
      }
    },
    close() {
      // Frees the canvas's pixels now rather than at the next garbage collection.
      canvas.width = 0;
      canvas.height = 0;
    },
  };
}

/** The whole canonical image at once: {width, height, data} with data the RGBA bytes. */
export async function decodeCanonical(file, format) {
  const image = await openCanonical(file, format);
  try {
    return { width: image.width, height: image.height, data: image.readRows(0, image.height) };
  } finally {
    image.close();
  }
}
