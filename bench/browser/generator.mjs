// The one fixed-seed generator every library's workload draws from, so all of them perform
// exactly the same operations. SplitMix64 (Steele, Lea, Flood 2014): tiny, well mixed, and
// easy to reproduce in any language (the native benches use the same sequence).

const MASK = (1n << 64n) - 1n;
const GAMMA = 0x9e3779b97f4a7c15n;
const TWO_POW_53 = 2 ** 53;

export class SplitMix64 {
  constructor(seed) {
    this.state = BigInt.asUintN(64, BigInt(seed));
  }

  /** The next 64-bit output, as a BigInt. */
  next() {
    this.state = (this.state + GAMMA) & MASK;
    let z = this.state;
    z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & MASK;
    z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & MASK;
    return z ^ (z >> 31n);
  }

  /** A uniform integer in [0, n) from the top 53 bits (bias below 2^-30 for n ≤ 10^6). */
  below(n) {
    return Math.floor((Number(this.next() >> 11n) / TWO_POW_53) * n);
  }
}

/** Values are integers in [0, 1,000,000), as the issue defines. */
export const VALUE_RANGE = 1_000_000;

/**
 * `count` random sets over `docs` documents × `fields` fields: parallel typed arrays of
 * document index, field index and value. Drawn before any timing starts.
 */
export function randomSets(seed, count, docs, fields) {
  const rng = new SplitMix64(seed);
  const doc = new Int32Array(count);
  const field = new Int32Array(count);
  const value = new Int32Array(count);
  for (let i = 0; i < count; i++) {
    doc[i] = rng.below(docs);
    field[i] = rng.below(fields);
    value[i] = rng.below(VALUE_RANGE);
  }
  return { doc, field, value, count };
}

/** Every field of every document set once, document by document (W4). */
export function fillSets(seed, docs, fields) {
  const rng = new SplitMix64(seed);
  const count = docs * fields;
  const doc = new Int32Array(count);
  const field = new Int32Array(count);
  const value = new Int32Array(count);
  for (let i = 0; i < count; i++) {
    doc[i] = Math.floor(i / fields);
    field[i] = i % fields;
    value[i] = rng.below(VALUE_RANGE);
  }
  return { doc, field, value, count };
}

/** Keys built once, outside timing, and shared by every library: "d{n}" and "f{k}". */
export function keys(prefix, n) {
  return Array.from({ length: n }, (_, i) => `${prefix}${i}`);
}
