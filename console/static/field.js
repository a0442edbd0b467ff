/**
 * The field page (`/field`): a phone or an Android body camera with a browser
 * publishes its camera and microphone to the server over WHIP.
 *
 * States (`#field-state` text and `data-state`, and `window.fieldPage.state`):
 *   "idle"       not publishing (never started, or stopped by the user)
 *   "connecting" camera being opened, offer/answer or ICE in progress
 *   "live"       the peer connection is connected and media flows
 *   "error"      the last attempt failed; the message says why (the server's
 *                `error.message`) and whether a retry is scheduled
 *
 * A connection that fails is retried with capped exponential backoff and
 * jitter; errors that retrying cannot fix (bad token, unknown unit, refused
 * SDP) stop the retries until the user presses Start again.
 *
 * The unit id and token are remembered in localStorage. `?unit=..&token=..`
 * prefill the form and `&autostart=1` starts publishing on load (kiosk use).
 */
import { Backoff } from './backoff.js';
import { initSos } from './field-sos.js';
import {
  SdpExchangeError, deleteSession, postOffer, waitForIceGathering,
} from './sdp-exchange.js';

const STORE_UNIT = 'dispatch.field.unit';
const STORE_TOKEN = 'dispatch.field.token';
const STORE_ICE = 'dispatch.field.iceServers';
const CONNECT_TIMEOUT_MS = 15000;
const DISCONNECTED_GRACE_MS = 3000;
/** About 1 Mbit/s for 640x480: enough for evidence, gentle on 4G uplinks. */
const MAX_VIDEO_BITRATE = 1_200_000;

const LABELS = {
  idle: '未推流',
  connecting: '连接中',
  live: '直播中',
  error: '错误',
};

const byId = (id) => /** @type {HTMLElement} */ (document.getElementById(id));

class FieldPublisher {
  constructor() {
    /** @type {RTCPeerConnection | null} */
    this.pc = null;
    /** @type {MediaStream | null} */
    this.stream = null;
    this.state = 'idle';
    this.message = '';
    this.location = null;
    this.running = false;
    this.generation = 0;
    this.backoff = new Backoff({ baseMs: 1000, capMs: 30000 });
    this.retryTimer = null;
    this.connectTimer = null;
    this.disconnectTimer = null;
    this.wakeLock = null;
    this.unitId = '';
    this.token = '';
    this.iceServers = loadIceServers();

    this.unitInput = /** @type {HTMLInputElement} */ (byId('unit-id'));
    this.tokenInput = /** @type {HTMLInputElement} */ (byId('unit-token'));
    this.startButton = /** @type {HTMLButtonElement} */ (byId('start-btn'));
    this.stopButton = /** @type {HTMLButtonElement} */ (byId('stop-btn'));
    this.preview = /** @type {HTMLVideoElement} */ (byId('field-preview'));

    byId('field-form').addEventListener('submit', (event) => {
      event.preventDefault();
      this.start();
    });
    this.stopButton.addEventListener('click', () => this.stop());
    window.addEventListener('online', () => {
      // The network is back: do not sit out the rest of a long backoff.
      if (this.running && this.retryTimer) this.retryNow();
    });
    window.addEventListener('pagehide', () => {
      if (this.location) deleteSession(this.location, this.token);
    });
    document.addEventListener('visibilitychange', () => {
      if (document.visibilityState === 'visible' && this.state === 'live') this.holdWakeLock();
    });
    this.render();
  }

  /** Fill the form from the query string or localStorage; start if asked to. */
  restore() {
    const params = new URLSearchParams(window.location.search);
    this.unitInput.value = params.get('unit') || localStorage.getItem(STORE_UNIT) || '';
    this.tokenInput.value = params.get('token') || localStorage.getItem(STORE_TOKEN) || '';
    if (params.has('token')) {
      // Keep the secret out of the address bar and the history.
      params.delete('token');
      const query = params.toString();
      history.replaceState(null, '', window.location.pathname + (query ? `?${query}` : ''));
    }
    if (params.get('autostart') === '1' && this.unitInput.value && this.tokenInput.value) this.start();
  }

  async start() {
    if (this.running) return;
    this.unitId = this.unitInput.value.trim();
    this.token = this.tokenInput.value.trim();
    if (!this.unitId || !this.token) {
      this.setState('error', '请填写设备编号和令牌 Unit id and token are required');
      return;
    }
    localStorage.setItem(STORE_UNIT, this.unitId);
    localStorage.setItem(STORE_TOKEN, this.token);
    this.running = true;
    this.backoff.reset();
    this.render();
    this.setState('connecting', '打开摄像头 opening camera');
    try {
      if (!this.stream || !this.stream.getTracks().some((track) => track.readyState === 'live')) {
        this.stream = await navigator.mediaDevices.getUserMedia({
          video: { width: 640, height: 480 },
          audio: true,
        });
        for (const track of this.stream.getTracks()) {
          track.addEventListener('ended', () => this.cameraLost(track));
        }
        this.preview.srcObject = this.stream;
        this.preview.play().catch(() => {});
      }
    } catch (exc) {
      this.running = false;
      this.setState('error', `无法打开摄像头 Cannot open camera: ${exc.message || exc.name || exc}`);
      return;
    }
    if (this.running) this.connect();
  }

  /** Stop publishing: DELETE the WHIP resource and release the camera. */
  stop() {
    this.running = false;
    this.clearRetry();
    this.teardown(true);
    if (this.stream) {
      for (const track of this.stream.getTracks()) track.stop();
      this.stream = null;
    }
    this.preview.srcObject = null;
    this.setState('idle', '已停止 stopped');
  }

  /** One publish attempt. */
  async connect() {
    this.clearRetry();
    this.teardown(true);
    const generation = ++this.generation;
    this.setState('connecting', '协商中 negotiating');
    const pc = new RTCPeerConnection({ iceServers: this.iceServers });
    this.pc = pc;
    pc.addEventListener('connectionstatechange', () => this.onConnectionState(pc));
    try {
      for (const track of this.stream.getTracks()) {
        pc.addTransceiver(track, { direction: 'sendonly', streams: [this.stream] });
      }
      await pc.setLocalDescription(await pc.createOffer());
      await waitForIceGathering(pc);
      if (generation !== this.generation) return;
      const { answer, location, iceServers } = await postOffer(
        `/whip/${encodeURIComponent(this.unitId)}`, pc.localDescription.sdp, this.token,
      );
      if (generation !== this.generation) {
        deleteSession(location, this.token);
        return;
      }
      this.location = location;
      if (iceServers.length) this.rememberIceServers(iceServers);
      await pc.setRemoteDescription({ type: 'answer', sdp: answer });
      this.limitBitrate(pc);
      this.setState('connecting', '建立媒体连接 connecting media');
      this.connectTimer = setTimeout(() => {
        if (this.pc === pc && pc.connectionState !== 'connected') this.fail('连接超时 connection timed out');
      }, CONNECT_TIMEOUT_MS);
    } catch (exc) {
      if (generation !== this.generation) return;
      if (exc instanceof SdpExchangeError && !exc.retryable) {
        // Wrong token, unknown unit, refused offer: retrying cannot help.
        this.running = false;
        this.teardown(false);
        this.setState('error', exc.message);
        return;
      }
      this.fail(exc instanceof SdpExchangeError ? exc.message : `WebRTC: ${exc.message || exc}`);
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
        this.setState('live', '正在向指挥中心推流 publishing to the command centre');
        this.holdWakeLock();
        break;
      case 'disconnected':
        if (!this.disconnectTimer) {
          this.disconnectTimer = setTimeout(() => {
            if (this.pc === pc) this.fail('连接中断 connection lost');
          }, DISCONNECTED_GRACE_MS);
        }
        break;
      case 'failed':
        this.fail('连接失败 connection failed');
        break;
      default:
        break;
    }
  }

  /** Drop the attempt and schedule the next one. @param {string} message */
  fail(message) {
    this.teardown(true);
    if (!this.running) return;
    const delay = this.backoff.next();
    const seconds = Math.ceil(delay / 1000);
    this.setState('error', `${message} · ${seconds} s 后重试 retrying in ${seconds} s`);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      if (this.running) this.connect();
    }, delay);
  }

  retryNow() {
    this.clearRetry();
    this.connect();
  }

  clearRetry() {
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
  }

  /** @param {MediaStreamTrack} track */
  cameraLost(track) {
    if (!this.running) return;
    this.running = false;
    this.clearRetry();
    this.teardown(true);
    this.setState('error', `${track.kind === 'video' ? '摄像头' : '麦克风'}已断开 ${track.kind} device ended`);
  }

  /** Close the peer connection; `deleteRemote` also ends the WHIP session on the server. */
  teardown(deleteRemote) {
    this.generation += 1;
    clearTimeout(this.connectTimer);
    clearTimeout(this.disconnectTimer);
    this.disconnectTimer = null;
    if (this.pc) {
      this.pc.close();
      this.pc = null;
    }
    if (deleteRemote && this.location) deleteSession(this.location, this.token);
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

  /** @param {'idle' | 'connecting' | 'live' | 'error'} state @param {string} message */
  setState(state, message) {
    this.state = state;
    this.message = message;
    this.render();
  }

  render() {
    const stateEl = byId('field-state');
    stateEl.textContent = this.state;
    stateEl.dataset.state = this.state;
    byId('field-status').dataset.state = this.state;
    byId('field-label').textContent = LABELS[this.state];
    byId('field-message').textContent = this.message;
    this.startButton.disabled = this.running;
    this.stopButton.disabled = !this.running && !this.stream;
    this.unitInput.disabled = this.running;
    this.tokenInput.disabled = this.running;
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

const publisher = new FieldPublisher();
/** Test hook: `pc` is the current RTCPeerConnection (or null), `state` as in `#field-state`. */
window.fieldPage = {
  get pc() {
    return publisher.pc;
  },
  get state() {
    return publisher.state;
  },
  get message() {
    return publisher.message;
  },
  start: () => publisher.start(),
  stop: () => publisher.stop(),
};
publisher.restore();

initSos();
