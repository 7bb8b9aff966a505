// PDQ, Meta's perceptual hash for photos, ported from the C++ reference in facebook/ThreatExchange
// (pdq/cpp: hashing/pdqhashing.cpp, downscaling/downscaling.cpp, hashing/torben.cpp) as the
// `pdqhash` Python package builds and calls it. tidkit.hashing uses that package; this port must
// give the same 256 bits, so it follows the reference operation by operation:
//
// - The reference keeps every intermediate in 32-bit floats. JavaScript computes in doubles, so
//   each value the C++ stores in a float is rounded here too: by Math.fround, or by storing it in
//   a Float32Array. One double operation on two floats rounded once to float gives exactly the
//   float operation's result, so the sums, differences and quotients below match bit for bit as
//   long as they happen in the reference's order.
// - Luminance is computed as the `pdqhash` package does before it calls the C++ (numpy, in
//   doubles: R*0.299 + G*0.587 + B*0.114, then cast to float32), not with the float coefficients
//   of the C++ helper, which the package never uses.
//
// Exports createPdqHasher (rows streamed in: hashing.js), pdqFromRGBA (a whole frame: video.js),
// pdqFromLuma, and the stages that have a meaning of their own.

const f32 = Math.fround;

const MIN_HASHABLE_DIM = 5;

// 16x64 DCT matrix, row i = frequency i+1. The reference computes cos in double, multiplies by a
// float scale factor in double, and stores the product as a float.
const DCT_MATRIX = (() => {
  const matrix = new Float32Array(16 * 64);
  const scale = f32(Math.sqrt(2.0 / 64));
  for (let i = 0; i < 16; i++) {
    for (let j = 0; j < 64; j++) {
      matrix[i * 64 + j] = scale * Math.cos((Math.PI / 2.0 / 64) * (i + 1) * (2 * j + 1));
    }
  }
  return matrix;
})();

/**
 * Float32 luminance of one row of RGBA pixels (alpha ignored), as the pdqhash package computes
 * it: in doubles, R*0.299 + G*0.587 + B*0.114, then rounded to float32 on the store.
 */
export function lumaRowFromRGBA(rgba, offset, width, luma) {
  for (let x = 0, p = offset; x < width; x++, p += 4) {
    luma[x] = rgba[p] * 0.299 + rgba[p + 1] * 0.587 + rgba[p + 2] * 0.114;
  }
}

/** Box-filter window for one axis: half of the input pixels per output pixel, rounded up. */
export function jaroszWindowSize(oldDimension, newDimension) {
  return Math.trunc((oldDimension + 2 * newDimension - 1) / (2 * newDimension));
}

// The reference's box1DFloat runs a window along a vector in four phases: grow without writing,
// grow while writing, slide (add the new value, then subtract the old), shrink. Phase lengths:
function phases(length, window) {
  const half = Math.trunc((window + 2) / 2);
  return { grow: half - 1, growWrite: window - half + 1, slide: length - window, shrink: half - 1 };
}

// box1DFloat along one row. `sum` is a float in the C++: rounded after each add and subtract; the
// quotient is rounded once, by the Float32Array store.
function boxRow(input, output, length, window) {
  const { grow, growWrite, slide, shrink } = phases(length, window);
  let li = 0;
  let ri = 0;
  let oi = 0;
  let sum = 0;
  let size = 0;
  for (let i = 0; i < grow; i++) {
    sum = f32(sum + input[ri++]);
    size++;
  }
  for (let i = 0; i < growWrite; i++) {
    sum = f32(sum + input[ri++]);
    size++;
    output[oi++] = sum / size;
  }
  for (let i = 0; i < slide; i++) {
    sum = f32(sum + input[ri++]);
    sum = f32(sum - input[li++]);
    output[oi++] = sum / size;
  }
  for (let i = 0; i < shrink; i++) {
    sum = f32(sum - input[li++]);
    size--;
    output[oi++] = sum / size;
  }
}

// box1DFloat down every column at once, fed one row at a time. The reference walks each column
// separately; here the columns advance together, which gives each column exactly the same
// sequence of float operations while reading memory in order, and needs only the last `window`
// rows instead of the whole image. Input rows are written in order into nextRow() and taken by
// push(); each output row is handed to `emit` (a reused buffer) as soon as the reference would
// have written it.
class ColumnBoxes {
  constructor(width, length, window, emit) {
    Object.assign(this, phases(length, window));
    this.width = width;
    this.slots = window + 1; // the rows still to be subtracted, and the new one
    this.ring = new Float32Array(this.slots * width);
    this.sums = new Float32Array(width);
    this.out = new Float32Array(width);
    this.emit = emit;
    this.pushed = 0;
    this.subtracted = 0;
    this.size = 0;
  }

  /** Where the caller writes the next input row (saves copying it into the ring). */
  nextRow() {
    const start = (this.pushed % this.slots) * this.width;
    return this.ring.subarray(start, start + this.width);
  }

  push() {
    const { width, sums, out, ring } = this;
    const index = this.pushed++;
    const row = (index % this.slots) * width;
    if (index < this.grow) {
      for (let j = 0; j < width; j++) sums[j] = sums[j] + ring[row + j];
      this.size++;
      return;
    }
    if (index < this.grow + this.growWrite) {
      const size = ++this.size;
      for (let j = 0; j < width; j++) {
        const sum = f32(sums[j] + ring[row + j]);
        sums[j] = sum;
        out[j] = sum / size;
      }
    } else {
      // The row `window` rows back: its slot differs from the new row's (slots = window + 1).
      const old = (this.subtracted++ % this.slots) * width;
      const { size } = this;
      for (let j = 0; j < width; j++) {
        const sum = f32(f32(sums[j] + ring[row + j]) - ring[old + j]);
        sums[j] = sum;
        out[j] = sum / size;
      }
    }
    this.emit(out);
  }

  finish() {
    const { width, sums, out, ring } = this;
    for (let i = 0; i < this.shrink; i++) {
      const old = (this.subtracted++ % this.slots) * width;
      const size = --this.size;
      for (let j = 0; j < width; j++) {
        const sum = f32(sums[j] - ring[old + j]);
        sums[j] = sum;
        out[j] = sum / size;
      }
      this.emit(out);
    }
  }
}

/**
 * PDQ computed from luminance rows pushed in order: the reference's blur (two box passes along
 * rows and columns, jaroszFilterFloat), decimation to 64x64, quality, 16x16 DCT and bits, as a
 * single streaming sweep. Bit for bit the reference's result, without holding the two
 * full-size float copies of the image the C++ uses (96 MB for 12 MP).
 *
 *   const pdq = createPdqHasher(width, height);
 *   for each row: pdq.pushRow(lumaRow);   // a Float32Array of `width` values
 *   const { hash, quality } = pdq.finish();
 */
export function createPdqHasher(width, height) {
  const buffer64x64 = new Float32Array(64 * 64);
  if (height < MIN_HASHABLE_DIM || width < MIN_HASHABLE_DIM) {
    return { pushRow() {}, finish: () => ({ hash: "0".repeat(64), quality: 0 }) };
  }
  const finish = () => ({
    hash: bitsToHex(dct64To16(buffer64x64)),
    quality: qualityMetric(buffer64x64),
  });
  if (width === 64 && height === 64) {
    // The reference skips the blur when the input is already 64x64 (its video path).
    let row = 0;
    return { pushRow: (luma) => buffer64x64.set(luma.subarray(0, 64), 64 * row++), finish };
  }
  const windowAlongRows = jaroszWindowSize(width, 64);
  const windowAlongCols = jaroszWindowSize(height, 64);
  // decimateFloat samples the blurred image at the centres of a 64x64 grid. Only those 64
  // columns of the second column pass are ever read, and columns are independent, so the second
  // column pass runs on those columns alone (the row passes still see every pixel).
  const centres = (size) =>
    Int32Array.from({ length: 64 }, (_, i) => Math.trunc(((i + 0.5) * size) / 64));
  const sampledColumns = centres(width);
  const sampledRows = centres(height);
  const rowBlurred = new Float32Array(width);
  let outputRow = 0;
  const secondColumns = new ColumnBoxes(64, height, windowAlongCols, (row) => {
    // Small images sample one row several times.
    for (let i = 0; i < 64; i++) if (sampledRows[i] === outputRow) buffer64x64.set(row, 64 * i);
    outputRow++;
  });
  const firstColumns = new ColumnBoxes(width, height, windowAlongCols, (row) => {
    boxRow(row, rowBlurred, width, windowAlongRows);
    const gathered = secondColumns.nextRow();
    for (let j = 0; j < 64; j++) gathered[j] = rowBlurred[sampledColumns[j]];
    secondColumns.push();
  });
  return {
    pushRow(luma) {
      boxRow(luma, firstColumns.nextRow(), width, windowAlongRows);
      firstColumns.push();
    },
    finish() {
      firstColumns.finish();
      secondColumns.finish();
      return finish();
    },
  };
}

/** The reference's quality heuristic: quantised gradients of the 64x64 image, 0-100. */
export function qualityMetric(b) {
  let gradientSum = 0;
  // `int d = ((u - v) * 100) / 255;` with u, v floats: three float operations, then truncation.
  const quantised = (u, v) => Math.abs(Math.trunc(f32(f32(f32(u - v) * 100) / 255)));
  for (let i = 0; i < 63; i++) {
    for (let j = 0; j < 64; j++) gradientSum += quantised(b[i * 64 + j], b[(i + 1) * 64 + j]);
  }
  for (let i = 0; i < 64; i++) {
    for (let j = 0; j < 63; j++) gradientSum += quantised(b[i * 64 + j], b[i * 64 + j + 1]);
  }
  return Math.min(100, Math.trunc(gradientSum / 90));
}

/** 64x64 -> 16x16: frequencies 1..16 of the 2D DCT, B = D A D^T, in the reference's order. */
export function dct64To16(a) {
  const d = DCT_MATRIX;
  const t = new Float32Array(16 * 64);
  for (let i = 0; i < 16; i++) {
    for (let j = 0; j < 64; j++) {
      let sum = 0;
      for (let k = 0; k < 64; k++) sum = f32(sum + f32(d[i * 64 + k] * a[k * 64 + j]));
      t[i * 64 + j] = sum;
    }
  }
  const b = new Float32Array(16 * 16);
  for (let i = 0; i < 16; i++) {
    for (let j = 0; j < 16; j++) {
      let sum = 0;
      for (let k = 0; k < 64; k++) sum = f32(sum + f32(t[i * 64 + k] * d[j * 64 + k]));
      b[i * 16 + j] = sum;
    }
  }
  return b;
}

/** Torben Mogensen's median as the reference implements it (its tie rules decide the bits). */
export function torbenMedian(m) {
  const n = m.length;
  let min = m[0];
  let max = m[0];
  for (let i = 1; i < n; i++) {
    if (m[i] < min) min = m[i];
    if (m[i] > max) max = m[i];
  }
  const half = Math.trunc((n + 1) / 2);
  let less;
  let greater;
  let equal;
  let guess;
  let maxLtGuess;
  let minGtGuess;
  for (;;) {
    guess = f32(f32(min + max) / 2);
    less = 0;
    greater = 0;
    equal = 0;
    maxLtGuess = min;
    minGtGuess = max;
    for (let i = 0; i < n; i++) {
      if (m[i] < guess) {
        less++;
        if (m[i] > maxLtGuess) maxLtGuess = m[i];
      } else if (m[i] > guess) {
        greater++;
        if (m[i] < minGtGuess) minGtGuess = m[i];
      } else {
        equal++;
      }
    }
    if (less <= half && greater <= half) break;
    if (less > greater) max = maxLtGuess;
    else min = minGtGuess;
  }
  if (less >= half) return maxLtGuess;
  if (less + equal >= half) return guess;
  return minGtGuess;
}

/**
 * The 256-bit hash as python-threatexchange prints it: bit k (= row*16 + column of the 16x16
 * DCT) has value 2**k, so the first hex digit holds bits 255..252.
 */
export function bitsToHex(dct16x16) {
  const median = torbenMedian(dct16x16);
  let hex = "";
  for (let k = 255; k >= 0; k -= 4) {
    let nibble = 0;
    for (let b = 0; b < 4; b++) nibble = (nibble << 1) | (dct16x16[k - b] > median ? 1 : 0);
    hex += nibble.toString(16);
  }
  return hex;
}

/** PDQ of a row-major luminance image (Float32Array): {hash: 64 hex, quality: 0-100}. */
export function pdqFromLuma(luma, width, height) {
  const pdq = createPdqHasher(width, height);
  for (let r = 0; r < height; r++) pdq.pushRow(luma.subarray(r * width, (r + 1) * width));
  return pdq.finish();
}

/** PDQ of RGBA pixels (an ImageData's data): {hash, quality}. */
export function pdqFromRGBA(rgba, width, height) {
  const pdq = createPdqHasher(width, height);
  const luma = new Float32Array(width);
  for (let r = 0; r < height; r++) {
    lumaRowFromRGBA(rgba, 4 * r * width, width, luma);
    pdq.pushRow(luma);
  }
  return pdq.finish();
}
