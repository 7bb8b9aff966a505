// Module Web Worker that fingerprints files off the page's main thread, so that the page stays
// responsive while a 12-megapixel photo is decoded and hashed.
//
//   const worker = new Worker("/static/tid/hash-worker.js", { type: "module" });
//
// Message protocol (structured clone; a File is passed by reference, its bytes are not copied):
//
//   page -> worker   {id, file}
//                    id: any value the page chooses, echoed in every answer about that file.
//                    file: a File or Blob.
//
//   worker -> page   {id, type: "progress", fraction}   0..1, non-decreasing, any number of times
//                    {id, type: "result", result}       exactly one of these two, last
//                    {id, type: "error", message, code}
//
//   result is what hashFile() (hashing.js) resolves to. message is a readable English sentence;
//   code is stable for the page to act on or translate (hash-error.js lists them). In particular:
//
//   code "video_in_window": the file is a video. Decoding video needs a <video> element, which
//   a worker does not have: call hashFile(file) from the page for it. The worker answers this
//   at once, before reading more than the file's first bytes.
//
// Files are hashed one at a time, in the order received (a decoded photo takes tens of MB; a
// page wanting parallelism starts several workers). A malformed message is answered with
// {id, type: "error", code: "bad_request"} when it has an id, and ignored otherwise.

import { hashFile } from "./hashing.js";

let queue = Promise.resolve();

async function handle(id, file) {
  try {
    const result = await hashFile(file, {
      onProgress: (fraction) => self.postMessage({ id, type: "progress", fraction }),
    });
    self.postMessage({ id, type: "result", result });
  } catch (error) {
    self.postMessage({
      id,
      type: "error",
      message: error?.message || "The file could not be fingerprinted.",
      code: error?.code || "error",
    });
  }
}

self.addEventListener("message", (event) => {
  const { id, file } = event.data ?? {};
  if (id === undefined) return;
  if (!(file instanceof Blob)) {
    const message = "No file was given to hash.";
    self.postMessage({ id, type: "error", message, code: "bad_request" });
    return;
  }
  queue = queue.then(() => handle(id, file));
});
