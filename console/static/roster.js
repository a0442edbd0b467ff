/**
 * The unit roster: the live `Map(unitId -> unit)` fed by the `roster` and
 * `unit_status` Socket.IO events, and the table that shows it.
 */

const KIND_LABELS = {
  body: ['执法记录仪', 'body cam'],
  vehicle: ['车载', 'vehicle'],
};

const STATUS_LABELS = {
  publishing: ['直播中', 'publishing'],
  online: ['在线', 'online'],
  offline: ['离线', 'offline'],
};

/**
 * @typedef {{id: string, kind: string, online: boolean, publishing: boolean,
 *   last_seen: string | null, video_codec: string | null, audio_codec: string | null,
 *   position: {lat: number, lon: number, ts?: string} | null, node?: string,
 *   action_id: string | null, case_number: string | null}} Unit
 *   action_id/case_number: the running enforcement action the unit is in, if any.
 */

/** @param {Unit} unit @returns {'publishing' | 'online' | 'offline'} */
export function unitStatus(unit) {
  if (unit.publishing) return 'publishing';
  return unit.online ? 'online' : 'offline';
}

/**
 * "12 s ago", "4 min ago", "3 h ago", "2 d ago"; "—" for never.
 * @param {string | null} iso ISO 8601 time
 * @param {number} [now] epoch milliseconds
 */
export function formatAgo(iso, now = Date.now()) {
  if (!iso) return '—';
  const then = Date.parse(iso);
  if (Number.isNaN(then)) return '—';
  // A browser clock slightly behind the server's must not print negative ages.
  const seconds = Math.max(0, Math.round((now - then) / 1000));
  if (seconds < 60) return `${seconds} s ago`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ago`;
  return `${Math.floor(seconds / 86400)} d ago`;
}

/** @param {Unit['position']} position */
export function formatPosition(position) {
  if (!position || typeof position.lat !== 'number' || typeof position.lon !== 'number') return '—';
  return `${position.lat.toFixed(5)}, ${position.lon.toFixed(5)}`;
}

/** Two-language label: the Chinese text, then the English in small type. */
export function bilingual(element, [zh, en]) {
  element.textContent = zh;
  const small = document.createElement('small');
  small.textContent = en;
  element.append(' ', small);
}

export function kindLabel(kind) {
  return KIND_LABELS[kind] || [kind || '?', kind || 'unknown'];
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
      if (unit) row.cells[3].textContent = formatAgo(unit.last_seen, now);
    }
  }

  createRow(unitId) {
    const row = document.createElement('tr');
    row.dataset.unitId = unitId;
    for (let i = 0; i < 5; i += 1) row.insertCell();
    row.cells[0].className = 'roster-id';
    row.addEventListener('click', () => this.onSelect(unitId));
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
    row.cells[0].textContent = unit.id;
    row.cells[0].title = [unit.node ? `node ${unit.node}` : '', unit.case_number ? `行动 action ${unit.case_number}` : '']
      .filter(Boolean).join(' · ');
    if (unit.action_id) row.dataset.actionId = unit.action_id;
    else delete row.dataset.actionId;
    // The table is narrow: Chinese in the cells, English in the tooltips and headers.
    const [kindZh, kindEn] = kindLabel(unit.kind);
    row.cells[1].textContent = kindZh;
    row.cells[1].title = kindEn;
    row.cells[2].replaceChildren(statusBadge(status, { compact: true }));
    const codecs = [unit.video_codec, unit.audio_codec].filter(Boolean).join(' / ');
    row.cells[2].title = codecs ? `${status} · ${codecs}` : status;
    row.cells[3].textContent = formatAgo(unit.last_seen);
    row.cells[3].title = unit.last_seen || '';
    row.cells[4].textContent = formatPosition(unit.position);
    row.cells[4].title = unit.position && unit.position.ts ? `fix ${unit.position.ts}` : '';
  }

  applyFilter() {
    const needle = this.el.filter.value.trim().toLowerCase();
    let visible = 0;
    for (const [id, row] of this.rows) {
      const match = !needle || id.toLowerCase().includes(needle);
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
        item.textContent = `${STATUS_LABELS[status][0]} ${counts[status]}`;
        return item;
      }),
    );
  }
}

/**
 * @param {'publishing' | 'online' | 'offline'} status
 * @param {{compact?: boolean}} [options] compact: Chinese only, English as the tooltip
 */
export function statusBadge(status, { compact = false } = {}) {
  const badge = document.createElement('span');
  badge.className = `badge badge--${status}`;
  badge.dataset.status = status;
  if (compact) {
    badge.textContent = STATUS_LABELS[status][0];
    badge.title = STATUS_LABELS[status][1];
  } else {
    bilingual(badge, STATUS_LABELS[status]);
  }
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
