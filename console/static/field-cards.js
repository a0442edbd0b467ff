/**
 * Instruction cards on the field page, newest first: what the command room asks, and the
 * officer's buttons to answer it.
 *
 * A card shows the type, the text, the priority, the case number and when it arrived (court
 * time, Asia/Shanghai: `2026-12-02 16:05:09`); a `goto` adds the target, its distance and
 * direction from the phone's own fix and a `geo:` link for the phone's map app. Human orders
 * (`text`, `goto`) get 确认 (acknowledged), 完成 (done: acknowledges first if needed) and 拒绝
 * (refused, with a reason typed in the card; a refusal without one is not sent). Machine orders
 * show what the page did.
 *
 * Each card is `li.order[data-instruction-id][data-type][data-state]` with `data-pending="1"`
 * while its answer waits to be sent. States: delivered, acknowledged, done, refused, running
 * (a machine order being carried out).
 */
import { bearingDeg, compassPoint, geoUri, haversineM } from './great-circle.js';
import { t } from './field-texts.js';

export const HUMAN = new Set(['text', 'goto']);
const KNOWN_TYPES = new Set(['text', 'goto', 'record_start', 'record_stop', 'snapshot', 'callback', 'end_action']);
const MAX_CARDS = 60;
/** China Standard Time: UTC+8 all year (no daylight saving since 1991). */
const COURT_OFFSET_MS = 8 * 3600 * 1000;

/** `2026-12-02 16:05:09` in court time. @param {number} epochMs */
export function courtTime(epochMs) {
  const d = new Date(epochMs + COURT_OFFSET_MS);
  const p = (n) => String(n).padStart(2, '0');
  return `${d.getUTCFullYear()}-${p(d.getUTCMonth() + 1)}-${p(d.getUTCDate())} ` +
    `${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())}`;
}

function distanceText(metres) {
  if (metres >= 1000) return t('kilometres', { n: (metres / 1000).toFixed(1) });
  return t('metres', { n: Math.round(metres) });
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

export class OrderCards {
  /**
   * @param {HTMLElement} list
   * @param {HTMLElement} empty shown while there is no card
   * @param {{answer: (card: object, state: string, reason?: string) => void,
   *   here: () => ({lat: number, lon: number} | null), pending: (id: string) => boolean,
   *   online: () => boolean}} context
   */
  constructor(list, empty, context) {
    this.list = list;
    this.empty = empty;
    this.ctx = context;
    /** @type {Map<string, object>} cards by instruction id */
    this.cards = new Map();
  }

  /** A delivered instruction (the wire shape of `sync`); returns its card. */
  add(item, receivedAt) {
    const existing = this.cards.get(item.id);
    if (existing) return existing;
    const card = {
      id: item.id,
      seq: item.seq,
      type: item.type,
      payload: item.payload && typeof item.payload === 'object' ? item.payload : {},
      priority: item.priority || 'normal',
      caseNumber: item.case_number || null,
      receivedAt,
      machine: !HUMAN.has(item.type),
      state: HUMAN.has(item.type) ? 'delivered' : 'running',
      reason: null,
      outcome: null,
      rejected: false,
      refusing: false,
      element: null,
    };
    this.cards.set(card.id, card);
    card.element = this.build(card);
    this.list.prepend(card.element);
    this.trim();
    this.render(card);
    return card;
  }

  /** Change a card's state (and reason/outcome) and show it. */
  update(id, changes) {
    const card = this.cards.get(id);
    if (!card) return;
    Object.assign(card, changes);
    this.render(card);
  }

  renderAll() {
    for (const card of this.cards.values()) this.render(card);
  }

  /** The phone moved: distances to `goto` targets change. */
  refreshWays() {
    for (const card of this.cards.values()) {
      if (card.type === 'goto') this.renderWay(card);
    }
  }

  /** What tests read: one entry per card, newest first. */
  snapshot() {
    return [...this.list.children].map((li) => {
      const card = this.cards.get(li.dataset.instructionId);
      return {
        id: card.id, seq: card.seq, type: card.type, state: card.state, reason: card.reason,
        pending: this.ctx.pending(card.id), rejected: card.rejected,
        outcome: card.outcome && card.outcome.key, text: li.innerText,
      };
    });
  }

  trim() {
    const answered = [...this.cards.values()].filter((c) => c.state === 'done' || c.state === 'refused');
    while (this.cards.size > MAX_CARDS && answered.length) {
      const oldest = answered.shift();
      oldest.element.remove();
      this.cards.delete(oldest.id);
    }
  }

  build(card) {
    const li = el('li', 'order');
    li.dataset.instructionId = card.id;
    li.dataset.type = card.type;
    li.dataset.priority = card.priority;
    const head = el('div', 'order-head');
    head.append(el('span', 'order-type'), el('span', 'order-priority'));
    li.append(head);
    const text = card.payload.text || card.payload.note;
    if (text) li.append(el('p', 'order-text', String(text)));
    if (card.type === 'goto') {
      const way = el('div', 'order-way');
      const link = el('a', 'order-map btn');
      link.href = geoUri(Number(card.payload.lat), Number(card.payload.lon));
      way.append(el('p', 'order-target'), el('p', 'order-distance'), link);
      li.append(way);
    }
    li.append(el('p', 'order-meta order-case'), el('p', 'order-meta order-time'), el('p', 'order-status'));
    if (!card.machine) {
      const buttons = el('div', 'order-buttons');
      for (const [name, handler] of [
        ['ack', () => this.acknowledge(card)],
        ['done', () => this.done(card)],
        ['refuse', () => this.openRefusal(card)],
      ]) {
        const button = el('button', `btn order-${name}`);
        button.type = 'button';
        button.dataset.action = name;
        button.addEventListener('click', handler);
        buttons.append(button);
      }
      li.append(buttons, this.buildRefusal(card));
    }
    return li;
  }

  buildRefusal(card) {
    const form = el('form', 'order-refusal');
    form.hidden = true;
    form.noValidate = true;
    const input = el('input', 'order-reason');
    input.type = 'text';
    input.maxLength = 2000;
    input.autocomplete = 'off';
    const error = el('p', 'order-refuse-error');
    error.hidden = true;
    const send = el('button', 'btn btn--danger order-send-refusal');
    send.type = 'submit';
    const cancel = el('button', 'btn order-cancel');
    cancel.type = 'button';
    const row = el('div', 'order-refuse-buttons');
    row.append(send, cancel);
    form.append(input, error, row);
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      const reason = input.value.trim();
      if (!reason) {
        error.hidden = false;
        input.focus();
        return;
      }
      card.refusing = false;
      this.ctx.answer(card, 'refused', reason);
    });
    cancel.addEventListener('click', () => {
      card.refusing = false;
      this.render(card);
    });
    input.addEventListener('input', () => {
      if (input.value.trim()) error.hidden = true;
    });
    return form;
  }

  acknowledge(card) {
    if (card.state === 'delivered') this.ctx.answer(card, 'acknowledged');
  }

  done(card) {
    if (card.state === 'delivered') this.ctx.answer(card, 'acknowledged');
    if (card.state === 'acknowledged') this.ctx.answer(card, 'done');
  }

  openRefusal(card) {
    if (card.state !== 'delivered' && card.state !== 'acknowledged') return;
    card.refusing = true;
    this.render(card);
    card.element.querySelector('.order-reason').focus();
  }

  render(card) {
    const li = card.element;
    li.dataset.state = card.state;
    const pending = this.ctx.pending(card.id);
    li.dataset.pending = pending ? '1' : '0';
    const typeKey = KNOWN_TYPES.has(card.type) ? `type_${card.type}` : 'type_other';
    li.querySelector('.order-type').textContent = t(typeKey);
    li.querySelector('.order-priority').textContent = t('priority', { p: t(`prio_${card.priority}`) });
    const caseLine = li.querySelector('.order-case');
    caseLine.hidden = !card.caseNumber;
    caseLine.textContent = card.caseNumber ? t('case_number', { c: card.caseNumber }) : '';
    li.querySelector('.order-time').textContent = t('received_at', { t: courtTime(card.receivedAt) });
    if (card.type === 'goto') {
      this.renderWay(card);
      li.querySelector('.order-map').textContent = t('open_map');
    }
    li.querySelector('.order-status').textContent = this.statusText(card, pending);
    li.querySelector('.order-status').title = (card.outcome && card.outcome.detail) || '';
    const buttons = li.querySelector('.order-buttons');
    if (buttons) {
      const open = card.state === 'delivered' || card.state === 'acknowledged';
      buttons.hidden = !open || card.refusing;
      for (const button of buttons.querySelectorAll('button')) {
        button.textContent = t(`btn_${button.dataset.action}`);
        if (button.dataset.action === 'ack') button.hidden = card.state !== 'delivered';
      }
      const form = li.querySelector('.order-refusal');
      form.hidden = !(open && card.refusing);
      const input = /** @type {HTMLInputElement} */ (form.querySelector('.order-reason'));
      input.placeholder = t('refuse_placeholder');
      input.setAttribute('aria-label', t('refuse_placeholder'));
      form.querySelector('.order-refuse-error').textContent = t('reason_required');
      form.querySelector('.order-send-refusal').textContent = t('btn_send_refusal');
      form.querySelector('.order-cancel').textContent = t('btn_cancel');
    }
  }

  statusText(card, pending) {
    const parts = [t(`state_${card.state}`)];
    if (card.outcome) parts.push(t(card.outcome.key, card.outcome.params));
    else if (card.state === 'refused' && card.reason) parts.push(t('reason', { r: card.reason }));
    if (card.rejected) parts.push(t('answer_rejected'));
    else if (pending) parts.push(this.ctx.online() ? t('sending') : t('queued_offline'));
    return parts.join(' · ');
  }

  renderWay(card) {
    const lat = Number(card.payload.lat);
    const lon = Number(card.payload.lon);
    const li = card.element;
    li.querySelector('.order-target').textContent = t('target', { lat: lat.toFixed(6), lon: lon.toFixed(6) });
    const here = this.ctx.here();
    let way;
    if (!here || !Number.isFinite(lat) || !Number.isFinite(lon)) {
      way = t('way_no_fix');
    } else {
      const bearing = bearingDeg(here.lat, here.lon, lat, lon);
      way = t('way', {
        d: distanceText(haversineM(here.lat, here.lon, lat, lon)),
        dir: t(`dir_${compassPoint(bearing)}`),
        deg: Math.round(bearing) % 360,
      });
    }
    li.querySelector('.order-distance').textContent = way;
  }
}
