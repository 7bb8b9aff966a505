// Choosing files and fingerprinting them on the device: the part of the report page and the
// status page ("add more files") that touches the reporter's media.
//
// The files themselves never leave this page. Each is read by the hashing library, either in a
// module Web Worker (static/tid/hash-worker.js, so that the page stays responsive) or, for
// videos, which need a <video> element and so the main thread, by hashFile() from
// static/tid/hashing.js. Only the resulting hashes are handed to the caller. Thumbnails are local
// object URLs, revoked as soon as a file is removed or the list is cleared.

import { ApiError, splitFieldErrors, waitSentence } from "./api.js";

const { gettext, interpolate, ngettext } = globalThis;

// Two workers keep a phone responsive while halving the wait on a batch; more would mostly
// compete for memory with the decoded photos.
const WORKERS = Math.max(1, Math.min(2, navigator.hardwareConcurrency || 1));
// Below this PDQ quality a fingerprint is kept on the case but never published (DESIGN.md s. 3).
const MIN_QUALITY = 50;

export class HashError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

function fractionOf(progress) {
  const value = typeof progress === "number" ? progress : progress?.fraction;
  return Number.isFinite(value) ? Math.min(1, Math.max(0, value)) : null;
}

/**
 * Hashes files one per worker at a time; videos (and everything, if workers cannot start) go to
 * a main-thread queue, one file at a time.
 */
export class HashPool {
  constructor({ workerUrl, hashingUrl, size = WORKERS }) {
    this.workerUrl = workerUrl;
    this.hashingUrl = hashingUrl;
    this.size = size;
    this.workers = null;
    this.queue = [];
    this.mainQueue = [];
    this.mainBusy = false;
    this.nextId = 1;
  }

  /** Resolves to hashFile()'s result; rejects with a HashError. `job.cancel()` drops it. */
  hash(file, onProgress) {
    let job;
    const promise = new Promise((resolve, reject) => {
      job = { id: this.nextId++, file, onProgress, resolve, reject, cancelled: false };
    });
    job.cancel = () => {
      job.cancelled = true;
      this.queue = this.queue.filter((queued) => queued !== job);
      this.mainQueue = this.mainQueue.filter((queued) => queued !== job);
    };
    this.queue.push(job);
    this.pump();
    return { promise, cancel: job.cancel };
  }

  startWorkers() {
    this.workers = [];
    for (let i = 0; i < this.size; i += 1) {
      let worker;
      try {
        worker = new Worker(this.workerUrl, { type: "module" });
      } catch {
        continue; // no module workers here: the main thread does the work
      }
      const slot = { worker, job: null, dead: false };
      worker.addEventListener("message", (event) => this.onMessage(slot, event.data));
      // A worker that fails to load (or crashes) hands its file to the main thread, which
      // either manages or gives a readable error.
      const fail = () => {
        slot.dead = true;
        worker.terminate();
        const { job } = slot;
        slot.job = null;
        if (job) this.toMain(job);
        this.pump();
      };
      worker.addEventListener("error", fail);
      worker.addEventListener("messageerror", fail);
      this.workers.push(slot);
    }
  }

  pump() {
    if (!this.workers) this.startWorkers();
    const alive = this.workers.filter((slot) => !slot.dead);
    if (alive.length === 0) {
      this.mainQueue.push(...this.queue);
      this.queue = [];
    }
    for (const slot of alive) {
      if (slot.job || this.queue.length === 0) continue;
      const job = this.queue.shift();
      slot.job = job;
      slot.worker.postMessage({ id: job.id, file: job.file });
    }
    this.runMain();
  }

  onMessage(slot, message) {
    const { job } = slot;
    if (!job || !message || message.id !== job.id) return;
    if (message.type === "progress") {
      if (!job.cancelled) job.onProgress?.(fractionOf(message.fraction));
      return;
    }
    slot.job = null;
    if (message.type === "result") {
      job.resolve(message.result);
    } else if (message.code === "video_in_window") {
      this.toMain(job);
    } else {
      job.reject(new HashError(message.code || "error", message.message || ""));
    }
    this.pump();
  }

  toMain(job) {
    if (job.cancelled) return;
    this.mainQueue.push(job);
    this.runMain();
  }

  async runMain() {
    if (this.mainBusy) return;
    const job = this.mainQueue.shift();
    if (!job) return;
    this.mainBusy = true;
    try {
      let hashFile;
      try {
        ({ hashFile } = await import(this.hashingUrl));
      } catch {
        throw new HashError("unavailable", "the hashing library could not be loaded");
      }
      const result = await hashFile(job.file, {
        onProgress: (progress) => {
          if (!job.cancelled) job.onProgress?.(fractionOf(progress));
        },
      });
      job.resolve(result);
    } catch (error) {
      job.reject(error instanceof HashError ? error : new HashError(error?.code || "decode", String(error?.message || error)));
    } finally {
      this.mainBusy = false;
      this.runMain();
    }
  }
}

function kindOf(file) {
  if (file.type.startsWith("image/")) return "image";
  if (file.type.startsWith("video/")) return "video";
  // Some systems give no type for formats they do not know (HEIC on older desktops, say):
  // let the hashing library try, and say so if it cannot.
  return file.type === "" ? "unknown" : "other";
}

function formatSize(bytes) {
  const lang = document.documentElement.lang || undefined;
  const [value, unit] =
    bytes >= 1e9
      ? [bytes / 1e9, "gigabyte"]
      : bytes >= 1e6
        ? [bytes / 1e6, "megabyte"]
        : [Math.max(0.1, bytes / 1e3), "kilobyte"];
  return new Intl.NumberFormat(lang, { style: "unit", unit, maximumFractionDigits: 1 }).format(value);
}

// The hashing library's error codes (static/tid/hash-error.js) in the reporter's words; its own
// messages are English and technical, so they are not shown.
function messageFor(error) {
  switch (error?.code) {
    case "unavailable":
      return gettext(
        "This page could not start making fingerprints. Reload the page and try again.",
      );
    case "empty":
      return gettext("This file is empty, so it was left out.");
    case "truncated":
      return gettext(
        "This picture seems damaged or incomplete, so it was left out. If it opens in your photo app, try saving a new copy and choosing that.",
      );
    case "too_large":
      return gettext(
        "This file is too big to fingerprint on this device, so it was left out. Try a smaller copy of it.",
      );
    case "no_video_stream":
      return gettext("This file has sound but no pictures, so it was left out.");
    default:
      break;
  }
  return gettext(
    "This file could not be opened as an image or a video on this device, so it was left out. If it opens in your photo app, try saving a copy as JPEG or MP4 and choosing that.",
  );
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

/**
 * Bring a `[data-picker]` block (templates/site/_file_picker.html) to life.
 *
 * onChange() is called whenever the set of files or their state changes.
 */
export function createFilePicker(root, { pool, maxFiles = 200, onChange } = {}) {
  const input = root.querySelector("input[type=file]");
  const dropzone = root.querySelector("[data-dropzone]");
  const list = root.querySelector("[data-file-list]");
  const summary = root.querySelector("[data-summary]");
  let entries = [];
  let notice = "";

  function changed() {
    renderSummary();
    onChange?.();
  }

  function renderSummary() {
    const ready = entries.filter((entry) => entry.state === "ready").length;
    const working = entries.filter((entry) => entry.state === "hashing").length;
    const parts = [];
    if (notice) parts.push(notice);
    if (entries.length === 0 && !notice) {
      summary.textContent = "";
      return;
    }
    if (ready) {
      parts.push(interpolate(ngettext("%s file is ready.", "%s files are ready.", ready), [ready]));
    }
    if (working) {
      parts.push(
        interpolate(
          ngettext(
            "%s file is still being fingerprinted.",
            "%s files are still being fingerprinted.",
            working,
          ),
          [working],
        ),
      );
    }
    summary.textContent = parts.join(" ");
  }

  function setStatus(entry, text, tone = "") {
    entry.status.textContent = text;
    entry.status.className = `file-status${tone ? ` file-status-${tone}` : ""}`;
  }

  function setState(entry, state) {
    entry.state = state;
    entry.li.dataset.state = state;
  }

  function dropThumbnail(entry) {
    if (entry.url) URL.revokeObjectURL(entry.url);
    entry.url = null;
    entry.thumb.replaceChildren();
    entry.thumb.classList.add("thumb-empty");
  }

  function renderEntry(entry) {
    const { file } = entry;
    const li = element("li", "file");
    const thumb = element("div", "thumb");
    thumb.setAttribute("aria-hidden", "true");
    const main = element("div", "file-main");
    const name = element("p", "file-name");
    name.append(element("span", "file-title", file.name || gettext("Unnamed file")));
    name.append(element("span", "file-size", formatSize(file.size)));
    const progress = element("progress", "file-progress");
    progress.max = 1;
    progress.setAttribute(
      "aria-label",
      interpolate(gettext("Fingerprinting %s"), [file.name || gettext("Unnamed file")]),
    );
    const status = element("p", "file-status");
    const remove = element("button", "button button-small button-quiet file-remove", gettext("Remove"));
    remove.type = "button";
    remove.setAttribute(
      "aria-label",
      interpolate(gettext("Remove %s"), [file.name || gettext("Unnamed file")]),
    );
    remove.addEventListener("click", () => removeEntry(entry));
    main.append(name, progress, status);
    li.append(thumb, main, remove);
    Object.assign(entry, { li, thumb, progress, status, remove });

    if (entry.kind === "image" || entry.kind === "video" || entry.kind === "unknown") {
      entry.url = URL.createObjectURL(file);
      if (entry.kind === "video") {
        const video = document.createElement("video");
        video.muted = true;
        video.playsInline = true;
        video.preload = "metadata";
        video.tabIndex = -1;
        // Seek a little way in so the thumbnail shows a frame rather than a black first frame.
        video.addEventListener("loadedmetadata", () => {
          video.currentTime = Math.min(0.5, (video.duration || 0) / 2);
        });
        video.addEventListener("error", () => thumb.classList.add("thumb-empty"));
        video.src = entry.url;
        thumb.append(video);
      } else {
        const img = document.createElement("img");
        img.alt = "";
        img.decoding = "async";
        img.addEventListener("error", () => {
          img.remove();
          thumb.classList.add("thumb-empty");
        });
        img.src = entry.url;
        thumb.append(img);
      }
    } else {
      thumb.classList.add("thumb-empty");
    }
    list.append(li);
  }

  function markReady(entry, result) {
    entry.result = result;
    const { li } = entry;
    const duplicate = entries.find(
      (other) => other !== entry && other.state === "ready" && other.result.md5 === result.md5,
    );
    entry.progress.value = 1;
    entry.progress.hidden = true;
    if (duplicate) {
      setState(entry, "duplicate");
      setStatus(entry, gettext("You already chose this file, so it is counted once."), "note");
      return;
    }
    setState(entry, "ready");
    // Test hooks: what was computed for this file, without knowing the layout.
    li.dataset.testid = "hashed-item";
    li.dataset.mediaType = result.media_type;
    li.dataset.md5 = result.md5;
    let lowDetail;
    if (result.media_type === "video") {
      li.dataset.vpdqFrames = String(result.vpdq.length);
      lowDetail = result.vpdq.every((frame) => frame.q < MIN_QUALITY);
    } else {
      li.dataset.pdq = result.pdq;
      li.dataset.pdqQuality = String(result.pdq_quality);
      li.dataset.phash = result.phash;
      lowDetail = result.pdq_quality < MIN_QUALITY;
    }
    if (lowDetail) {
      setStatus(
        entry,
        gettext(
          "Fingerprint ready. This one has very little detail (it may be very dark or plain), so platforms may not be able to match it, but it is still included.",
        ),
        "note",
      );
    } else {
      setStatus(entry, gettext("Fingerprint ready"), "ok");
    }
  }

  function markFailed(entry, text) {
    setState(entry, "failed");
    entry.progress.hidden = true;
    setStatus(entry, text, "error");
    dropThumbnail(entry);
  }

  function startHashing(entry) {
    setState(entry, "hashing");
    setStatus(entry, gettext("Making the fingerprint…"));
    const job = pool.hash(entry.file, (fraction) => {
      if (fraction !== null) entry.progress.value = fraction;
    });
    entry.job = job;
    job.promise.then(
      (result) => {
        if (!entries.includes(entry)) return;
        markReady(entry, result);
        changed();
      },
      (error) => {
        if (!entries.includes(entry)) return;
        markFailed(entry, messageFor(error));
        changed();
      },
    );
  }

  function addFiles(files) {
    const chosen = [...files];
    const room = Math.max(0, maxFiles - entries.length);
    notice =
      chosen.length > room
        ? interpolate(
            gettext(
              "You can add up to %s files at a time, so some were left out. You can add the rest once these are sent.",
            ),
            [maxFiles],
          )
        : "";
    for (const file of chosen.slice(0, room)) {
      const entry = { file, kind: kindOf(file), state: "new", url: null, result: null };
      entries.push(entry);
      renderEntry(entry);
      if (entry.kind === "other") {
        markFailed(
          entry,
          gettext("This is not an image or a video, so it was left out."),
        );
      } else {
        startHashing(entry);
      }
    }
    changed();
  }

  function removeEntry(entry) {
    const index = entries.indexOf(entry);
    if (index === -1) return;
    entry.job?.cancel();
    if (entry.url) URL.revokeObjectURL(entry.url);
    entry.li.remove();
    entries.splice(index, 1);
    // A file that was a duplicate of the removed one now stands for itself.
    if (entry.state === "ready") {
      const twin = entries.find(
        (other) => other.state === "duplicate" && other.result?.md5 === entry.result.md5,
      );
      if (twin) markReady(twin, twin.result);
    }
    notice = interpolate(gettext("Removed %s."), [entry.file.name || gettext("Unnamed file")]);
    changed();
    // Keep the keyboard where it was: on the next file's Remove button, or back on the chooser.
    const next = entries[index] || entries[index - 1];
    (next ? next.remove : input).focus();
  }

  input.addEventListener("change", () => {
    if (input.files?.length) addFiles(input.files);
    input.value = ""; // choosing the same file again must fire "change" again
  });

  dropzone.addEventListener("dragover", (event) => {
    if (![...(event.dataTransfer?.types || [])].includes("Files")) return;
    event.preventDefault();
    event.dataTransfer.dropEffect = "copy";
    dropzone.classList.add("dropzone-active");
  });
  dropzone.addEventListener("dragleave", (event) => {
    if (!dropzone.contains(event.relatedTarget)) dropzone.classList.remove("dropzone-active");
  });
  dropzone.addEventListener("drop", (event) => {
    event.preventDefault();
    dropzone.classList.remove("dropzone-active");
    if (event.dataTransfer?.files?.length) addFiles(event.dataTransfer.files);
  });

  return {
    /** Hashes of the files ready to send, with the entries they came from (same order). */
    ready() {
      return entries.filter((entry) => entry.state === "ready");
    },
    busy() {
      return entries.some((entry) => entry.state === "hashing");
    },
    counts() {
      const ready = this.ready();
      return {
        images: ready.filter((entry) => entry.result.media_type === "image").length,
        videos: ready.filter((entry) => entry.result.media_type === "video").length,
      };
    },
    /** The server refused these files: say why beside each one and leave them out from now on. */
    reject(rejections) {
      for (const [entry, messages] of rejections) {
        setState(entry, "rejected");
        delete entry.li.dataset.testid;
        setStatus(entry, messages.join(" "), "error");
      }
      changed();
    },
    /** Forget every file: revoke the thumbnails, drop the hashes. */
    clear() {
      for (const entry of entries) {
        entry.job?.cancel();
        if (entry.url) URL.revokeObjectURL(entry.url);
      }
      entries = [];
      notice = "";
      list.replaceChildren();
      changed();
    },
    focus() {
      input.focus();
    },
  };
}

/** Stop a file dropped outside a drop zone from replacing the page (and the user's progress). */
export function guardWindowDrops() {
  for (const type of ["dragover", "drop"]) {
    window.addEventListener(type, (event) => {
      if (!event.target.closest?.("[data-dropzone]")) event.preventDefault();
    });
  }
}

/** "3 images and 1 video", for summaries. */
export function describeCounts({ images, videos }) {
  const imageText = interpolate(ngettext("%s image", "%s images", images), [images]);
  const videoText = interpolate(ngettext("%s video", "%s videos", videos), [videos]);
  if (images && videos) return interpolate(gettext("%(images)s and %(videos)s"), { images: imageText, videos: videoText }, true);
  if (videos) return videoText;
  return imageText;
}

/**
 * Lines explaining why sending `entries` failed: the server's own words, then each refused file
 * by name (those files are marked in the list and left out of the next attempt).
 */
export function describeFailure(error, entries, picker) {
  if (!(error instanceof ApiError)) {
    return [gettext("Something went wrong on our side. Please try again in a few minutes.")];
  }
  const lines = [error.detail];
  const { perItem, other } = splitFieldErrors(error.fields);
  const rejected = [];
  for (const [index, messages] of perItem) {
    if (entries[index]) rejected.push([entries[index], messages]);
  }
  for (const [entry, messages] of rejected) {
    lines.push(`${entry.file.name}: ${messages.join(" ")}`);
  }
  lines.push(...other);
  if (rejected.length) {
    picker.reject(rejected);
    lines.push(
      picker.ready().length
        ? gettext("These files will be left out. You can send the others now.")
        : gettext("Go back to choose other files."),
    );
  }
  if (error.status === 429) lines.push(waitSentence(error.retryAfter));
  return lines;
}
