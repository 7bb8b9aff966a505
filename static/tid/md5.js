// MD5 of a file's bytes exactly as selected (DESIGN.md section 3), read in slices so that a
// multi-gigabyte video is never in memory at once. The digest itself is @noble/hashes (audited,
// maintained), installed by `npm ci` and served from node_modules under /static/vendor/ by
// STATICFILES_DIRS; no build step.

import { md5 } from "../vendor/noble-hashes/legacy.js";
import { HashingError } from "./hash-error.js";

export const CHUNK_BYTES = 4 * 1024 * 1024;

function hex(bytes) {
  let out = "";
  for (const byte of bytes) out += byte.toString(16).padStart(2, "0");
  return out;
}

/**
 * Lowercase hex MD5 of a Blob/File. `onProgress(fraction)` is called after each slice.
 * Rejects with HashingError("unreadable") if the browser cannot read the file (for example, it
 * was moved or deleted after being chosen).
 */
export async function md5File(file, { onProgress, chunkBytes = CHUNK_BYTES } = {}) {
  const digest = md5.create();
  for (let offset = 0; offset < file.size; offset += chunkBytes) {
    let chunk;
    try {
      chunk = await file.slice(offset, offset + chunkBytes).arrayBuffer();
    } catch (error) {
      throw new HashingError(
        "The file cannot be read. It may have been moved, deleted or changed since it was chosen.",
        "unreadable",
        { cause: error },
      );
    }
    digest.update(new Uint8Array(chunk));
    onProgress?.(Math.min(1, (offset + chunk.byteLength) / file.size));
  }
  return hex(digest.digest());
}
