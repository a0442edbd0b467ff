/**
 * Enforcement actions (执行行动): the live `Map(actionId -> action)` fed by
 * `GET /api/actions` and the `action_update` events, and the panel's list of
 * action cards with their start / end / edit / instruct buttons.
 *
 * Cards: `li.action-card[data-action-id][data-state]` with buttons
 * `.action-start`, `.action-end`, `.action-cancel` (a planned one), `.action-edit`, `.action-instruct`, the
 * link `.action-report` to the action's report once it has started, and the server's refusal in `.action-error`.
 */
import { errorText, t } from './console-texts.js';
import {
  ACTION_STATES, ACTION_TYPES, el, formatDateTime, labelElement, labelOf,
} from './labels.js';
import { statusBadge, unitStatus } from './roster.js';

/** Display order of the states: running first. */
const STATE_ORDER = { running: 0, planned: 1, ended: 2, cancelled: 3 };
/** Lifecycle order: a copy of an action in an earlier state is out of date. */
const STATE_RANK = { planned: 0, running: 1, ended: 2, cancelled: 2 };

/** @returns {object | null} an action object with list fields made safe */
export function parseAction(raw) {
  if (!raw || typeof raw !== 'object' || typeof raw.id !== 'string') return null;
  return {
    ...raw,
    units: Array.isArray(raw.units) ? raw.units.filter((u) => typeof u === 'string') : [],
    officers: Array.isArray(raw.officers) ? raw.officers.filter((o) => typeof o === 'string') : [],
    state: raw.state in STATE_ORDER ? raw.state : 'planned',
  };
}

/** "圆 circle 38.04000, 114.51000 r=300 m" / "多边形 polygon 5 点" / "" */
export function describeArea(area) {
  if (!area || typeof area !== 'object') return '';
  if (area.type === 'circle') {
    return t('area_circle', { lat: Number(area.lat).toFixed(5), lon: Number(area.lon).toFixed(5), r: Math.round(area.radius_m) });
  }
  if (area.type === 'polygon' && Array.isArray(area.points)) return t('area_polygon', { n: area.points.length });
  return '';
}

/**
 * The link to the action's report (行动报告, `/report/action?id=`), for those who may read it
 * (`.needs-report`: hidden without `reports.read`). It opens in a tab of its own that keeps
 * this tab's session (`rel=opener`: the new tab gets a copy of sessionStorage).
 */
export function reportLink(action) {
  const div = el('div', 'action-report-link needs-report');
  const a = labelElement('a', 'btn btn--small action-report',
    t(action.state === 'running' ? 'action_report_provisional' : 'action_report'));
  a.href = `/report/action?id=${encodeURIComponent(action.id)}`;
  a.target = '_blank';
  a.rel = 'opener';
  div.append(a);
  return div;
}

export class ActionBook extends EventTarget {
  /**
   * @param {{list: HTMLElement, empty: HTMLElement, showEnded: HTMLInputElement, count: HTMLElement}} elements
   * @param {{move: (id: string, verb: 'start' | 'end' | 'cancel') => Promise<object>, edit: (action: object) => void,
   *   instruct: (action: object) => void, openTile: (unitId: string) => void,
   *   units: Map<string, import('./roster.js').Unit>}} ctx
   */
  constructor(elements, ctx) {
    super();
    this.el = elements;
    this.ctx = ctx;
    /** @type {Map<string, object>} the test hook `dispatchConsole.actions` */
    this.actions = new Map();
    /** @type {Map<string, string>} last refusal per action id */
    this.errors = new Map();
    this.busy = new Set();
    this.el.showEnded.addEventListener('change', () => this.render());
    this.render();
  }

  /** Merge a fresh `GET /api/actions` (actions are never deleted, so nothing is dropped). */
  load(list) {
    for (const raw of list) this.upsert(raw, false);
    this.changed();
  }

  /**
   * One action from an `action_update` event or a response.
   * @param {boolean} [notify] false while loading a list
   */
  upsert(raw, notify = true) {
    const action = parseAction(raw);
    if (!action) return;
    const known = this.actions.get(action.id);
    // An older copy (a list requested before a newer event) must not move the state back.
    if (known && STATE_RANK[known.state] > STATE_RANK[action.state]) return;
    this.actions.set(action.id, action);
    if (notify) this.changed();
  }

  clear() {
    this.actions.clear();
    this.errors.clear();
    this.changed();
  }

  changed() {
    this.render();
    this.dispatchEvent(new CustomEvent('change'));
  }

  /** @param {string} id @param {'start' | 'end' | 'cancel'} verb */
  async move(id, verb) {
    this.errors.delete(id);
    this.busy.add(id);
    this.render();
    try {
      this.upsert(await this.ctx.move(id, verb));
    } catch (exc) {
      this.errors.set(id, errorText(exc));
    } finally {
      this.busy.delete(id);
      this.render();
    }
  }

  /**
   * The roster changed: update the team chips in place (rebuilding the cards
   * every second would swallow clicks on their buttons).
   */
  refreshUnits() {
    for (const chip of this.el.list.querySelectorAll('.chip[data-unit-id]')) {
      const unit = this.ctx.units.get(chip.dataset.unitId);
      const status = unit ? unitStatus(unit) : 'offline';
      if (chip.dataset.status === status) continue;
      chip.dataset.status = status;
      chip.querySelector('.badge').replaceWith(statusBadge(status, { compact: true }));
    }
  }

  /** Actions in display order: running, planned, then ended (newest first). */
  sorted() {
    const time = (a) => Date.parse(a.started_at || a.planned_at || a.created_at || '') || 0;
    return [...this.actions.values()].sort((a, b) => STATE_ORDER[a.state] - STATE_ORDER[b.state] ||
      (a.state === 'ended' || a.state === 'cancelled' ? Date.parse(b.ended_at || b.cancelled_at || '') - Date.parse(a.ended_at || a.cancelled_at || '') : time(a) - time(b)));
  }

  render() {
    const showEnded = this.el.showEnded.checked;
    const cards = this.sorted().filter((a) => showEnded || (a.state !== 'ended' && a.state !== 'cancelled')).map((a) => this.card(a));
    this.el.list.replaceChildren(...cards);
    this.el.empty.hidden = cards.length > 0;
    const running = [...this.actions.values()].filter((a) => a.state === 'running').length;
    this.el.count.textContent = running ? String(running) : '';
  }

  card(action) {
    const li = el('li', 'action-card');
    li.dataset.actionId = action.id;
    li.dataset.state = action.state;

    const head = el('div', 'action-head');
    head.append(labelElement('span', `state state--${action.state}`, labelOf(ACTION_STATES, action.state)));
    head.append(el('span', 'action-case', action.case_number));
    head.append(el('span', 'action-type', labelOf(ACTION_TYPES, action.type)));
    li.append(head, el('div', 'action-title', action.title));

    const facts = el('dl', 'action-facts');
    const fact = (key, value) => {
      if (!value) return;
      facts.append(labelElement('dt', '', t(`action_fact_${key}`)), el('dd', '', value));
    };
    fact('address', action.address);
    fact('area', describeArea(action.area));
    fact('planned', action.planned_at ? formatDateTime(action.planned_at) : '');
    fact('started', action.started_at ? formatDateTime(action.started_at) : '');
    fact('ended', action.ended_at ? formatDateTime(action.ended_at) : '');
    fact('cancelled', action.cancelled_at ? formatDateTime(action.cancelled_at) : '');
    fact('officers', action.officers.join('、'));
    fact('judge', action.judge);
    li.append(facts);

    const team = el('div', 'action-team');
    team.append(labelElement('span', 'action-team-label', t('action_team_label')));
    if (!action.units.length) team.append(el('span', 'muted', '—'));
    for (const unitId of action.units) {
      const unit = this.ctx.units.get(unitId);
      const status = unit ? unitStatus(unit) : 'offline';
      const chip = el('button', 'chip');
      chip.type = 'button';
      chip.dataset.unitId = unitId;
      chip.dataset.status = status;
      chip.title = `${unitId}: ${t('open_tile')}`;
      chip.append(el('span', 'chip-id', unitId), statusBadge(status));
      chip.addEventListener('click', () => this.ctx.openTile(unitId));
      team.append(chip);
    }
    li.append(team);

    const buttons = el('div', 'action-buttons needs-write');
    const busy = this.busy.has(action.id);
    const button = (cls, key, onClick, primary = '') => {
      const b = labelElement('button', `btn btn--small ${cls} ${primary}`.trim(), t(key));
      b.type = 'button';
      b.disabled = busy;
      b.addEventListener('click', onClick);
      buttons.append(b);
    };
    if (action.state === 'planned') button('action-start', 'action_start', () => this.move(action.id, 'start'), 'btn--primary');
    if (action.state === 'running') button('action-end', 'action_end', () => this.move(action.id, 'end'), 'btn--danger');
    if (action.state === 'planned') button('action-cancel', 'action_call_off', () => this.move(action.id, 'cancel'));
    if (action.state === 'planned' || action.state === 'running') {
      button('action-edit', 'action_edit', () => this.ctx.edit(action));
      button('action-instruct', 'action_instruct', () => this.ctx.instruct(action));
    }
    if (buttons.childElementCount) li.append(buttons);
    if (action.state !== 'planned') li.append(reportLink(action));
    const error = this.errors.get(action.id);
    if (error) {
      const p = el('p', 'form-error action-error', error);
      p.setAttribute('role', 'alert');
      li.append(p);
    }
    return li;
  }
}
