/**
 * Capped exponential backoff with jitter, the schedule used for every reconnect
 * in the console and on the field page (field links drop all the time).
 *
 * The n-th delay is min(capMs, baseMs * 2^n), scaled by a random factor in
 * [1 - jitter, 1] so that many clients that lost the server at the same moment
 * do not come back in lockstep.
 */
export class Backoff {
  /**
   * @param {{baseMs?: number, capMs?: number, jitter?: number}} [options]
   *   baseMs: first delay (default 1000 ms); capMs: longest delay (default 30000 ms);
   *   jitter: fraction of the delay that is randomised, 0..1 (default 0.5).
   */
  constructor({ baseMs = 1000, capMs = 30000, jitter = 0.5 } = {}) {
    this.baseMs = baseMs;
    this.capMs = capMs;
    this.jitter = Math.min(1, Math.max(0, jitter));
    this.attempt = 0;
  }

  /** Delay in milliseconds before the next attempt; each call lengthens the next one. */
  next() {
    const ceiling = Math.min(this.capMs, this.baseMs * 2 ** this.attempt);
    this.attempt = Math.min(this.attempt + 1, 30);
    return Math.round(ceiling * (1 - this.jitter * Math.random()));
  }

  /** Start again from the base delay, after a success. */
  reset() {
    this.attempt = 0;
  }
}
