/**
 * The console's HTTP client and its login session.
 *
 * The session (token, username, role, expiry) lives in sessionStorage, so it
 * survives a reload of the tab but not the closing of the browser. Any 401
 * from any call ends the session and hands the server's message to
 * `onUnauthorized`, which sends the operator back to the login form.
 */

import { errorText, t } from './console-texts.js';

const SESSION_KEY = 'dispatch.console.session';

/** An HTTP error with the server's `{"error": {"code", "message"}}` payload. */
export class ApiError extends Error {
  /**
   * @param {string} message
   * @param {number} status HTTP status, 0 when the server could not be reached
   * @param {string} code snake_case error code
   */
  constructor(message, status, code) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
  }
}

/**
 * @typedef {{token: string, username: string, role: string, expires_at: string | null}} Session
 */

/** @returns {Session | null} */
export function loadSession() {
  try {
    const session = JSON.parse(sessionStorage.getItem(SESSION_KEY) || 'null');
    return session && typeof session.token === 'string' ? session : null;
  } catch {
    return null;
  }
}

/** @param {Session | null} session */
export function saveSession(session) {
  if (session) sessionStorage.setItem(SESSION_KEY, JSON.stringify(session));
  else sessionStorage.removeItem(SESSION_KEY);
}

export class ApiClient {
  /**
   * @param {(message: string) => void} onUnauthorized called once per 401 with the server's message
   */
  constructor(onUnauthorized) {
    this.onUnauthorized = onUnauthorized;
    /** @type {Session | null} */
    this.session = loadSession();
  }

  get token() {
    return this.session ? this.session.token : null;
  }

  /**
   * Log in and store the session. A 401 here is a wrong password, not an
   * expired session, so it is thrown to the form rather than handled globally.
   * @returns {Promise<Session>}
   */
  async login(username, password) {
    const body = await this.request('POST', '/api/login', { username, password }, { anonymous: true });
    this.session = {
      token: body.token,
      username: body.username,
      role: body.role,
      permissions: Array.isArray(body.permissions) ? body.permissions : undefined,
      expires_at: body.expires_at || null,
    };
    saveSession(this.session);
    return this.session;
  }

  /** End the session on the server (best effort) and forget it here. */
  async logout() {
    const token = this.token;
    this.forget();
    if (!token) return;
    try {
      await fetch('/api/logout', { method: 'POST', headers: { Authorization: `Bearer ${token}` } });
    } catch {
      // The server is unreachable; the token expires on its own.
    }
  }

  /** Drop the local session without telling the server. */
  forget() {
    this.session = null;
    saveSession(null);
  }

  /** @returns {Promise<{username: string, role: string, expires_at: string}>} */
  me() {
    return this.request('GET', '/api/me');
  }

  /** @returns {Promise<{patrol_interval_s: number, ice_servers: RTCIceServer[]}>} */
  consoleConfig() {
    return this.request('GET', '/api/console-config');
  }

  // Dispatch: enforcement actions, instructions, alerts (docs/api.md "Dispatch").

  /** @returns {Promise<{actions: object[]}>} */
  listActions() {
    return this.request('GET', '/api/actions');
  }

  /** @param {object} fields @returns {Promise<object>} the created action */
  createAction(fields) {
    return this.request('POST', '/api/actions', fields);
  }

  /** @param {string} id @param {object} fields @returns {Promise<object>} */
  updateAction(id, fields) {
    return this.request('PATCH', `/api/actions/${encodeURIComponent(id)}`, fields);
  }

  /** @param {string} id @param {'start' | 'end'} verb @returns {Promise<object>} */
  moveAction(id, verb) {
    return this.request('POST', `/api/actions/${encodeURIComponent(id)}/${verb}`);
  }

  /** @returns {Promise<object>} the action's compliance with the rules of procedure (流程预警) */
  actionProcedure(id) {
    return this.request('GET', `/api/actions/${encodeURIComponent(id)}/procedure`);
  }

  /** @returns {Promise<{instructions: object[]}>} newest first */
  listInstructions(limit = 200) {
    return this.request('GET', `/api/instructions?limit=${limit}`);
  }

  /** @returns {Promise<object>} one instruction */
  getInstruction(id) {
    return this.request('GET', `/api/instructions/${encodeURIComponent(id)}`);
  }

  /** @param {object} body @returns {Promise<{id: string, ids: string[], units?: string[], state: string}>} */
  sendInstruction(body) {
    return this.request('POST', '/api/instructions', body);
  }

  /** @param {'open' | null} state @returns {Promise<{alerts: object[]}>} newest first */
  listAlerts(state = null) {
    return this.request('GET', state ? `/api/alerts?state=${state}` : '/api/alerts');
  }

  /** @returns {Promise<object>} the acknowledged alert */
  ackAlert(id) {
    return this.request('POST', `/api/alerts/${encodeURIComponent(id)}/ack`);
  }

  /** Cancel a queued instruction. @returns {Promise<object>} the instruction */
  cancelInstruction(id) {
    return this.request('POST', `/api/instructions/${encodeURIComponent(id)}/cancel`);
  }

  /** The JPEG of a still (取证照片); the server writes the view to the evidence ledger. @returns {Promise<Blob>} */
  async snapshotImage(id) {
    return (await this.send('GET', `/api/snapshots/${encodeURIComponent(id)}`)).blob();
  }

  /**
   * Send a JSON request with the bearer token and return the parsed body
   * (null for 204).
   * @throws {ApiError}
   */
  async request(method, path, body = undefined, { anonymous = false } = {}) {
    const response = await this.send(method, path, body, anonymous);
    return response.status === 204 ? null : response.json();
  }

  /**
   * Send a request (a JSON body if any) with the bearer token; the response when it is OK.
   * @returns {Promise<Response>}
   * @throws {ApiError} with the server's error
   */
  async send(method, path, body = undefined, anonymous = false) {
    const headers = {};
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    if (!anonymous && this.token) headers.Authorization = `Bearer ${this.token}`;
    let response;
    try {
      response = await fetch(path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (exc) {
      throw new ApiError(`cannot reach the server (${exc.message || exc})`, 0, 'network_error');
    }
    if (response.ok) return response;
    const error = await readError(response);
    if (response.status === 401 && !anonymous) this.unauthorized(errorText(error));
    throw error;
  }

  /** End the session because the server refused the token (HTTP 401 or Socket.IO connect_error). */
  unauthorized(message) {
    if (!this.session) return;
    this.forget();
    this.onUnauthorized(message || t('session_expired'));
  }
}

/** @param {Response} response @returns {Promise<ApiError>} */
async function readError(response) {
  let code = `http_${response.status}`;
  let message = `HTTP ${response.status} ${response.statusText}`.trim();
  try {
    const body = await response.json();
    if (body && body.error) {
      code = body.error.code || code;
      message = body.error.message || message;
    }
  } catch {
    // Not JSON: keep the status line.
  }
  return new ApiError(message, response.status, code);
}
