/**
 * The unit's answers to instructions (`instruction_state {id, state, reason?, result?}`), sent in
 * the order they were given over whatever link is up — the page's side of field_client/answers.py.
 *
 * An answer is queued the moment the officer taps a button or a machine order finishes, and is
 * kept in localStorage until the server took it, so neither a dropped link nor a reloaded page
 * loses it. `drain()` sends the queue while the link is up; an answer whose call got no reply stays
 * at the head and goes out on the next connection. Answers the server already holds (a repeat
 * after a lost reply) count as taken; answers it refuses outright are dropped and reported.
 *
 * Events: `sent` and `rejected` (`detail: {answer, error?}`), `change` whenever the queue changes.
 */
import { LinkDown } from './field-link.js';

/** The server already has this answer, or a later one: nothing is lost by dropping ours. */
const HARMLESS = new Set(['already_in_state', 'bad_transition']);
const MAX_QUEUED = 500;

export class AnswerOutbox extends EventTarget {
  /** @param {import('./field-link.js').UnitLink} link */
  constructor(link) {
    super();
    this.link = link;
    this.storageKey = '';
    /** @type {{id: string, state: string, reason?: string, result?: object}[]} */
    this.queue = [];
    this.draining = false;
    link.addEventListener('connected', () => this.drain());
  }

  /** Work for `unitId`: its answers that a previous page left unsent come first. */
  use(unitId) {
    this.storageKey = `dispatch.field.answers.${unitId}`;
    this.queue = load(this.storageKey);
    this.changed();
  }

  /** Queue an answer and send it as soon as the link lets us. */
  report(answer) {
    const message = { id: answer.id, state: answer.state };
    if (answer.reason) message.reason = answer.reason;
    if (answer.result && Object.keys(answer.result).length) message.result = answer.result;
    this.queue.push(message);
    if (this.queue.length > MAX_QUEUED) this.queue.shift();
    this.changed();
    this.drain();
  }

  /** Whether an answer to instruction `id` is still waiting to be sent. */
  isPending(id) {
    return this.queue.some((answer) => answer.id === id);
  }

  /** The newest answer to instruction `id` still waiting to be sent, or null. */
  lastQueued(id) {
    for (let i = this.queue.length - 1; i >= 0; i -= 1) {
      if (this.queue[i].id === id) return this.queue[i];
    }
    return null;
  }

  async drain() {
    if (this.draining) return;
    this.draining = true;
    try {
      while (this.queue.length && this.link.online) {
        const answer = this.queue[0];
        try {
          await this.link.call('instruction_state', answer);
          this.taken(answer, 'sent');
        } catch (exc) {
          if (exc instanceof LinkDown) return; // stays at the head for the next connection
          if (HARMLESS.has(exc.code)) {
            this.taken(answer, 'sent');
          } else {
            console.warn(`answer ${answer.state} to ${answer.id} refused by the server: ${exc.code} ${exc.message}`);
            this.taken(answer, 'rejected', exc);
          }
        }
      }
    } finally {
      this.draining = false;
    }
  }

  taken(answer, outcome, error) {
    if (this.queue[0] === answer) this.queue.shift();
    this.changed();
    this.dispatchEvent(new CustomEvent(outcome, { detail: { answer, error } }));
  }

  changed() {
    try {
      if (this.storageKey) localStorage.setItem(this.storageKey, JSON.stringify(this.queue));
    } catch {
      // Storage full or unavailable: the queue still lives in memory.
    }
    this.dispatchEvent(new Event('change'));
  }
}

function load(key) {
  try {
    const saved = JSON.parse(localStorage.getItem(key) || '[]');
    return Array.isArray(saved) ? saved.filter((a) => a && typeof a.id === 'string' && typeof a.state === 'string') : [];
  } catch {
    return [];
  }
}
