// Fingerprints of a reporter's image or video, computed on the device (DESIGN.md sections 3, 6).
// ES modules, no build step; the same code runs in a window and in static/tid/hash-worker.js.
//
//   import { hashFile } from "/static/tid/hashing.js";
//   const result = await hashFile(file, { onProgress: (fraction) => ... });
//
// Images resolve to {media_type: "image", md5, pdq, pdq_quality, phash}, videos to
// {media_type: "video", md5, vpdq: [{t, pdq, q}, ...]}: the keys and values of
// tidkit.hashing.hash_image / hash_video, lowercase hex. Image hashes equal tidkit's bit for bit
// (PDQ as the C++ reference in the pdqhash package, pHash as imagehash.phash); see pdq.js,
// phash.js and image.js for how, and tests/browser/test_hashing_agreement.py for the measurement.
//
// Videos need a <video> element, so hashFile on a video must be called from a window; in a Web
// Worker it rejects with code "video_in_window" (the worker tells the page to hash it there).
//
// Failures reject with a HashingError (hash-error.js): a readable English sentence as `message`
// and a stable `code` for the page to translate.
//
// onProgress(fraction) is called with non-decreasing values from 0 to 1 as work proceeds.

import { HashingError } from "./hash-error.js";
import { openCanonical, sniff } from "./image.js";
import { md5File } from "./md5.js";
import { createPdqHasher, lumaRowFromRGBA } from "./pdq.js";
import { createPhashHasher, grayRowFromRGBA } from "./phash.js";
import { hashVideo } from "./video.js";

export { HashingError };

// Shares of the progress bar for an image, roughly the time each step takes on a 12 MP photo.
const DECODE_SHARE = 0.4;
const MD5_SHARE = 0.1;
// Pixels are read back from the canvas about a megabyte at a time: fresh in the cache when the
// hashes read them, and never a second full-size copy of the image.
const STRIP_PIXELS = 1 << 18;
// On a page's main thread (no worker available), let the page paint and respond this often.
const PAUSE_EVERY_MS = 50;

function progressReporter(onProgress) {
  let last = 0;
  return (fraction) => {
    // Never backwards, never beyond 1, and tolerate a callback that throws: hashing goes on.
    const value = Math.min(1, Math.max(last, fraction));
    last = value;
    try {
      onProgress?.(value);
    } catch (error) {
      console.error(error);
    }
  };
}

/** Hash one image or video file. See the top of this module. */
export async function hashFile(file, { onProgress } = {}) {
  if (!(file instanceof Blob)) throw new TypeError("hashFile expects a File or Blob");
  const report = progressReporter(onProgress);
  report(0);
  if (file.size === 0) throw new HashingError("The file is empty.", "empty");
  const { kind, format } = await sniff(file);
  if (kind === "video") return hashVideo(file, { onProgress: report });
  return hashImage(file, format, report);
}

async function hashImage(file, format, report) {
  // Decode first: a damaged or unsupported file fails before any other work.
  const image = await openCanonical(file, format);
  try {
    report(DECODE_SHARE);
    const md5 = await md5File(file, {
      onProgress: (f) => report(DECODE_SHARE + f * MD5_SHARE),
    });
    const { hash, quality, phash } = await hashPixels(image, (f) =>
      report(DECODE_SHARE + MD5_SHARE + f * (1 - DECODE_SHARE - MD5_SHARE)),
    );
    report(1);
    return { media_type: "image", md5, pdq: hash, pdq_quality: quality, phash };
  } finally {
    image.close();
  }
}

// One sweep over the pixels feeds both hashes a row at a time: PDQ's float luminance and
// Pillow's 8-bit grey are made per row, so no full-size grey or float copy is ever held.
async function hashPixels({ width, height, readRows }, onProgress) {
  const pdq = createPdqHasher(width, height);
  const phash = createPhashHasher(width, height);
  const luma = new Float32Array(width);
  const gray = new Uint8Array(width);
  const stripRows = Math.max(1, Math.floor(STRIP_PIXELS / width));
  const onMainThread = typeof document !== "undefined";
  let lastPause = performance.now();
  for (let y = 0; y < height; y += stripRows) {
    const count = Math.min(stripRows, height - y);
    const strip = readRows(y, count);
    for (let r = 0; r < count; r++) {
      lumaRowFromRGBA(strip, 4 * r * width, width, luma);
      grayRowFromRGBA(strip, 4 * r * width, width, gray);
      pdq.pushRow(luma);
      phash.pushRow(gray);
    }
    onProgress((y + count) / height);
    if (onMainThread && performance.now() - lastPause > PAUSE_EVERY_MS) {
      await new Promise((resolve) => setTimeout(resolve, 0));
      lastPause = performance.now();
    }
  }
  return { ...pdq.finish(), phash: phash.finish() };
}
