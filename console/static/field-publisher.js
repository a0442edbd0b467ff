/**
 * Publishing the camera to the server over WHIP (RFC 9725), for as long as publishing is on.
 *
 * States (`state`, and the page's `#field-state[data-state]`):
 *   "idle"       not publishing (never started, stopped by the officer or by a `record_stop`)
 *   "connecting" offer/answer or ICE in progress
 *   "live"       the peer connection is connected and media flows
 *   "error"      the last attempt failed; `message` says why and whether a retry is scheduled
 *
 * A connection that fails is retried with capped exponential backoff and jitter; errors that
 * retrying cannot fix (bad token, unknown unit, refused SDP) stop the retries until publishing
 * is switched on again. `message` is `{key, params?, detail?, retryS?}` (see field-texts.js).
 * Emits `change` on every state or message change.
 */
import { Backoff } from './backoff.js';
import {
  SdpExchangeError, deleteSession, postOffer, waitForIceGathering,
} from './sdp-exchange.js';
import { errorKey } from './field-texts.js';

const STORE_ICE = 'dispatch.field.iceServers';
const CONNECT_TIMEOUT_MS = 15000;
const DISCONNECTED_GRACE_MS = 3000;
const DELETE_GRACE_MS = 2000;
/** About 1 Mbit/s for 640x480: enough for evidence, gentle on 4G uplinks. */
const MAX_VIDEO_BITRATE = 1_200_000;

export class FieldPublisher extends EventTarget {
  /**
   * @param {{stream: () => MediaStream | null, credentials: () => {unitId: string, token: string}}} context
   */
  constructor(context) {
    super();
    this.ctx = context;
    /** @type {RTCPeerConnection | null} */
    this.pc = null;
    /** @type {'idle' | 'connecting' | 'live' | 'error'} */
    this.state = 'idle';
    this.message = null;
    /** Times the server said it lost our media (`mediaLost`). */
    this.mediaLosses = 0;
    this.location = null;
    /** Whether publishing is switched on (attempts go on until it is switched off). */
    this.running = false;
    this.generation = 0;
    this.backoff = new Backoff({ baseMs: 1000, capMs: 30000 });
    this.retryTimer = null;
    this.connectTimer = null;
    this.disconnectTimer = null;
    this.wakeLock = null;
    this.iceServers = loadIceServers();

    window.addEventListener('online', () => {
      // The network is back: do not sit out the rest of a long backoff.
      if (this.running && this.retryTimer) this.connect();
    });
    window.addEventListener('pagehide', () => {
      if (this.location) deleteSession(this.location, this.ctx.credentials().token);
    });
    document.addEventListener('visibilitychange', () => {
      if (document.visibilityState === 'visible' && this.state === 'live') this.holdWakeLock();
    });
  }

  /** Switch publishing on (no-op when it is on). */
  publish() {
    if (this.running) return;
    this.running = true;
    this.backoff.reset();
    this.connect();
  }

  /** Switch publishing off: DELETE the WHIP resource; the camera stays with its owner. */
  unpublish(message = { key: 'msg_stopped' }) {
    this.running = false;
    this.clearRetry();
    this.teardown(true);
    this.setState('idle', message);
  }

  /**
   * Resolve true once live, false if publishing is switched off, fails for good, or
   * `timeoutMs` passes first.
   */
  waitLive(timeoutMs) {
    if (this.state === 'live') return Promise.resolve(true);
    return new Promise((resolve) => {
      const finish = (value) => {
        clearTimeout(timer);
        this.removeEventListener('change', onChange);
        resolve(value);
      };
      const onChange = () => {
        if (this.state === 'live') finish(true);
        else if (!this.running) finish(false);
      };
      const timer = setTimeout(() => finish(false), timeoutMs);
      this.addEventListener('change', onChange);
    });
  }

  /** One publish attempt. */
  async connect() {
    this.clearRetry();
    this.teardown(true);
    const stream = this.ctx.stream();
    if (!stream) {
      this.running = false;
      this.setState('error', { key: 'msg_camera_failed' });
      return;
    }
    const { unitId, token } = this.ctx.credentials();
    const generation = ++this.generation;
    this.setState('connecting', { key: 'msg_negotiating' });
    const pc = new RTCPeerConnection({ iceServers: this.iceServers });
    this.pc = pc;
    pc.addEventListener('connectionstatechange', () => this.onConnectionState(pc));
    try {
      for (const track of stream.getTracks()) {
        pc.addTransceiver(track, { direction: 'sendonly', streams: [stream] });
      }
      await pc.setLocalDescription(await pc.createOffer());
      await waitForIceGathering(pc);
      if (generation !== this.generation) return;
      const { answer, location, iceServers } = await postOffer(
        `/whip/${encodeURIComponent(unitId)}`, pc.localDescription.sdp, token,
      );
      if (generation !== this.generation) {
        deleteSession(location, token);
        return;
      }
      this.location = location;
      if (iceServers.length) this.rememberIceServers(iceServers);
      await pc.setRemoteDescription({ type: 'answer', sdp: answer });
      this.limitBitrate(pc);
      this.setState('connecting', { key: 'msg_connecting_media' });
      this.connectTimer = setTimeout(() => {
        if (this.pc === pc && pc.connectionState !== 'connected') this.fail({ key: 'msg_timeout' });
      }, CONNECT_TIMEOUT_MS);
    } catch (exc) {
      if (generation !== this.generation) return;
      if (exc instanceof SdpExchangeError) {
        const message = { key: errorKey(exc.code), detail: exc.message, code: exc.code };
        if (!exc.retryable) {
          // Wrong token, unknown unit, refused offer: retrying cannot help.
          this.running = false;
          this.teardown(false);
          this.setState('error', message);
          return;
        }
        this.fail(message);
        return;
      }
      this.fail({ key: 'msg_webrtc', detail: String(exc.message || exc) });
    }
  }

  /** @param {RTCPeerConnection} pc */
  onConnectionState(pc) {
    if (pc !== this.pc) return;
    switch (pc.connectionState) {
      case 'connected':
        clearTimeout(this.connectTimer);
        clearTimeout(this.disconnectTimer);
        this.disconnectTimer = null;
        this.backoff.reset();
        this.setState('live', { key: 'msg_publishing' });
        this.holdWakeLock();
        break;
      case 'disconnected':
        if (!this.disconnectTimer) {
          this.disconnectTimer = setTimeout(() => {
            if (this.pc === pc) this.fail({ key: 'msg_lost' });
          }, DISCONNECTED_GRACE_MS);
        }
        break;
      case 'failed':
        this.fail({ key: 'msg_failed' });
        break;
      default:
        break;
    }
  }

  /**
   * Drop the attempt and schedule the next one; `deleteRemote` false when the server no longer
   * has the session (nothing to end there); `state` what to show until then.
   */
  fail(message, deleteRemote = true, state = 'error') {
    this.teardown(deleteRemote);
    if (!this.running) return;
    const delay = this.backoff.next();
    this.setState(state, { ...message, retryS: Math.ceil(delay / 1000) });
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      if (this.running) this.connect();
    }, delay);
  }

  clearRetry() {
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
  }

  /**
   * The server says it lost this unit's media (the media worker holding it died): publish again
   * now rather than wait for the browser to notice the silent peer connection (ICE consent takes
   * seconds to fail). Nothing to do when not publishing.
   */
  mediaLost(reason) {
    if (!this.running || !this.pc) return;
    this.mediaLosses += 1;
    // Not an error of this phone's: shown as connecting (连接中…), with why and when.
    this.fail({ key: 'msg_media_lost', detail: reason ? String(reason) : undefined }, false, 'connecting');
  }

  /** A camera or microphone track ended by itself: publishing cannot go on. */
  deviceLost(kind) {
    if (!this.running) return;
    this.running = false;
    this.clearRetry();
    this.teardown(true);
    this.setState('error', { key: kind === 'video' ? 'msg_camera_ended' : 'msg_microphone_ended' });
  }

  /**
   * Close the peer connection; `deleteRemote` also ends the WHIP session on the server. The
   * DELETE goes first and the peer connection closes once it is answered (at most
   * DELETE_GRACE_MS later): closed first, the server would end the session on its own and
   * answer the DELETE with 404.
   */
  teardown(deleteRemote) {
    this.generation += 1;
    clearTimeout(this.connectTimer);
    clearTimeout(this.disconnectTimer);
    this.disconnectTimer = null;
    const pc = this.pc;
    this.pc = null;
    if (deleteRemote && this.location) {
      const deleted = deleteSession(this.location, this.ctx.credentials().token);
      if (pc) {
        const timer = setTimeout(() => pc.close(), DELETE_GRACE_MS);
        deleted.finally(() => {
          clearTimeout(timer);
          pc.close();
        });
      }
    } else if (pc) {
      pc.close();
    }
    this.location = null;
    if (this.wakeLock) {
      this.wakeLock.release().catch(() => {});
      this.wakeLock = null;
    }
  }

  /** @param {RTCPeerConnection} pc */
  limitBitrate(pc) {
    for (const sender of pc.getSenders()) {
      if (!sender.track || sender.track.kind !== 'video') continue;
      const parameters = sender.getParameters();
      if (!parameters.encodings || !parameters.encodings.length) continue;
      parameters.encodings[0].maxBitrate = MAX_VIDEO_BITRATE;
      sender.setParameters(parameters).catch(() => {});
    }
  }

  /** Keep a phone's screen on while live (best effort; not every browser has it). */
  async holdWakeLock() {
    if (!('wakeLock' in navigator) || this.wakeLock) return;
    try {
      this.wakeLock = await navigator.wakeLock.request('screen');
      this.wakeLock.addEventListener('release', () => {
        this.wakeLock = null;
      });
    } catch {
      // Not allowed here (page hidden, no permission): the stream goes on regardless.
    }
  }

  /** The ICE servers that the server announced in `Link` headers, for the next attempts. */
  rememberIceServers(iceServers) {
    this.iceServers = iceServers;
    localStorage.setItem(STORE_ICE, JSON.stringify(iceServers));
  }

  setState(state, message) {
    this.state = state;
    this.message = message;
    this.dispatchEvent(new Event('change'));
  }
}

function loadIceServers() {
  try {
    const servers = JSON.parse(localStorage.getItem(STORE_ICE) || '[]');
    return Array.isArray(servers) ? servers : [];
  } catch {
    return [];
  }
}
