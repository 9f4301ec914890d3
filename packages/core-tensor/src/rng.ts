/**
 * Seeded pseudo-random numbers. Random tensors are drawn on the host from this generator and then
 * uploaded, so the same seed gives the same numbers on every device.
 */
export class Rng {
  private s: number;
  /** @param seed any 32-bit integer */
  constructor(seed: number) {
    this.s = seed >>> 0 || 0x9e3779b9;
  }
  /** Next uniform number in [0, 1) (mulberry32). */
  next(): number {
    let t = (this.s = (this.s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  /** Next standard normal number (Box–Muller). */
  normal(): number {
    let u = 0;
    while (u === 0) u = this.next();
    const v = this.next();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  }
}

let globalSeed = 0x5eed;
let counter = 0;

/** Sets the seed used by `randn`/`rand` calls that pass no `seed`. */
export function manualSeed(seed: number): void {
  globalSeed = seed >>> 0;
  counter = 0;
}

/** A generator for one random-tensor call: the given seed, or the next one of the global stream. */
export function nextRng(seed?: number): Rng {
  if (seed !== undefined) return new Rng(seed);
  counter++;
  return new Rng((globalSeed ^ Math.imul(counter, 0x85ebca6b)) >>> 0);
}
