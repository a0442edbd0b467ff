/**
 * Instructions (指令) sent to field units: the live `Map(id -> instruction)`
 * fed by `GET /api/instructions` and `instruction_update` events, and the
 * list that shows each one's state with the time of every transition
 * (queued → delivered → acknowledged → done | refused, or queued → expired).
 *
 * Rows: `li.instr[data-instruction-id][data-state][data-unit-id]`; an expired
 * instruction says so in large type ("已过期 expired") and is struck through.
 * A `snapshot` instruction with its still (the `snapshot_id` of its `result`
 * once done, or of the `snapshot` push as soon as the still is archived)
 * shows a thumbnail of it (`button.still-thumb[data-snapshot-id]`).
 */
import { codeText, errorText, formatLeft, formatTime, t } from './console-texts.js';
import {
  INSTRUCTION_RANK, INSTRUCTION_STATES, INSTRUCTION_TYPES, PRIORITIES, el, formatClock, labelElement, labelOf,
} from './labels.js';

/** Rows shown at most (the newest); the server keeps them all. */
const MAX_ROWS = 300;
/** Finished instructions kept in memory (the newest), so a long shift does not grow the map for ever. */
const KEEP_CLOSED = 1000;
const ACTIVE = new Set(['queued', 'delivered', 'acknowledged']);
/** The path an instruction can take, in order; only the steps it reached are shown. */
const STEPS = ['queued', 'delivered', 'acknowledged', 'done', 'refused', 'expired', 'cancelled'];

/** @returns {object | null} */
export function parseInstruction(raw) {
  if (!raw || typeof raw !== 'object' || typeof raw.id !== 'string' || !(raw.state in INSTRUCTION_RANK)) return null;
  return { ...raw, payload: raw.payload && typeof raw.payload === 'object' ? raw.payload : {} };
}

/** One line saying what the instruction asks for. */
export function describeInstruction(ins) {
  const p = ins.payload || {};
  if (ins.type === 'goto') {
    const where = Number.isFinite(p.lat) && Number.isFinite(p.lon) ? `${p.lat.toFixed(5)}, ${p.lon.toFixed(5)}` : '?';
    return [`→ ${where}`, p.note, p.text].filter(Boolean).join(' · ');
  }
  return p.text || '';
}

export class InstructionLog {
  /**
   * @param {{list: HTMLElement, empty: HTMLElement, filter: HTMLSelectElement}} elements
   * @param {{openTile: (unitId: string) => void, stills: import('./stills.js').StillGallery,
   *   cancel: (id: string) => Promise<object>, canWrite: () => boolean}} ctx
   */
  constructor(elements, ctx) {
    this.el = elements;
    this.ctx = ctx;
    /** @type {Map<string, object>} the test hook `dispatchConsole.instructions` */
    this.instructions = new Map();
    /** @type {Map<string, string>} instruction id -> snapshot id, from `snapshot` pushes */
    this.stills = new Map();
    /** @type {Map<string, HTMLLIElement>} */
    this.rows = new Map();
    /** @type {Map<string, string>} instruction id -> why its cancel failed */
    this.errors = new Map();
    this.el.filter.addEventListener('change', () => this.render());
    this.render();
  }

  /** Merge a `GET /api/instructions` list (newest first). */
  load(list) {
    for (const raw of list) this.upsert(raw, false);
    this.render();
  }

  /**
   * One instruction (an `instruction_update` event or a response). A copy
   * that is behind the one we have (a slow response) is ignored.
   */
  upsert(raw, render = true) {
    const ins = parseInstruction(raw);
    if (!ins) return;
    const known = this.instructions.get(ins.id);
    if (known && INSTRUCTION_RANK[known.state] > INSTRUCTION_RANK[ins.state]) return;
    this.instructions.set(ins.id, ins);
    if (this.instructions.size > KEEP_CLOSED + MAX_ROWS) this.prune();
    if (render) this.render();
  }

  prune() {
    const closed = this.sorted().filter((ins) => !ACTIVE.has(ins.state));
    for (const ins of closed.slice(KEEP_CLOSED)) {
      this.instructions.delete(ins.id);
      this.stills.delete(ins.id);
    }
  }

  /** A `snapshot` push: the still an instruction asked for is in the archive. */
  addStill(still) {
    if (!still || typeof still.snapshot_id !== 'string' || typeof still.instruction_id !== 'string') return;
    this.stills.set(still.instruction_id, still.snapshot_id);
    for (const id of this.stills.keys()) {
      if (this.stills.size <= KEEP_CLOSED) break;
      this.stills.delete(id); // the oldest first: a Map iterates in insertion order
    }
    if (this.instructions.has(still.instruction_id)) this.render();
  }

  /** @returns {string | null} the snapshot id of the instruction's still, if it has one */
  stillOf(ins) {
    if (ins.type !== 'snapshot') return null;
    const fromResult = ins.result && typeof ins.result.snapshot_id === 'string' ? ins.result.snapshot_id : null;
    return fromResult || this.stills.get(ins.id) || null;
  }

  clear() {
    this.instructions.clear();
    this.stills.clear();
    this.render();
  }

  /** Newest first: creation time, then the unit's sequence number. */
  sorted() {
    return [...this.instructions.values()].sort((a, b) =>
      (Date.parse(b.created_at) || 0) - (Date.parse(a.created_at) || 0) || (b.seq || 0) - (a.seq || 0) ||
      a.id.localeCompare(b.id));
  }

  /** Rebuild only the rows whose instruction changed; keep the others (and their focus) in place. */
  render() {
    const filter = this.el.filter.value;
    const shown = this.sorted().filter((ins) =>
      filter === 'active' ? ACTIVE.has(ins.state) : filter === 'closed' ? !ACTIVE.has(ins.state) : true,
    ).slice(0, MAX_ROWS);
    const keep = new Set(shown.map((ins) => ins.id));
    for (const [id, row] of this.rows) {
      if (!keep.has(id)) {
        row.remove();
        this.rows.delete(id);
      }
    }
    let previous = null;
    for (const ins of shown) {
      let row = this.rows.get(ins.id);
      if (!row || row.dataset.version !== version(ins, this.stillOf(ins))) {
        const fresh = this.row(ins);
        if (row) row.replaceWith(fresh);
        row = fresh;
        this.rows.set(ins.id, row);
      }
      const next = previous ? previous.nextSibling : this.el.list.firstChild;
      if (next !== row) this.el.list.insertBefore(row, next);
      previous = row;
    }
    this.el.empty.hidden = shown.length > 0;
    this.tick();
  }

  row(ins) {
    const li = el('li', 'instr');
    li.dataset.instructionId = ins.id;
    li.dataset.state = ins.state;
    li.dataset.unitId = ins.unit_id;
    li.dataset.priority = ins.priority;
    li.dataset.version = version(ins, this.stillOf(ins));

    const head = el('div', 'instr-head');
    const state = labelElement('span', `instr-state instr-state--${ins.state}`,
      INSTRUCTION_STATES[ins.state].label);
    head.append(state);
    head.append(el('span', 'instr-type', labelOf(INSTRUCTION_TYPES, ins.type)));
    const unit = el('button', 'link instr-unit', ins.unit_id);
    unit.type = 'button';
    unit.title = t('open_tile');
    unit.addEventListener('click', () => this.ctx.openTile(ins.unit_id));
    head.append(unit);
    if (ins.priority && ins.priority !== 'normal') {
      head.append(el('span', `prio prio--${ins.priority}`, labelOf(PRIORITIES, ins.priority)));
    }
    if (ins.case_number) head.append(el('span', 'instr-case', ins.case_number));
    li.append(head);

    const what = describeInstruction(ins);
    if (what) li.append(el('div', 'instr-text', what));
    const still = this.stillOf(ins);
    if (still) li.append(this.ctx.stills.thumbnail(still, `${ins.unit_id} · ${ins.case_number || ins.id}`));

    const steps = el('ol', 'instr-steps');
    for (const step of STEPS) {
      const at = ins[INSTRUCTION_STATES[step].at];
      if (!at) continue;
      const item = el('li', 'step');
      item.dataset.step = step;
      item.append(labelElement('span', 'step-label', step === 'queued' ? t('instr_step_queued') :
        INSTRUCTION_STATES[step].label), el('time', 'step-time', formatClock(at)));
      item.lastChild.setAttribute('datetime', at);
      steps.append(item);
    }
    if (ins.state === 'queued' && ins.expires_at) {
      const ttl = el('li', 'step step--ttl');
      ttl.dataset.expiresAt = ins.expires_at;
      steps.append(ttl);
    }
    li.append(steps);

    const foot = [];
    if (ins.reason) foot.push(t('instr_reason', { r: codeText('ins_reason', ins.reason) }));
    foot.push(`${ins.created_by || ''} · ${ins.id}`);
    const meta = el('div', 'instr-meta', foot.join(' · '));
    if (ins.state === 'queued' && this.ctx.canWrite && this.ctx.canWrite()) {
      const cancel = el('button', 'btn btn--small instr-cancel needs-write', t('instr_cancel'));
      cancel.type = 'button';
      cancel.title = t('instr_cancel_title');
      cancel.addEventListener('click', () => this.cancel(ins));
      meta.append(' ', cancel);
    }
    li.append(meta);
    const error = this.errors.get(ins.id);
    if (error) li.append(el('div', 'form-error', error));
    li.title = t('instr_row_title', { id: ins.id, seq: ins.seq, t: formatTime(ins.expires_at) });
    return li;
  }

  /** Cancel a queued instruction (a refusal — it was delivered meanwhile — is said on its row). */
  async cancel(ins) {
    this.errors.delete(ins.id);
    try {
      this.upsert(await this.ctx.cancel(ins.id));
    } catch (exc) {
      this.errors.set(ins.id, errorText(exc));
      const row = this.rows.get(ins.id);
      if (row) row.dataset.version = '';
      this.render();
    }
  }

  /** Once a second: the countdown to expiry of queued instructions. */
  tick(now = Date.now()) {
    for (const item of this.el.list.querySelectorAll('.step--ttl')) {
      const left = Math.round((Date.parse(item.dataset.expiresAt) - now) / 1000);
      item.textContent = left > 0 ? t('instr_expires_in', { left: formatLeft(left) }) : t('instr_expiring');
    }
  }
}

/** What a row shows, to know when to rebuild it. */
function version(ins, still) {
  return [ins.state, ins.delivered_at, ins.acknowledged_at, ins.done_at, ins.refused_at, ins.expired_at,
    ins.cancelled_at, ins.reason, still].join('|');
}
