/**
 * The field page's Socket.IO link: namespace `/unit`, `auth: {unit_id, token}`, websocket
 * transport (docs/api.md). Instructions, answers, positions and talk-back travel over it.
 *
 * States (`state`, and `#link-state[data-state]`):
 *   "offline"      not started (or stopped by the officer)
 *   "connecting"   first connection attempt of this session
 *   "online"       connected
 *   "reconnecting" the link dropped (or an attempt failed); the next attempt is scheduled
 *   "refused"      the server refused the unit (wrong token, unknown or disabled unit): no retries
 *
 * Reconnecting is ours, not the library's (`reconnection: false`): capped exponential backoff
 * with jitter (backoff.js), cut short when the browser says the network is back. When the
 * browser says the network is gone, the link is dropped at once (a websocket may otherwise sit
 * half-open for the length of the heartbeat), and so is a link that does not answer a call in
 * time. Emits `state` on every change and `connected` on every (re)connect.
 */
import { Backoff } from './backoff.js';
import { errorKey } from './field-texts.js';

/** Refusals that no retry can change: the unit's configuration is wrong. */
const FINAL_CODES = new Set(['bad_token', 'unauthorized', 'unknown_unit', 'unit_disabled', 'bad_unit_id']);
const CALL_TIMEOUT_MS = 15000;

/** A call that did not get an answer: the link is down or dropped meanwhile. */
export class LinkDown extends Error {
  constructor(message = 'link down') {
    super(message);
    this.name = 'LinkDown';
  }
}

/** The server answered a call with `{"ok": false, "error": {code, message}}`. */
export class LinkRefusal extends Error {
  constructor(error) {
    super((error && error.message) || 'refused');
    this.name = 'LinkRefusal';
    this.code = (error && error.code) || 'error';
  }
}

export class UnitLink extends EventTarget {
  constructor() {
    super();
    /** @type {'offline' | 'connecting' | 'online' | 'reconnecting' | 'refused'} */
    this.state = 'offline';
    this.message = null;
    this.socket = null;
    this.backoff = new Backoff({ baseMs: 1000, capMs: 30000 });
    this.retryTimer = null;
    /** @type {Map<string, (data: any) => void>} server events and their handlers */
    this.handlers = new Map();
    this.connects = 0;

    window.addEventListener('offline', () => {
      if (this.socket && this.socket.connected) this.drop();
    });
    window.addEventListener('online', () => {
      if (this.state === 'reconnecting') this.retryNow();
    });
  }

  get online() {
    return this.state === 'online' && Boolean(this.socket && this.socket.connected);
  }

  /** Handle the server event `name` (registered once; kept across reconnects). */
  on(name, handler) {
    this.handlers.set(name, handler);
    if (this.socket) this.socket.on(name, handler);
  }

  /** Connect as `unitId` with `token`; reconnects by itself until `close()`. */
  open(unitId, token) {
    this.close();
    if (typeof window.io !== 'function') {
      this.setState('refused', { key: 'err_server', detail: 'the Socket.IO client (/vendor/socket.io.min.js) is missing' });
      return;
    }
    const socket = window.io('/unit', {
      auth: { unit_id: unitId, token },
      transports: ['websocket'],
      reconnection: false,
      forceNew: true,
      timeout: 10000,
    });
    this.socket = socket;
    this.backoff.reset();
    this.setState('connecting', null);
    socket.on('connect', () => {
      if (socket !== this.socket) return;
      this.backoff.reset();
      this.connects += 1;
      this.setState('online', null);
      this.dispatchEvent(new Event('connected'));
    });
    socket.on('disconnect', (reason) => {
      if (socket !== this.socket) return;
      this.retryLater({ key: 'msg_lost', detail: String(reason) });
    });
    socket.on('connect_error', (error) => {
      if (socket !== this.socket) return;
      const data = error && error.data && typeof error.data === 'object' ? error.data : {};
      const message = { key: errorKey(data.code || 'network_error'), detail: data.message || error.message };
      if (data.code && FINAL_CODES.has(data.code)) {
        this.clearRetry();
        this.setState('refused', message);
        return;
      }
      this.retryLater(message);
    });
    for (const [name, handler] of this.handlers) socket.on(name, handler);
  }

  /** Disconnect for good (the officer stopped). */
  close() {
    this.clearRetry();
    const socket = this.socket;
    this.socket = null;
    if (socket) {
      socket.removeAllListeners();
      socket.disconnect();
    }
    this.setState('offline', null);
  }

  /** Drop the current connection and reconnect after the backoff (network gone, call unanswered). */
  drop() {
    if (!this.socket) return;
    // `disconnect()` emits "disconnect" ("io client disconnect"), which schedules the retry.
    this.socket.disconnect();
  }

  retryLater(message) {
    if (!this.socket || this.state === 'refused') return;
    this.clearRetry();
    const delay = this.backoff.next();
    this.setState('reconnecting', { ...message, retryS: Math.ceil(delay / 1000) });
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      this.attempt();
    }, delay);
  }

  retryNow() {
    this.clearRetry();
    this.attempt();
  }

  attempt() {
    const socket = this.socket;
    if (!socket || socket.connected) return;
    if (navigator.onLine === false) {
      // Nothing can get through; the `online` event calls again.
      this.retryLater({ key: 'err_network_error' });
      return;
    }
    socket.connect();
  }

  clearRetry() {
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
  }

  /**
   * Emit `event` and wait for the acknowledgement.
   * @returns {Promise<any>} the ack's data when `ok`
   * @throws {LinkDown} not connected, or no answer within the timeout (the link is then dropped)
   * @throws {LinkRefusal} the server answered `ok: false`
   */
  async call(event, data, timeoutMs = CALL_TIMEOUT_MS) {
    const socket = this.socket;
    // Never let the library buffer an event for a later connection: the caller decides what
    // is sent again (answers are queued in order, fixes are kept, the rest is re-synced).
    if (!socket || !socket.connected) throw new LinkDown();
    let answer;
    try {
      answer = await socket.timeout(timeoutMs).emitWithAck(event, data);
    } catch (exc) {
      if (socket === this.socket && socket.connected) this.drop();
      throw new LinkDown(`${event}: ${exc.message || exc}`);
    }
    if (!answer || answer.ok !== true) throw new LinkRefusal(answer && answer.error);
    return answer;
  }

  setState(state, message) {
    this.state = state;
    this.message = message;
    this.dispatchEvent(new Event('state'));
  }
}
