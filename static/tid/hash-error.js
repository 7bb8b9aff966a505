// The one error type of the hashing library. `code` is stable and machine-readable (the pages map
// it to a translated sentence); `message` is a readable English sentence. The codes are those of
// tidkit.hashing.HashingError where the cause is the same:
//
//   empty            the file has no bytes
//   unsupported      not an image or video format this browser can read
//   truncated        an image format we know, but damaged or incomplete
//   too_large        more pixels than we process (or than this browser's canvas allows)
//   unreadable       the browser could not read the file, or could not play it as a video
//   no_video_stream  a media file with no pictures in it (audio only)
//   video_in_window  a video given to hashFile inside a Web Worker: hash it on the page instead

export class HashingError extends Error {
  constructor(message, code, options) {
    super(message, options);
    this.name = "HashingError";
    this.code = code;
  }
}
