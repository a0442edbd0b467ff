/**
 * The phone's GPS: `navigator.geolocation.watchPosition` fixes, sent to the server in batches
 * with the `/unit` event `positions` (a JSON list of `{lat, lon, ts, accuracy, speed?, heading?,
 * alt?}`, `ts` in epoch seconds, oldest first, at most 500 per batch: docs/api.md, "Geo").
 *
 * Fixes are buffered and flushed about once a second while the link is up. While it is down they
 * are kept — at most `MAX_BUFFERED` (a day at 1 Hz), the oldest dropped first — and back-filled
 * when it is back, with their own times (the server stores each fix with its device time and
 * ignores duplicates, so a batch whose reply was lost can be sent again).
 *
 * States (`state`, `#gps-state[data-state]`): "off", "waiting" (no fix yet: 定位中), "fix"
 * (`accuracy` in metres), "denied" (no permission), "unavailable" (no geolocation, no signal).
 */
import { LinkDown } from './field-link.js';

export const MAX_BUFFERED = 86400;
const MAX_BATCH = 500;
const FLUSH_MS = 1000;

export class FieldGps extends EventTarget {
  /** @param {import('./field-link.js').UnitLink} link */
  constructor(link) {
    super();
    this.link = link;
    /** @type {'off' | 'waiting' | 'fix' | 'denied' | 'unavailable'} */
    this.state = 'off';
    this.accuracy = null;
    /** @type {{lat: number, lon: number, ts: number, accuracy?: number} | null} newest fix */
    this.last = null;
    /** Fixes not yet taken by the server, oldest first. */
    this.buffer = [];
    this.sent = 0;
    this.dropped = 0;
    this.watchId = null;
    this.timer = null;
    this.flushing = false;
    link.addEventListener('connected', () => this.flush());
  }

  start() {
    if (this.watchId !== null) return;
    if (!navigator.geolocation) {
      this.setState('unavailable');
      return;
    }
    this.setState('waiting');
    this.watchId = navigator.geolocation.watchPosition(
      (position) => this.onPosition(position),
      (error) => this.onError(error),
      { enableHighAccuracy: true, maximumAge: 0, timeout: 30000 },
    );
    this.timer = setInterval(() => this.flush(), FLUSH_MS);
  }

  /** Stop watching; fixes not yet sent stay buffered for the next session. */
  stop() {
    if (this.watchId !== null) navigator.geolocation.clearWatch(this.watchId);
    this.watchId = null;
    clearInterval(this.timer);
    this.timer = null;
    this.setState('off');
  }

  /** @param {GeolocationPosition} position */
  onPosition(position) {
    const c = position.coords;
    const fix = { lat: c.latitude, lon: c.longitude, ts: position.timestamp / 1000 };
    keep(fix, 'accuracy', c.accuracy, 0, 100000);
    keep(fix, 'alt', c.altitude, -1000, 20000);
    keep(fix, 'speed', c.speed, 0, 200);
    keep(fix, 'heading', c.heading, 0, 360);
    if (this.last && fix.ts <= this.last.ts) {
      // The same fix again (the browser repeats its cached one): only the newest counts.
      if (fix.ts < this.last.ts) return;
      if (fix.lat === this.last.lat && fix.lon === this.last.lon) return;
      fix.ts = this.last.ts + 0.001;
    }
    this.last = fix;
    this.buffer.push(fix);
    if (this.buffer.length > MAX_BUFFERED) {
      const excess = this.buffer.length - MAX_BUFFERED;
      this.buffer.splice(0, excess);
      this.dropped += excess;
    }
    this.accuracy = fix.accuracy ?? null;
    this.setState('fix');
  }

  /** @param {GeolocationPositionError} error */
  onError(error) {
    if (error.code === error.PERMISSION_DENIED) {
      this.setState('denied');
    } else if (this.state !== 'fix') {
      this.setState(error.code === error.TIMEOUT ? 'waiting' : 'unavailable');
    }
  }

  /** Send what is buffered, batch after batch, while the link takes it. */
  async flush() {
    if (this.flushing) return;
    this.flushing = true;
    try {
      while (this.buffer.length && this.link.online) {
        const batch = this.buffer.slice(0, MAX_BATCH);
        try {
          const reply = await this.link.call('positions', batch);
          this.sent += Number(reply.accepted) || 0;
          if (Array.isArray(reply.rejected) && reply.rejected.length) {
            console.warn(`${reply.rejected.length} fixes rejected by the server, first: ${reply.rejected[0].error}`);
          }
        } catch (exc) {
          if (exc instanceof LinkDown) return; // kept: the next connection sends them again
          // The whole batch was refused (not a list of fixes): sending it again cannot help.
          console.warn(`a batch of ${batch.length} fixes was refused: ${exc.code} ${exc.message}`);
        }
        // Taken: accepted, duplicates (already stored) and rejected (never storable) alike.
        this.buffer.splice(0, this.buffer.indexOf(batch[batch.length - 1]) + 1);
      }
    } finally {
      this.flushing = false;
    }
  }

  setState(state) {
    this.state = state;
    this.dispatchEvent(new Event('change'));
  }
}

/** Copy a coordinate field when the browser gave a finite value the server accepts. */
function keep(fix, key, value, lo, hi) {
  if (typeof value === 'number' && Number.isFinite(value) && value >= lo && value <= hi) fix[key] = value;
}
