// pHash equal to `str(imagehash.phash(image))` (imagehash 4.x, defaults: hash_size 8,
// highfreq_factor 4) on the canonical RGB image. imagehash does, in Python:
//
//     image.convert("L").resize((32, 32), Image.Resampling.LANCZOS)
//     dct = scipy.fftpack.dct(scipy.fftpack.dct(pixels, axis=0), axis=1)
//     bits = dct[:8, :8] > numpy.median(dct[:8, :8])
//
// The first two steps are Pillow's C code with integer arithmetic, reproduced here exactly:
// - convert("L"): L = (R*19595 + G*38470 + B*7471 + 0x8000) >> 16 (libImaging/Convert.c).
// - resize with LANCZOS (libImaging/Resample.c): two separable passes in Pillow 13's order (see
//   createLanczosResizer) through an intermediate 8-bit image (so each pass rounds and clips),
//   with double-precision filter weights normalised per output pixel and then converted to
//   22-bit fixed point. Without reducing_gap (imagehash passes none) there is no pre-reduction.
// The DCT is computed in doubles. scipy's FFT-based DCT rounds differently in the last bits of a
// double, which can only matter when coefficients tie at the median: structural ties (flat or
// mirror-symmetric images) are handled below; accidental ones practically never occur in photos.

const SIZE = 32; // hash_size * highfreq_factor
const HASH_SIZE = 8;
const PRECISION_BITS = 32 - 8 - 2;
const LANCZOS_SUPPORT = 3.0;

/** Pillow's convert("L") of one row of RGBA pixels (alpha ignored: it is already flattened). */
export function grayRowFromRGBA(rgba, offset, width, gray) {
  for (let x = 0, p = offset; x < width; x++, p += 4) {
    gray[x] = (rgba[p] * 19595 + rgba[p + 1] * 38470 + rgba[p + 2] * 7471 + 0x8000) >>> 16;
  }
}

function sinc(x) {
  if (x === 0.0) return 1.0;
  const px = x * Math.PI;
  return Math.sin(px) / px;
}

function lanczos(x) {
  return -3.0 <= x && x < 3.0 ? sinc(x) * sinc(x / 3) : 0.0;
}

/**
 * Pillow's precompute_coeffs + normalize_coeffs_8bpc for resampling `inSize` pixels to
 * `outSize` over the box [0, inSize): per output pixel the first input index, the count, and
 * the fixed-point weights.
 */
function coefficients(inSize, outSize) {
  const scale = inSize / outSize; // (in1 - in0) / outSize with in0 = 0, in1 = inSize
  const filterScale = Math.max(scale, 1.0);
  const support = LANCZOS_SUPPORT * filterScale;
  const ksize = Math.ceil(support) * 2 + 1;
  const invFilterScale = 1.0 / filterScale;
  const bounds = new Int32Array(outSize * 2);
  const weights = new Int32Array(outSize * ksize);
  const k = new Float64Array(ksize);
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    let ww = 0.0;
    const xmin = Math.max(0, Math.trunc(center - support + 0.5));
    const xmax = Math.min(inSize, Math.trunc(center + support + 0.5)) - xmin;
    for (let x = 0; x < xmax; x++) {
      const w = lanczos((x + xmin - center + 0.5) * invFilterScale);
      k[x] = w;
      ww += w;
    }
    for (let x = 0; x < xmax; x++) {
      const v = ww !== 0.0 ? k[x] / ww : k[x];
      // C's (int) truncates toward zero: round half away from zero, in 22-bit fixed point.
      const scaled = v * (1 << PRECISION_BITS);
      weights[xx * ksize + x] = Math.trunc(v < 0 ? scaled - 0.5 : scaled + 0.5);
    }
    bounds[xx * 2] = xmin;
    bounds[xx * 2 + 1] = xmax;
  }
  return { bounds, weights, ksize };
}

// Pillow accumulates in a C int: products and partial sums fit in 32 bits (that is what its
// PRECISION_BITS is chosen for), so Math.imul and `| 0` reproduce its arithmetic exactly, and in
// any order. clip8: arithmetic shift out the fixed point, then clamp to 0..255.
const ROUNDING = 1 << (PRECISION_BITS - 1);

function clip8(sum) {
  const v = sum >> PRECISION_BITS;
  return v < 0 ? 0 : v > 255 ? 255 : v;
}

// One horizontal pass over one row (`line` from `offset`), into `out` from `outOffset`.
function resampleRow(line, offset, { bounds, weights, ksize }, outWidth, out, outOffset) {
  for (let xx = 0; xx < outWidth; xx++) {
    const start = offset + bounds[xx * 2];
    const count = bounds[xx * 2 + 1];
    const k = xx * ksize;
    let sum = ROUNDING;
    for (let x = 0; x < count; x++) sum = (sum + Math.imul(line[start + x], weights[k + x])) | 0;
    out[outOffset + xx] = clip8(sum);
  }
}

// One vertical pass over every column of `image` (`width` wide); `bounds` index its rows. The
// columns advance together a row at a time, so memory is read in order.
function resampleColumns(image, width, { bounds, weights, ksize }, outHeight) {
  const out = new Uint8Array(width * outHeight);
  const sums = new Int32Array(width);
  for (let yy = 0; yy < outHeight; yy++) {
    const ymin = bounds[yy * 2];
    const count = bounds[yy * 2 + 1];
    sums.fill(ROUNDING);
    for (let y = 0; y < count; y++) {
      const line = (y + ymin) * width;
      const weight = weights[yy * ksize + y];
      for (let x = 0; x < width; x++) sums[x] = (sums[x] + Math.imul(image[line + x], weight)) | 0;
    }
    for (let x = 0; x < width; x++) out[yy * width + x] = clip8(sums[x]);
  }
  return out;
}

/**
 * Pillow's Image.resize((outWidth, outHeight), LANCZOS) of an 8-bit grayscale image whose rows
 * are pushed in order: {pushRow(row), finish() -> Uint8Array(outWidth * outHeight)}.
 *
 * Pillow resamples in two passes through an 8-bit intermediate image, so the order matters.
 * Pillow 13 (which the server pins) runs the vertical pass first when the image loses more than
 * twice as many rows as columns, and the horizontal pass first otherwise (then over only the rows
 * the vertical pass reads). The rule was measured against Pillow 13.0.0 on every order-sensitive
 * shape class (400 random sizes, and the exact switch-over for many widths and output sizes);
 * Pillow 12 and older always ran horizontally first.
 */
export function createLanczosResizer(width, height, outWidth = SIZE, outHeight = SIZE) {
  const needHorizontal = width !== outWidth;
  const needVertical = height !== outHeight;
  const vertical = needVertical ? coefficients(height, outHeight) : null;
  const horizontal = needHorizontal ? coefficients(width, outWidth) : null;
  let r = 0;
  if (needHorizontal && height > outHeight && height - outHeight > 2 * (width - outWidth)) {
    // Vertical first: every row adds its weighted pixels to the output rows whose window holds
    // it; the integer sums come out as Pillow's, whatever the order of the additions.
    const { bounds, weights, ksize } = vertical;
    const sums = new Int32Array(outHeight * width).fill(ROUNDING);
    return {
      pushRow(row) {
        for (let yy = 0; yy < outHeight; yy++) {
          const offset = r - bounds[yy * 2];
          if (offset < 0 || offset >= bounds[yy * 2 + 1]) continue;
          const weight = weights[yy * ksize + offset];
          const base = yy * width;
          for (let x = 0; x < width; x++) {
            sums[base + x] = (sums[base + x] + Math.imul(row[x], weight)) | 0;
          }
        }
        r++;
      },
      finish() {
        const columns = sums.map(clip8);
        const out = new Uint8Array(outWidth * outHeight);
        for (let yy = 0; yy < outHeight; yy++) {
          resampleRow(columns, yy * width, horizontal, outWidth, out, yy * outWidth);
        }
        return out;
      },
    };
  }
  // Horizontal first (or only one pass): keep the rows the vertical pass will read.
  const first = needVertical ? vertical.bounds[0] : 0;
  const last = needVertical
    ? vertical.bounds[outHeight * 2 - 2] + vertical.bounds[outHeight * 2 - 1]
    : height;
  const rowWidth = needHorizontal ? outWidth : width;
  const kept = new Uint8Array(rowWidth * (last - first));
  return {
    pushRow(row) {
      if (r >= first && r < last) {
        const at = (r - first) * rowWidth;
        if (needHorizontal) resampleRow(row, 0, horizontal, outWidth, kept, at);
        else kept.set(row.subarray(0, width), at);
      }
      r++;
    },
    finish() {
      if (!needVertical) return kept;
      const shifted = vertical.bounds.slice();
      for (let i = 0; i < outHeight; i++) shifted[i * 2] -= first;
      return resampleColumns(kept, rowWidth, { ...vertical, bounds: shifted }, outHeight);
    },
  };
}

/** Pillow's Image.resize((32, 32), LANCZOS) of a whole 8-bit grayscale image. */
export function resizeLanczos(gray, width, height, outWidth = SIZE, outHeight = SIZE) {
  const resizer = createLanczosResizer(width, height, outWidth, outHeight);
  for (let r = 0; r < height; r++) resizer.pushRow(gray.subarray(r * width, (r + 1) * width));
  return resizer.finish();
}

// scipy.fftpack.dct type II, unnormalised: y[k] = 2 * sum_n x[n] cos(pi k (2n + 1) / (2N)).
//
// Computed by even/odd folding (y's even half is the half-length DCT of x[n] + x[N-1-n]; its odd
// half sums x[n] - x[N-1-n] against cosines) rather than as one plain sum. The folding makes the
// coefficients that vanish for structural reasons come out exactly zero, as scipy's FFT-based
// DCT gives them: all AC terms of a constant vector, the odd terms of a mirror-symmetric one. With
// a plain sum they would be ±1e-13 noise, and in flat or symmetric images (a black picture, a
// plain frame) that noise would decide which bits sit above a median of zero.
const cosTables = new Map();

function cosTable(n) {
  let table = cosTables.get(n);
  if (!table) {
    table = new Float64Array(n * (n / 2));
    for (let k = 0; k < n; k++) {
      for (let i = 0; i < n / 2; i++) {
        table[k * (n / 2) + i] = Math.cos((Math.PI * k * (2 * i + 1)) / (2 * n));
      }
    }
    cosTables.set(n, table);
  }
  return table;
}

// The first `count` terms of sum_n x[n] cos(pi k (2n + 1) / (2N)), for N a power of two.
function dctHead(x, count) {
  const n = x.length;
  if (n === 1) return Float64Array.of(x[0]);
  const half = n / 2;
  const folded = new Float64Array(half);
  const difference = new Float64Array(half);
  for (let i = 0; i < half; i++) {
    folded[i] = x[i] + x[n - 1 - i];
    difference[i] = x[i] - x[n - 1 - i];
  }
  const even = dctHead(folded, Math.ceil(count / 2));
  const table = cosTable(n);
  const out = new Float64Array(count);
  for (let k = 0; k < count; k++) {
    if (k % 2 === 0) {
      out[k] = even[k / 2];
    } else {
      let sum = 0;
      for (let i = 0; i < half; i++) sum += difference[i] * table[k * half + i];
      out[k] = sum;
    }
  }
  return out;
}

/** The 8x8 lowest frequencies of the 2D DCT (axis 0, then axis 1) of a 32x32 image. */
export function dctLowFrequencies(pixels) {
  // Along axis 0 (down each column): only the first 8 frequencies are used afterwards.
  const columns = new Float64Array(HASH_SIZE * SIZE);
  const vector = new Float64Array(SIZE);
  for (let x = 0; x < SIZE; x++) {
    for (let n = 0; n < SIZE; n++) vector[n] = pixels[n * SIZE + x];
    const head = dctHead(vector, HASH_SIZE);
    for (let k = 0; k < HASH_SIZE; k++) columns[k * SIZE + x] = 2 * head[k];
  }
  const low = new Float64Array(HASH_SIZE * HASH_SIZE);
  for (let r = 0; r < HASH_SIZE; r++) {
    const head = dctHead(columns.subarray(r * SIZE, (r + 1) * SIZE), HASH_SIZE);
    for (let k = 0; k < HASH_SIZE; k++) low[r * HASH_SIZE + k] = 2 * head[k];
  }
  return low;
}

/** numpy.median of an even-length sample: the mean of the two middle values. */
function median(values) {
  const sorted = Float64Array.from(values).sort();
  const mid = sorted.length / 2;
  return (sorted[mid - 1] + sorted[mid]) / 2;
}

/** imagehash's hex: the 64 bits row-major, the first bit the most significant. */
function bitsToHex(bits) {
  let hex = "";
  for (let i = 0; i < bits.length; i += 4) {
    hex += ((bits[i] << 3) | (bits[i + 1] << 2) | (bits[i + 2] << 1) | bits[i + 3]).toString(16);
  }
  return hex;
}

/** pHash of the 32x32 image Pillow's resize gives: 16 hex digits. */
function phashFromThumbnail(pixels) {
  const low = dctLowFrequencies(pixels);
  const med = median(low);
  return bitsToHex(Array.from(low, (v) => (v > med ? 1 : 0)));
}

/**
 * pHash of a grayscale image whose rows are pushed in order:
 * {pushRow(grayRow), finish() -> 16 hex digits}.
 */
export function createPhashHasher(width, height) {
  const resizer = createLanczosResizer(width, height);
  return {
    pushRow: (row) => resizer.pushRow(row),
    finish: () => phashFromThumbnail(resizer.finish()),
  };
}

/** pHash of a whole 8-bit grayscale image: 16 hex digits. */
export function phashFromGray(gray, width, height) {
  return phashFromThumbnail(resizeLanczos(gray, width, height));
}

/** pHash of RGBA pixels (an ImageData's data): 16 hex digits. */
export function phashFromRGBA(rgba, width, height) {
  const hasher = createPhashHasher(width, height);
  const gray = new Uint8Array(width);
  for (let r = 0; r < height; r++) {
    grayRowFromRGBA(rgba, 4 * r * width, width, gray);
    hasher.pushRow(gray);
  }
  return hasher.finish();
}
