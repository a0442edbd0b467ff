/**
 * The field page's SOS button (一键求助): POST /api/units/{unit}/sos with the unit token, over
 * plain HTTP so that it works whether or not the Socket.IO link is up. It carries the page's
 * newest GPS fix when it has one; otherwise the browser is asked for a position for up to 3 s.
 * The command room gets an alarm with the unit's position and its live feed.
 * `#sos-state[data-state]` is "sending" | "sent" | "error" (with `data-alert-id` once sent).
 */
import { t } from './field-texts.js';

const byId = (id) => /** @type {HTMLElement} */ (document.getElementById(id));
/** A fix older than this is not sent as the unit's position (the server then uses its own last). */
const FRESH_FIX_S = 120;

function askPosition() {
  return new Promise((resolve) => {
    if (!navigator.geolocation) { resolve(null); return; }
    const timer = setTimeout(() => resolve(null), 3000);
    navigator.geolocation.getCurrentPosition(
      (p) => { clearTimeout(timer); resolve({ lat: p.coords.latitude, lon: p.coords.longitude, accuracy: p.coords.accuracy }); },
      () => { clearTimeout(timer); resolve(null); },
      { enableHighAccuracy: true, timeout: 3000, maximumAge: 10000 },
    );
  });
}

export class FieldSos {
  /**
   * @param {{credentials: () => {unitId: string, token: string},
   *   lastFix: () => ({lat: number, lon: number, ts: number, accuracy?: number} | null)}} context
   */
  constructor(context) {
    this.ctx = context;
    this.view = null;
    byId('sos-btn').addEventListener('click', () => this.raise());
  }

  async position() {
    const fix = this.ctx.lastFix();
    if (fix && Date.now() / 1000 - fix.ts <= FRESH_FIX_S) {
      const body = { lat: fix.lat, lon: fix.lon };
      if (fix.accuracy !== undefined) body.accuracy = fix.accuracy;
      return body;
    }
    return askPosition();
  }

  async raise() {
    const { unitId, token } = this.ctx.credentials();
    if (!unitId || !token) {
      this.show('error', { key: 'sos_need_credentials' });
      return;
    }
    this.show('sending', { key: 'sos_sending' });
    const body = (await this.position()) || {};
    try {
      const resp = await fetch(`/api/units/${encodeURIComponent(unitId)}/sos`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${token}` },
        body: JSON.stringify(body),
      });
      const data = await resp.json().catch(() => ({}));
      if (!resp.ok) {
        this.show('error', { key: 'sos_failed', detail: (data.error && data.error.message) || `HTTP ${resp.status}` });
        return;
      }
      const at = new Date();
      const time = [at.getHours(), at.getMinutes(), at.getSeconds()].map((n) => String(n).padStart(2, '0')).join(':');
      this.show('sent', { key: 'sos_sent', params: { t: time }, alertId: data.id });
    } catch (err) {
      this.show('error', { key: 'sos_failed', detail: String(err) });
    }
  }

  show(state, view) {
    this.view = { state, ...view };
    this.render();
  }

  /** Draw the state in the current language (also after a language switch). */
  render() {
    const el = byId('sos-state');
    if (!this.view) {
      el.dataset.state = 'idle';
      el.textContent = '';
      return;
    }
    el.dataset.state = this.view.state;
    if (this.view.alertId) el.dataset.alertId = this.view.alertId;
    el.textContent = t(this.view.key, this.view.params);
    el.title = this.view.detail || '';
  }
}
