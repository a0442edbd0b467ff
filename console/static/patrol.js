/**
 * Patrol mode (视频巡检): a large view that cycles through the publishing
 * units, one every `patrol_interval_s` seconds, with pause, next and previous.
 *
 * The large view shows the MediaStream of the unit's wall tile, so patrolling
 * opens no extra viewer on the server.
 *
 * `current` (unit id or null) and `active` are read by tests through
 * `dispatchConsole.patrol`.
 */
import { t } from './console-texts.js';
import { kindLabel } from './roster.js';

const UI_TICK_MS = 250;

export class Patrol {
  /**
   * @param {{panel: HTMLElement, video: HTMLVideoElement, name: HTMLElement, kind: HTMLElement,
   *   position: HTMLElement, countdown: HTMLElement, overlay: HTMLElement, toggle: HTMLButtonElement,
   *   prev: HTMLButtonElement, pause: HTMLButtonElement, next: HTMLButtonElement}} elements
   * @param {import('./video-wall.js').VideoWall} wall
   * @param {Map<string, import('./roster.js').Unit>} units the roster
   */
  constructor(elements, wall, units) {
    this.el = elements;
    this.wall = wall;
    this.units = units;
    /** @type {string | null} */
    this.current = null;
    this.active = false;
    this.paused = false;
    this.intervalMs = 10000;
    this.remainingMs = this.intervalMs;
    this.lastTickAt = 0;
    this.timer = null;
    /** @type {MediaStream | null} */
    this.shownStream = null;

    this.el.toggle.addEventListener('click', () => (this.active ? this.stop() : this.start()));
    this.el.prev.addEventListener('click', () => this.prev());
    this.el.next.addEventListener('click', () => this.next());
    this.el.pause.addEventListener('click', () => (this.paused ? this.resume() : this.pause()));
    this.el.video.addEventListener('click', () => this.openFull());
    wall.addEventListener('tilechange', (event) => {
      if (event.detail.unitId === this.current) this.render();
    });
    this.render();
  }

  /** @param {number} seconds from /api/console-config */
  setInterval(seconds) {
    const ms = Number(seconds) > 0 ? Number(seconds) * 1000 : 10000;
    this.intervalMs = Math.max(1000, ms);
    this.remainingMs = Math.min(this.remainingMs, this.intervalMs);
  }

  /** Publishing unit ids in display order. */
  candidates() {
    return [...this.units.values()]
      .filter((unit) => unit.publishing)
      .map((unit) => unit.id)
      .sort((a, b) => a.localeCompare(b, 'en', { numeric: true }));
  }

  start() {
    if (this.active) return;
    this.active = true;
    this.paused = false;
    const ids = this.candidates();
    this.show(ids.includes(this.current) ? this.current : ids[0] || null);
    this.lastTickAt = performance.now();
    this.timer = setInterval(() => this.tick(), UI_TICK_MS);
    this.render();
  }

  stop() {
    this.active = false;
    this.paused = false;
    clearInterval(this.timer);
    this.timer = null;
    this.show(null);
    this.render();
  }

  pause() {
    if (!this.active) return;
    this.paused = true;
    this.render();
  }

  resume() {
    if (!this.active) return;
    this.paused = false;
    this.lastTickAt = performance.now();
    this.render();
  }

  next() {
    this.step(1);
  }

  prev() {
    this.step(-1);
  }

  /** Called when the roster changes: pick up the first unit if there was none. */
  refresh() {
    if (this.active && this.current === null) {
      const ids = this.candidates();
      if (ids.length) this.show(ids[0]);
    }
    this.render();
  }

  /** @param {1 | -1} direction */
  step(direction) {
    if (!this.active) return;
    const ids = this.candidates();
    if (!ids.length) {
      this.show(null);
      return;
    }
    let index = ids.indexOf(this.current);
    if (index === -1) {
      // The current unit stopped publishing: continue from where it sat in the order.
      const after = ids.findIndex((id) => this.current !== null &&
        id.localeCompare(this.current, 'en', { numeric: true }) > 0);
      index = direction > 0 ? (after === -1 ? ids.length : after) - 1 : (after === -1 ? ids.length : after);
    }
    this.show(ids[(index + direction + ids.length) % ids.length]);
  }

  /** @param {string | null} unitId */
  show(unitId) {
    this.current = unitId;
    this.remainingMs = this.intervalMs;
    this.render();
  }

  tick() {
    const now = performance.now();
    const elapsed = now - this.lastTickAt;
    this.lastTickAt = now;
    if (!this.active || this.paused) return;
    this.remainingMs -= elapsed;
    if (this.remainingMs <= 0) this.next();
    if (this.current === null) this.refresh();
    this.renderCountdown();
  }

  openFull() {
    if (this.el.panel.requestFullscreen) this.el.panel.requestFullscreen().catch(() => {});
  }

  render() {
    const { el } = this;
    el.panel.hidden = !this.active;
    el.panel.dataset.active = String(this.active);
    el.panel.dataset.current = this.current || '';
    el.toggle.setAttribute('aria-pressed', String(this.active));
    el.toggle.classList.toggle('is-on', this.active);
    el.pause.querySelector('span').textContent = this.paused ? t('patrol_resume') : t('patrol_pause');
    el.pause.setAttribute('aria-pressed', String(this.paused));

    const tile = this.current ? this.wall.tiles.get(this.current) : null;
    const unit = this.current ? this.units.get(this.current) : null;
    const stream = this.active && tile ? tile.stream : null;
    if (stream !== this.shownStream) {
      this.shownStream = stream;
      el.video.srcObject = stream;
      if (stream) el.video.play().catch(() => {});
    }
    const state = tile ? tile.state : (this.current ? 'offline' : 'empty');
    el.panel.dataset.state = state;
    const ids = this.candidates();
    el.name.textContent = this.current || '—';
    el.kind.textContent = unit ? kindLabel(unit.kind) : '';
    const index = ids.indexOf(this.current);
    el.position.textContent = ids.length ? `${index === -1 ? '–' : index + 1} / ${ids.length}` : '0 / 0';
    let overlay = '';
    if (!this.current) overlay = t('patrol_empty');
    else if (state === 'offline') overlay = t('patrol_offline');
    else if (state === 'connecting') overlay = t('patrol_connecting');
    el.overlay.textContent = overlay;
    el.overlay.hidden = !overlay;
    this.renderCountdown();
  }

  renderCountdown() {
    const seconds = Math.max(0, Math.ceil(this.remainingMs / 1000));
    this.el.countdown.textContent = this.paused ? t('patrol_paused') : t('patrol_seconds', { s: seconds });
  }
}
