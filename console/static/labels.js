/**
 * Display labels of the dispatch objects (actions, instructions, alerts) and the small DOM
 * helpers the panels share. Every label comes from the text catalogue (console-texts.js) in the
 * interface language; the tables below map a machine code to its text.
 */
import { TEXTS, codeText, formatClock as clock, formatShort, fromZonedInput, t, toZonedInput } from './console-texts.js';

/** code -> text of every catalogue key `<family>.<code>`. */
function family(name) {
  const out = {};
  for (const key of Object.keys(TEXTS.zh)) {
    if (key.startsWith(`${name}.`)) out[key.slice(name.length + 1)] = t(key);
  }
  return out;
}

export const ACTION_TYPES = family('action_type');
export const ACTION_STATES = family('action_state');
export const INSTRUCTION_TYPES = family('ins_type');
export const PRIORITIES = family('priority');
export const ALERT_KINDS = family('alert');

/** In the order of the protocol; `at` names the timestamp field of each state. */
export const INSTRUCTION_STATES = {
  queued: { label: t('ins_state.queued'), at: 'created_at' },
  delivered: { label: t('ins_state.delivered'), at: 'delivered_at' },
  acknowledged: { label: t('ins_state.acknowledged'), at: 'acknowledged_at' },
  done: { label: t('ins_state.done'), at: 'done_at' },
  refused: { label: t('ins_state.refused'), at: 'refused_at' },
  expired: { label: t('ins_state.expired'), at: 'expired_at' },
  cancelled: { label: t('ins_state.cancelled'), at: 'cancelled_at' },
};

/** How far along an instruction is; a lower rank never replaces a higher one. */
export const INSTRUCTION_RANK = {
  queued: 0, delivered: 1, acknowledged: 2, done: 3, refused: 3, expired: 3, cancelled: 3,
};

/** @param {Record<string, string>} table @param {string} key */
export function labelOf(table, key) {
  return table[key] || String(key || '?');
}

export { codeText };

/** "19:05:07" in the court's time zone, "—" when absent. */
export function formatClock(iso) {
  return clock(iso);
}

/** "19:05" today, "11-27 19:05" another day, in the court's time zone. */
export function formatDateTime(iso, now = new Date()) {
  return formatShort(iso, now.getTime());
}

/** `<input type="datetime-local">` value (court's time zone) for an ISO time. */
export function toLocalInput(iso) {
  return toZonedInput(iso);
}

/** ISO 8601 UTC time of a `datetime-local` value (read in the court's time zone); null when empty. */
export function fromLocalInput(value) {
  return fromZonedInput(value);
}

/**
 * A small element with a label.
 * @param {string} tag @param {string} className @param {string} text
 */
export function labelElement(tag, className, text) {
  const el = document.createElement(tag);
  if (className) el.className = className;
  el.textContent = text;
  return el;
}

/** Shorthand for document.createElement with a class and text. */
export function el(tag, className = '', text = '') {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text) node.textContent = text;
  return node;
}
