// vPDQ in the browser: one PDQ per second of video from t = 0 (vPDQ's default), each taken from
// the frame on screen at that second, as tidkit.hashing.hash_video does with FFmpeg.
//
// Decoding needs an HTMLVideoElement, which exists only in a window: call hashVideo (or hashFile
// on a video) from the page's main thread, never from a Web Worker. The element is never added to
// the page; the file is played from an object URL, so nothing leaves the device.
//
// For t = 0, 1, 2, ...: seek (currentTime = t), wait for `seeked` and, where the browser has
// requestVideoFrameCallback, for the seeked frame to be presented; then draw it onto a canvas and
// hash its pixels with PDQ. A browser shows at time t the last frame that starts at or before t
// (the first frame for t = 0 if the video starts later), which is tidkit's rule. The last second
// sampled is the start time of the last frame, rounded down, again as tidkit does.
//
// The browser's YUV->RGB conversion is not FFmpeg's (a level or two apart on some pixels), so
// frame hashes are close to tidkit's rather than identical; vPDQ matching (frames within 31 bits,
// DESIGN.md section 3) absorbs that. The MD5 is exact.

import { HashingError } from "./hash-error.js";
import { md5File } from "./md5.js";
import { pdqFromRGBA } from "./pdq.js";

// Keep in step with tidkit.hashing.MAX_VIDEO_SECONDS.
const MAX_VIDEO_SECONDS = 4 * 60 * 60;
// How long to wait for the browser to load the file, or to finish one seek, before giving up.
const LOAD_TIMEOUT_MS = 30_000;
const SEEK_TIMEOUT_MS = 30_000;
// After `seeked`, how long to wait for the presented-frame callback. It normally comes before
// or with `seeked`; it never comes when the seek lands on the frame already shown (a video with
// less than one frame per second), so the wait must be short.
const PRESENT_GRACE_MS = 100;
// Reading is fast next to seeking and hashing: MD5 runs at hundreds of MB/s, a second of video
// costs about a tenth of a second. These weights only shape the progress bar.
const MD5_BYTES_PER_SECOND = 300e6;
const FRAME_SECONDS = 0.12;

function unreadable(cause) {
  return new HashingError(
    "The file could not be read as a video. It may be damaged or in a format this browser " +
      "cannot play.",
    "unreadable",
    { cause },
  );
}

function delay(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// Resolve on the first of `events`, reject on the element's `error` or after `timeoutMs`.
function once(video, events, timeoutMs) {
  return new Promise((resolve, reject) => {
    const cleanup = () => {
      clearTimeout(timer);
      for (const name of events) video.removeEventListener(name, onEvent);
      video.removeEventListener("error", onError);
    };
    const onEvent = (event) => {
      cleanup();
      resolve(event);
    };
    const onError = () => {
      cleanup();
      reject(unreadable(video.error));
    };
    const timer = setTimeout(() => {
      cleanup();
      reject(unreadable(new Error(`no ${events.join("/")} within ${timeoutMs} ms`)));
    }, timeoutMs);
    for (const name of events) video.addEventListener(name, onEvent);
    video.addEventListener("error", onError);
  });
}

// Seek to `t` and resolve once the frame on screen at `t` can be drawn, with its media time
// when the browser reports it (null otherwise).
async function seekTo(video, t) {
  let mediaTime = null;
  let presented = null;
  if (typeof video.requestVideoFrameCallback === "function") {
    presented = new Promise((resolve) => {
      video.requestVideoFrameCallback((_now, metadata) => {
        mediaTime = metadata.mediaTime;
        resolve();
      });
    });
  }
  const seeked = once(video, ["seeked"], SEEK_TIMEOUT_MS);
  video.currentTime = t;
  await seeked;
  if (presented) await Promise.race([presented, delay(PRESENT_GRACE_MS)]);
  return mediaTime;
}

// The media time of the frame now on screen: from the presentation callback if it came, else
// from a VideoFrame of the element (WebCodecs), else unknown.
function shownFrameTime(video, reported) {
  if (reported !== null) return reported;
  if (typeof VideoFrame === "function") {
    try {
      const frame = new VideoFrame(video);
      const seconds = frame.timestamp / 1e6;
      frame.close();
      return seconds;
    } catch {
      // Not every browser can wrap a paused element's frame; the caller falls back to duration.
    }
  }
  return null;
}

async function openVideo(file) {
  if (typeof document === "undefined") {
    throw new HashingError(
      "Videos can only be hashed on the page itself, not in a Web Worker.",
      "video_in_window",
    );
  }
  const video = document.createElement("video");
  video.muted = true;
  video.playsInline = true;
  video.preload = "auto";
  const url = URL.createObjectURL(file);
  const loaded = once(video, ["loadeddata"], LOAD_TIMEOUT_MS);
  video.src = url;
  try {
    await loaded;
  } catch (error) {
    release(video, url);
    throw error;
  }
  if (!video.videoWidth || !video.videoHeight) {
    release(video, url);
    throw new HashingError("The file has no video in it.", "no_video_stream");
  }
  return { video, url };
}

function release(video, url) {
  video.removeAttribute("src");
  video.load(); // releases the decoder and the file
  URL.revokeObjectURL(url);
}

async function durationOf(video) {
  if (Number.isFinite(video.duration)) return video.duration;
  // Files written by MediaRecorder often carry no duration: seeking far past the end makes the
  // browser scan to the end and learn it.
  const changed = once(video, ["durationchange", "seeked"], SEEK_TIMEOUT_MS);
  video.currentTime = Number.MAX_SAFE_INTEGER;
  await changed;
  if (!Number.isFinite(video.duration)) throw unreadable(new Error("unknown duration"));
  return video.duration;
}

/**
 * Hash a video file. Window only. Resolves to {media_type: "video", md5, vpdq: [{t, pdq, q}]}.
 * Rejects with HashingError: video_in_window (called in a worker), unreadable (cannot be
 * played), no_video_stream (audio only).
 */
export async function hashVideo(file, { onProgress } = {}) {
  if (file.size === 0) throw new HashingError("The file is empty.", "empty");
  // Open it first: a file the browser cannot play fails before minutes of reading.
  const { video, url } = await openVideo(file);
  try {
    const duration = await durationOf(video);
    // MD5 and the frames run side by side: the MD5 loop works while the page waits for the
    // browser's decoder to finish each seek, and the two interleave at their awaits.
    const md5Weight = file.size / MD5_BYTES_PER_SECOND;
    const framesWeight = Math.max(1, duration) * FRAME_SECONDS;
    let md5Done = 0;
    let framesDone = 0;
    const progress = () => {
      const work = md5Done * md5Weight + framesDone * framesWeight;
      onProgress?.(work / (md5Weight + framesWeight));
    };
    const [md5, vpdq] = await Promise.all([
      md5File(file, {
        onProgress: (f) => {
          md5Done = f;
          progress();
        },
      }),
      hashFrames(video, duration, (f) => {
        framesDone = f;
        progress();
      }),
    ]);
    if (vpdq.length === 0) {
      throw new HashingError("No frame of the video could be decoded.", "unreadable");
    }
    onProgress?.(1);
    return { media_type: "video", md5, vpdq };
  } finally {
    release(video, url);
  }
}

// Hold on to the frame now on screen, cheaply: a VideoFrame (WebCodecs) references the decoded
// picture without copying it, so the next seek can start at once and the pixels are read while
// the browser decodes. Where VideoFrame is missing, the pixels are read from the element now.
function holdFrame(video, context, width, height) {
  if (typeof VideoFrame === "function") {
    try {
      return new VideoFrame(video);
    } catch {
      // Fall through to an immediate copy.
    }
  }
  context.drawImage(video, 0, 0, width, height);
  return context.getImageData(0, 0, width, height).data;
}

function pixelsOf(held, context, width, height) {
  if (!(typeof VideoFrame === "function" && held instanceof VideoFrame)) return held;
  try {
    context.drawImage(held, 0, 0, width, height);
  } finally {
    held.close();
  }
  return context.getImageData(0, 0, width, height).data;
}

async function hashFrames(video, duration, onProgress) {
  const width = video.videoWidth;
  const height = video.videoHeight;
  const canvas = new OffscreenCanvas(width, height);
  const context = canvas.getContext("2d", { willReadFrequently: true });
  // tidkit samples up to the start of the last frame: find it by seeking to the end.
  const lastFrame = shownFrameTime(video, await seekTo(video, duration));
  const last = Math.min(lastFrame !== null ? lastFrame : duration - 1e-3, MAX_VIDEO_SECONDS);
  const count = Math.floor(last + 1e-6) + 1;
  const frames = [];
  await seekTo(video, 0);
  let held = holdFrame(video, context, width, height);
  for (let t = 0; t < count; t++) {
    // Start the next seek before reading and hashing this frame: the browser decodes in its
    // own threads while the page works.
    const next = t + 1 < count ? seekTo(video, t + 1) : null;
    const { hash, quality } = pdqFromRGBA(pixelsOf(held, context, width, height), width, height);
    frames.push({ t, pdq: hash, q: quality });
    onProgress((t + 1) / count);
    if (next) {
      await next;
      held = holdFrame(video, context, width, height);
    }
  }
  return frames;
}
