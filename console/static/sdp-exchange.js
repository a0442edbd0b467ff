/**
 * The HTTP half of WHIP (RFC 9725) and WHEP: one SDP offer POSTed with a bearer
 * token, one SDP answer back. No trickle ICE: the offer is sent only once ICE
 * gathering is complete, and the server's answer already carries all candidates.
 */

/** A failed offer/answer exchange, carrying the server's `error.code` and `error.message`. */
export class SdpExchangeError extends Error {
  /**
   * @param {string} message human sentence (the server's when it sent one)
   * @param {{status?: number, code?: string}} [details] HTTP status (0 for a network failure)
   */
  constructor(message, { status = 0, code = 'network_error' } = {}) {
    super(message);
    this.name = 'SdpExchangeError';
    this.status = status;
    this.code = code;
  }

  /** Whether trying again later can succeed without anyone changing the configuration. */
  get retryable() {
    return this.status === 0 || this.status === 408 || this.status === 409 ||
      this.status === 429 || this.status >= 500;
  }
}

/**
 * Resolve once `pc.iceGatheringState` is "complete", or after `timeoutMs`
 * (the offer is then sent with the candidates gathered so far; a STUN server
 * that does not answer must not hold the publish up forever).
 * @param {RTCPeerConnection} pc
 * @param {number} [timeoutMs]
 * @returns {Promise<void>}
 */
export function waitForIceGathering(pc, timeoutMs = 4000) {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      pc.removeEventListener('icegatheringstatechange', onChange);
      resolve();
    };
    const onChange = () => {
      if (pc.iceGatheringState === 'complete') done();
    };
    const timer = setTimeout(done, timeoutMs);
    pc.addEventListener('icegatheringstatechange', onChange);
  });
}

/**
 * Parse `Link: <stun:host:3478>; rel="ice-server"` headers (RFC 9725 section 4.6)
 * into RTCIceServer objects. Credentials are not carried in Link headers here.
 * @param {string | null} header
 * @returns {RTCIceServer[]}
 */
export function parseIceServerLinks(header) {
  if (!header) return [];
  const servers = [];
  for (const part of header.split(/,(?=\s*<)/)) {
    const match = /<([^>]+)>\s*;(.*)$/.exec(part.trim());
    if (match && /rel\s*=\s*"?ice-server"?/i.test(match[2])) servers.push({ urls: match[1] });
  }
  return servers;
}

/**
 * Read the `{"error": {"code", "message"}}` body of a failed response.
 * @param {Response} response
 * @returns {Promise<SdpExchangeError>}
 */
export async function errorFromResponse(response) {
  let code = `http_${response.status}`;
  let message = `HTTP ${response.status} ${response.statusText}`.trim();
  try {
    const body = await response.json();
    if (body && body.error) {
      code = body.error.code || code;
      message = body.error.message || message;
    }
  } catch {
    // Not JSON (a proxy's HTML page, an empty body): keep the status line.
  }
  return new SdpExchangeError(message, { status: response.status, code });
}

/**
 * POST the local description of `pc` (which must be set, with gathering complete)
 * to `url` and return the answer and the session resource.
 * @param {string} url `/whip/{unit}` or `/whep/{unit}`
 * @param {string} sdp the complete offer
 * @param {string} token bearer token (unit token for WHIP, person token for WHEP)
 * @param {{signal?: AbortSignal}} [options]
 * @returns {Promise<{answer: string, location: string | null, iceServers: RTCIceServer[]}>}
 *   location is an absolute URL of the session resource, for DELETE.
 * @throws {SdpExchangeError}
 */
export async function postOffer(url, sdp, token, { signal } = {}) {
  let response;
  try {
    response = await fetch(url, {
      method: 'POST',
      headers: { 'Content-Type': 'application/sdp', Authorization: `Bearer ${token}` },
      body: sdp,
      signal,
    });
  } catch (exc) {
    if (exc && exc.name === 'AbortError') throw exc;
    throw new SdpExchangeError(`Cannot reach the server: ${exc.message || exc}`);
  }
  if (response.status !== 201 && response.status !== 200) throw await errorFromResponse(response);
  const answer = await response.text();
  const locationHeader = response.headers.get('Location');
  const location = locationHeader ? new URL(locationHeader, response.url || url).href : null;
  return { answer, location, iceServers: parseIceServerLinks(response.headers.get('Link')) };
}

/**
 * End a WHIP/WHEP session. Best effort: errors are swallowed, because the
 * session is being abandoned anyway and the server reaps dead peers itself.
 * `keepalive` lets the request outlive a page that is being closed.
 * @param {string | null} location
 * @param {string} token
 */
export async function deleteSession(location, token) {
  if (!location) return;
  try {
    await fetch(location, {
      method: 'DELETE',
      headers: { Authorization: `Bearer ${token}` },
      keepalive: true,
    });
  } catch {
    // Network gone: nothing more to do.
  }
}

/**
 * The session id at the end of a `Location` such as `/whep/bc-01/abc123`.
 * @param {string | null} location
 * @returns {string | null}
 */
export function sessionIdOf(location) {
  if (!location) return null;
  const path = new URL(location, window.location.href).pathname.replace(/\/+$/, '');
  return decodeURIComponent(path.slice(path.lastIndexOf('/') + 1)) || null;
}
