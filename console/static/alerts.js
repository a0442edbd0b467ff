/**
 * Alerts (告警) and SOS (紧急求助).
 *
 * `alerts` (the test hook `dispatchConsole.alerts`) maps alert id -> alert
 * object, fed by `GET /api/alerts?state=open` and the `alert` / `alert_update`
 * events. An open SOS raises the red banner `#sos-banner` (unit, position,
 * message, time; the newest open SOS when there are several), sounds the
 * WebAudio alarm until acknowledged or silenced, and opens the unit's tile on
 * the wall (offline when the unit is not publishing), scrolled into view and
 * marked `data-alarm="sos"`. Every kind is listed in the alerts panel:
 * `li.alert-row[data-alert-id][data-kind][data-state][data-escalated]`.
 */
import { codeText, errorText, formatTime, hasText, t } from './console-texts.js';
import { ALERT_KINDS, el, formatClock, labelElement, labelOf } from './labels.js';
import { formatAgo, formatPosition } from './roster.js';

/** Acknowledged alerts kept in memory (newest), so the map does not grow for ever. */
const KEEP_ACKNOWLEDGED = 300;

/**
 * @typedef {{id: string, kind: string, unit_id: string, action_id: string | null,
 *   case_number?: string | null, position: {lat: number, lon: number} | null, message: string,
 *   state: 'open' | 'acknowledged', escalated: boolean, created_at: string,
 *   acknowledged_by: string | null, acknowledged_at: string | null, instruction_id: string | null}} Alert
 */

/** @returns {Alert | null} */
export function parseAlert(raw) {
  if (!raw || typeof raw !== 'object' || typeof raw.id !== 'string' || typeof raw.unit_id !== 'string') return null;
  const p = raw.position;
  return {
    ...raw,
    kind: typeof raw.kind === 'string' ? raw.kind : 'unknown',
    message: typeof raw.message === 'string' ? raw.message : '',
    state: raw.state === 'acknowledged' ? 'acknowledged' : 'open',
    escalated: Boolean(raw.escalated),
    position: p && Number.isFinite(p.lat) && Number.isFinite(p.lon) ? p : null,
  };
}

/**
 * The alert as a sentence in the interface language, from its `code` and `params` (the server's
 * English `message` is for logs and API clients).
 * @param {Alert} alert
 */
export function alertMessage(alert) {
  const code = alert.code || alert.kind;
  const p = { case_number: alert.case_number || '', ...(alert.params || {}), unit_id: alert.unit_id };
  if (code === 'sos') {
    let text;
    if (p.position_known === false) text = t('alert_msg.sos_no_fix', p);
    else if (p.position_age_s !== null && p.position_age_s !== undefined) text = t('alert_msg.sos_old_fix', { ...p, age: p.position_age_s });
    else text = t('alert_msg.sos', p);
    return p.note ? text + t('alert_msg.sos_note', p) : text;
  }
  if (code === 'ack_overdue') return t('alert_msg.ack_overdue', { ...p, type: codeText('ins_type', p.type) });
  if (code === 'recording_degraded' && p.cause === 'disk_full') return t('alert_msg.recording_degraded_disk_full', p);
  if (code === 'recording_resumed') return t('alert_msg.recording_resumed', { free: formatFree(p.free_bytes) });
  if (code === 'retention_halted') {
    const pct = (x) => `${Math.round(Number(x || 0) * 100)}%`;
    return t('alert_msg.retention_halted', { ...p, share: pct(p.share), max: pct(p.max_delete_share) });
  }
  if (code === 'procedure_min_recorders') {
    return t('alert_msg.procedure_min_recorders', { ...p, missing: (p.missing || []).join('、') || '—' });
  }
  const key = `alert_msg.${code}`;
  return hasText(key) ? t(key, p) : codeText('alert', code);
}

function formatFree(bytes) {
  const n = Number(bytes);
  return Number.isFinite(n) ? `${(n / 1024 ** 3).toFixed(1)} GB` : '';
}

export class AlertCenter {
  /**
   * @param {{banner: HTMLElement, list: HTMLElement, empty: HTMLElement, showAcked: HTMLInputElement,
   *   tabCount: HTMLElement, chip: HTMLButtonElement}} elements
   * @param {{ack: (id: string) => Promise<object>, openTile: (unitId: string) => void,
   *   fullTile: (unitId: string) => void, setAlarm: (unitId: string, on: boolean) => void,
   *   showPanel: () => void, alarm: import('./alarm-sound.js').AlarmSound, canAck: () => boolean}} ctx
   */
  constructor(elements, ctx) {
    this.el = elements;
    this.ctx = ctx;
    /** @type {Map<string, Alert>} the test hook `dispatchConsole.alerts` */
    this.alerts = new Map();
    /** SOS alert ids whose alarm tone the operator silenced. */
    this.silenced = new Set();
    /** Units marked on the wall, to unmark them. */
    this.marked = new Set();
    this.errors = new Map();
    const b = this.el.banner;
    this.banner = {
      unit: b.querySelector('.sos-unit'),
      position: b.querySelector('.sos-position'),
      time: b.querySelector('.sos-time'),
      message: b.querySelector('.sos-message'),
      caseNumber: b.querySelector('.sos-case'),
      escalated: b.querySelector('.sos-escalated'),
      more: b.querySelector('.sos-more'),
      error: b.querySelector('.sos-error'),
      ack: /** @type {HTMLButtonElement} */ (b.querySelector('.sos-ack')),
      view: b.querySelector('.sos-view'),
      silence: b.querySelector('.sos-silence'),
    };
    this.banner.ack.addEventListener('click', () => this.ack(b.dataset.alertId));
    this.banner.view.addEventListener('click', () => this.ctx.fullTile(b.dataset.unitId));
    this.banner.silence.addEventListener('click', () => {
      for (const alert of this.openSos()) this.silenced.add(alert.id);
      this.render();
    });
    this.el.showAcked.addEventListener('change', () => this.renderList());
    this.el.chip.addEventListener('click', () => this.ctx.showPanel());
    this.render();
  }

  /** Merge the open alerts from `GET /api/alerts?state=open` (or any list). */
  load(list) {
    for (const raw of list) this.upsert(raw, false);
    this.render();
  }

  /**
   * One alert from an event or a response. A newer state never goes back:
   * acknowledged stays acknowledged, escalated stays escalated.
   * @param {boolean} [render] false while loading a list
   */
  upsert(raw, render = true) {
    const alert = parseAlert(raw);
    if (!alert) return;
    const known = this.alerts.get(alert.id);
    if (known) {
      if (known.state === 'acknowledged' && alert.state === 'open') {
        Object.assign(alert, { state: known.state, acknowledged_by: known.acknowledged_by,
          acknowledged_at: known.acknowledged_at });
      }
      alert.escalated = alert.escalated || known.escalated;
    }
    this.alerts.set(alert.id, alert);
    if (!known && alert.kind === 'sos' && alert.state === 'open') this.ctx.openTile(alert.unit_id);
    this.prune();
    if (render) this.render();
  }

  /** Ids of alerts open on the server but absent here from a fresh open list: acknowledged meanwhile. */
  staleOpen(openIds) {
    return [...this.alerts.values()].filter((a) => a.state === 'open' && !openIds.has(a.id)).map((a) => a.id);
  }

  async ack(alertId) {
    if (!alertId) return;
    this.errors.delete(alertId);
    try {
      this.upsert(await this.ctx.ack(alertId));
    } catch (exc) {
      if (exc && exc.code === 'already_acknowledged') {
        // Someone else was quicker; their alert_update brings the details.
        const alert = this.alerts.get(alertId);
        if (alert) this.upsert({ ...alert, state: 'acknowledged' });
        return;
      }
      this.errors.set(alertId, errorText(exc));
      this.render();
    }
  }

  /** @returns {Alert[]} open SOS alerts, newest first */
  openSos() {
    return [...this.alerts.values()]
      .filter((a) => a.kind === 'sos' && a.state === 'open')
      .sort((a, b) => Date.parse(b.created_at) - Date.parse(a.created_at));
  }

  prune() {
    const acked = [...this.alerts.values()].filter((a) => a.state !== 'open')
      .sort((a, b) => Date.parse(b.created_at) - Date.parse(a.created_at));
    for (const alert of acked.slice(KEEP_ACKNOWLEDGED)) this.alerts.delete(alert.id);
  }

  clear() {
    this.alerts.clear();
    this.silenced.clear();
    this.errors.clear();
    this.render();
  }

  render() {
    const sos = this.openSos();
    this.renderBanner(sos);
    this.renderList();
    const open = [...this.alerts.values()].filter((a) => a.state === 'open');
    this.el.tabCount.textContent = open.length ? String(open.length) : '';
    this.el.tabCount.dataset.level = sos.length ? 'sos' : open.length ? 'open' : '';
    this.el.chip.hidden = open.length === 0;
    this.el.chip.dataset.level = sos.length ? 'sos' : 'open';
    this.el.chip.querySelector('.alert-chip-count').textContent = String(open.length);

    const alarmed = new Set(sos.map((a) => a.unit_id));
    for (const unitId of this.marked) if (!alarmed.has(unitId)) this.ctx.setAlarm(unitId, false);
    for (const unitId of alarmed) this.ctx.setAlarm(unitId, true);
    this.marked = alarmed;

    if (sos.some((a) => !this.silenced.has(a.id))) this.ctx.alarm.start();
    else this.ctx.alarm.stop();
  }

  /** @param {Alert[]} sos open SOS alerts, newest first */
  renderBanner(sos) {
    const b = this.el.banner;
    const alert = sos[0];
    b.hidden = !alert;
    if (!alert) {
      delete b.dataset.alertId;
      delete b.dataset.unitId;
      return;
    }
    b.dataset.alertId = alert.id;
    b.dataset.unitId = alert.unit_id;
    b.dataset.escalated = String(alert.escalated);
    const { banner } = this;
    banner.unit.textContent = alert.unit_id;
    banner.position.textContent = alert.position
      ? t('sos_position', { pos: formatPosition(alert.position) })
      : t('sos_position_unknown');
    banner.position.dataset.lat = alert.position ? String(alert.position.lat) : '';
    banner.position.dataset.lon = alert.position ? String(alert.position.lon) : '';
    banner.time.textContent = `${formatClock(alert.created_at)} (${formatAgo(alert.created_at)})`;
    banner.time.title = formatTime(alert.created_at);
    banner.message.textContent = alertMessage(alert);
    banner.caseNumber.textContent = alert.case_number ? t('sos_action', { case: alert.case_number }) : '';
    banner.caseNumber.hidden = !alert.case_number;
    banner.escalated.hidden = !alert.escalated;
    banner.more.textContent = sos.length > 1 ? t('sos_more', { n: sos.length - 1 }) : '';
    banner.more.hidden = sos.length < 2;
    const error = this.errors.get(alert.id);
    banner.error.textContent = error || '';
    banner.error.hidden = !error;
    banner.ack.disabled = !this.ctx.canAck();
    banner.silence.hidden = sos.every((a) => this.silenced.has(a.id));
  }

  renderList() {
    const showAcked = this.el.showAcked.checked;
    const rows = [...this.alerts.values()]
      .filter((a) => showAcked || a.state === 'open')
      .sort((a, b) => Date.parse(b.created_at) - Date.parse(a.created_at))
      .map((alert) => this.row(alert));
    this.el.list.replaceChildren(...rows);
    this.el.empty.hidden = rows.length > 0;
  }

  /** @param {Alert} alert */
  row(alert) {
    const li = el('li', 'alert-row');
    li.dataset.alertId = alert.id;
    li.dataset.kind = alert.kind;
    li.dataset.state = alert.state;
    li.dataset.escalated = String(alert.escalated);
    li.dataset.unitId = alert.unit_id;

    const head = el('div', 'alert-head');
    head.append(labelElement('span', `alert-kind alert-kind--${alert.kind}`, labelOf(ALERT_KINDS, alert.kind)));
    const unit = el('button', 'link alert-unit', alert.unit_id);
    unit.type = 'button';
    unit.title = t('open_tile');
    unit.addEventListener('click', () => this.ctx.openTile(alert.unit_id));
    head.append(unit);
    if (alert.escalated) head.append(labelElement('span', 'alert-escalated', t('alert_escalated')));
    const time = el('span', 'alert-time', formatClock(alert.created_at));
    time.title = formatTime(alert.created_at);
    head.append(time);
    const message = el('div', 'alert-message', alertMessage(alert));
    message.title = alert.message;
    li.append(head, message);

    const meta = [];
    if (alert.case_number) meta.push(t('alert_meta_action', { case: alert.case_number }));
    if (alert.position) meta.push(t('alert_meta_position', { pos: formatPosition(alert.position) }));
    if (alert.instruction_id) meta.push(t('alert_meta_instruction', { id: alert.instruction_id }));
    if (meta.length) li.append(el('div', 'alert-meta', meta.join(' · ')));

    const foot = el('div', 'alert-foot');
    if (alert.state === 'open') {
      const ack = labelElement('button', 'btn btn--small alert-ack needs-write', t('alert_ack'));
      ack.type = 'button';
      ack.disabled = !this.ctx.canAck();
      ack.addEventListener('click', () => this.ack(alert.id));
      foot.append(ack);
    } else {
      foot.append(el('span', 'alert-acked',
        t('alert_acked', { by: alert.acknowledged_by || '', t: formatClock(alert.acknowledged_at) })));
    }
    const error = this.errors.get(alert.id);
    if (error) foot.append(el('span', 'form-error', error));
    li.append(foot);
    return li;
  }

  /** Once a second: the banner's "time ago". */
  tick() {
    const id = this.el.banner.dataset.alertId;
    const alert = id ? this.alerts.get(id) : null;
    if (alert) this.banner.time.textContent = `${formatClock(alert.created_at)} (${formatAgo(alert.created_at)})`;
  }
}
