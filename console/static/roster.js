/**
 * The unit roster: the live `Map(unitId -> unit)` fed by the `roster` and
 * `unit_status` Socket.IO events, and the table that shows it.
 *
 * Full unit ids are shown (they wrap rather than being cut, so two units never look the same);
 * a row can be dragged onto a tile of the wall (`text/x-unit-id`) to watch that unit there.
 */
import { codeText, formatAgo as ago, formatTime, t } from './console-texts.js';

/**
 * @typedef {{id: string, kind: string, name?: string, online: boolean, publishing: boolean,
 *   last_seen: string | null, video_codec: string | null, audio_codec: string | null,
 *   position: {lat: number, lon: number, ts?: string} | null, node?: string,
 *   action_id: string | null, case_number: string | null, reachable: boolean}} Unit
 *   action_id/case_number: the running enforcement action the unit is in, if any.
 *   reachable: the unit's instruction link is up (it can get instructions and talk-back).
 */

/** @param {Unit} unit @returns {'publishing' | 'online' | 'offline'} */
export function unitStatus(unit) {
  if (unit.publishing) return 'publishing';
  return unit.online ? 'online' : 'offline';
}

/** "12 秒前" / "12 s ago"; "—" for never. @param {string | null} iso @param {number} [now] */
export function formatAgo(iso, now = Date.now()) {
  return ago(iso, now);
}

/** The "last seen" column: a connected unit is seen now (the server keeps its last_seen fresh
 * without an event per second); an offline one shows how long ago. */
export function seenText(unit, now = Date.now()) {
  return unitStatus(unit) === 'offline' ? formatAgo(unit.last_seen, now) : t('roster_seen_now');
}

/** @param {Unit['position']} position */
export function formatPosition(position) {
  if (!position || typeof position.lat !== 'number' || typeof position.lon !== 'number') return '—';
  return `${position.lat.toFixed(5)}, ${position.lon.toFixed(5)}`;
}

/** @param {string} kind @returns {string} */
export function kindLabel(kind) {
  return codeText('kind', kind || 'body');
}

export class RosterTable {
  /**
   * @param {{body: HTMLTableSectionElement, summary: HTMLElement, filter: HTMLInputElement,
   *   empty: HTMLElement}} elements
   * @param {(unitId: string) => void} onSelect called when a row is clicked
   */
  constructor(elements, onSelect) {
    this.el = elements;
    this.onSelect = onSelect;
    /** @type {Map<string, Unit>} the test hook `dispatchConsole.roster` */
    this.units = new Map();
    /** @type {Map<string, HTMLTableRowElement>} */
    this.rows = new Map();
    this.el.filter.addEventListener('input', () => this.applyFilter());
  }

  /** Replace everything with the `roster` event's list (units absent from it are dropped). */
  replace(units) {
    const keep = new Set(units.map((unit) => unit.id));
    for (const id of [...this.units.keys()]) {
      if (!keep.has(id)) {
        this.units.delete(id);
        this.rows.get(id)?.remove();
        this.rows.delete(id);
      }
    }
    for (const unit of units) this.update(unit);
  }

  /** Insert or refresh one unit (a `unit_status` event). */
  update(unit) {
    this.units.set(unit.id, unit);
    let row = this.rows.get(unit.id);
    if (!row) {
      row = this.createRow(unit.id);
      this.rows.set(unit.id, row);
      this.insertSorted(row, unit.id);
    }
    this.fillRow(row, unit);
    this.applyFilter();
    this.renderSummary();
  }

  clear() {
    this.units.clear();
    for (const row of this.rows.values()) row.remove();
    this.rows.clear();
    this.renderSummary();
    this.el.empty.hidden = false;
  }

  /** Refresh the relative "last seen" column; called once a second. */
  tick(now = Date.now()) {
    for (const [id, row] of this.rows) {
      const unit = this.units.get(id);
      if (unit) row.cells[3].textContent = seenText(unit, now);
    }
  }

  createRow(unitId) {
    const row = document.createElement('tr');
    row.dataset.unitId = unitId;
    for (let i = 0; i < 5; i += 1) row.insertCell();
    row.cells[0].className = 'roster-id';
    row.draggable = true;
    row.title = t('roster_drag_title');
    row.addEventListener('click', () => this.onSelect(unitId));
    row.addEventListener('dragstart', (event) => {
      event.dataTransfer.setData('text/x-unit-id', unitId);
      event.dataTransfer.setData('text/plain', unitId);
      event.dataTransfer.effectAllowed = 'copy';
    });
    return row;
  }

  insertSorted(row, unitId) {
    const next = [...this.rows.entries()]
      .filter(([id]) => id !== unitId && id.localeCompare(unitId, 'en', { numeric: true }) > 0)
      .sort(([a], [b]) => a.localeCompare(b, 'en', { numeric: true }))[0];
    this.el.body.insertBefore(row, next ? next[1] : null);
  }

  /** @param {HTMLTableRowElement} row @param {Unit} unit */
  fillRow(row, unit) {
    const status = unitStatus(unit);
    row.dataset.status = status;
    const idCell = row.cells[0];
    idCell.replaceChildren(unit.id);
    if (unit.name) {
      const name = document.createElement('small');
      name.className = 'roster-name';
      name.textContent = unit.name;
      idCell.append(name);
    }
    idCell.title = [unit.id, unit.name || '', unit.node ? t('roster_node', { node: unit.node }) : '',
      unit.case_number ? t('roster_action', { case: unit.case_number }) : ''].filter(Boolean).join(' · ');
    if (unit.action_id) row.dataset.actionId = unit.action_id;
    else delete row.dataset.actionId;
    row.cells[1].textContent = kindLabel(unit.kind);
    row.cells[2].replaceChildren(statusBadge(status));
    // Video without the unit's instruction link: it cannot get instructions or talk-back.
    const noLink = status !== 'offline' && !unit.reachable;
    row.dataset.reachable = String(!noLink);
    if (noLink) row.cells[2].append(' ', noLinkBadge());
    const codecs = [unit.video_codec, unit.audio_codec].filter(Boolean).join(' / ');
    row.cells[2].title = codecs || '';
    row.cells[3].textContent = seenText(unit);
    row.cells[3].title = unit.last_seen ? formatTime(unit.last_seen) : '';
    row.cells[4].textContent = formatPosition(unit.position);
    row.cells[4].title = unit.position && unit.position.ts ? t('roster_fix', { t: formatTime(unit.position.ts) }) : '';
  }

  applyFilter() {
    const needle = this.el.filter.value.trim().toLowerCase();
    let visible = 0;
    for (const [id, row] of this.rows) {
      const unit = this.units.get(id);
      const match = !needle || id.toLowerCase().includes(needle) ||
        Boolean(unit && unit.name && unit.name.toLowerCase().includes(needle));
      row.hidden = !match;
      if (match) visible += 1;
    }
    this.el.empty.hidden = visible > 0;
  }

  renderSummary() {
    const counts = { publishing: 0, online: 0, offline: 0 };
    for (const unit of this.units.values()) counts[unitStatus(unit)] += 1;
    this.el.summary.replaceChildren(
      ...['publishing', 'online', 'offline'].map((status) => {
        const item = document.createElement('span');
        item.className = `count count--${status}`;
        item.dataset.status = status;
        item.textContent = `${t(`status.${status}`)} ${counts[status]}`;
        return item;
      }),
    );
  }
}

/** A unit that shows online or live but has no instruction link (see `reachable` in docs/api.md). */
export function noLinkBadge() {
  const badge = document.createElement('span');
  badge.className = 'badge badge--nolink';
  badge.dataset.status = 'no_link';
  badge.textContent = t('status.no_link');
  badge.title = t('status.no_link_title');
  return badge;
}

/**
 * @param {'publishing' | 'online' | 'offline'} status
 */
export function statusBadge(status) {
  const badge = document.createElement('span');
  badge.className = `badge badge--${status}`;
  badge.dataset.status = status;
  badge.textContent = t(`status.${status}`);
  return badge;
}

/**
 * Check one unit object from the server (`roster` or `unit_status`) and fill
 * in defaults, so that the rest of the console never sees a malformed unit.
 * @returns {Unit | null} null when the payload has no usable id
 */
export function parseUnit(raw) {
  if (!raw || typeof raw !== 'object' || typeof raw.id !== 'string' || !raw.id) return null;
  const position = raw.position && typeof raw.position === 'object' &&
    Number.isFinite(raw.position.lat) && Number.isFinite(raw.position.lon) ? raw.position : null;
  return {
    id: raw.id,
    kind: typeof raw.kind === 'string' ? raw.kind : 'body',
    name: typeof raw.name === 'string' ? raw.name : '',
    disabled: Boolean(raw.disabled),
    reachable: Boolean(raw.reachable),
    online: Boolean(raw.online),
    publishing: Boolean(raw.publishing),
    last_seen: typeof raw.last_seen === 'string' ? raw.last_seen : null,
    video_codec: typeof raw.video_codec === 'string' ? raw.video_codec : null,
    audio_codec: typeof raw.audio_codec === 'string' ? raw.audio_codec : null,
    position,
    node: typeof raw.node === 'string' ? raw.node : undefined,
    action_id: typeof raw.action_id === 'string' && raw.action_id ? raw.action_id : null,
    case_number: typeof raw.case_number === 'string' && raw.case_number ? raw.case_number : null,
  };
}
