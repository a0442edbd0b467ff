/**
 * One tile of the video wall: a WHEP viewer for one unit, its <video>, and the
 * state shown to the operator and to tests (`data-state`):
 *
 * - "offline"    the unit is not publishing (the roster says so). The viewer
 *                stays attached: the server resumes frames on the same peer
 *                connection when the unit publishes again.
 * - "connecting" the unit is publishing but no frame has been decoded since it
 *                (re)started, the viewer is being (re)negotiated, or frames
 *                stopped arriving for STALL_MS (the tile then also carries
 *                `data-stalled="true"`).
 * - "live"       frames are being decoded.
 *
 * `data-presence` says what the operator learns about the unit: "publishing", "online" (connected,
 * no video), "offline" (with the time it was last seen), or "unreachable" (the console's own
 * link to the server is down: the console says so once, the tile says nothing about the unit).
 *
 * When the peer connection fails, the server sends `viewer_closed`, or the
 * WHEP POST is answered 409 not_publishing, the tile opens a new viewer by
 * itself: at once when the unit next starts publishing, or after a capped,
 * jittered backoff while it is publishing.
 */
import { Backoff } from './backoff.js';
import { errorText, formatShort, t } from './console-texts.js';
import { kindLabel, formatPosition } from './roster.js';
import {
  SdpExchangeError, deleteSession, postOffer, sessionIdOf, waitForIceGathering,
} from './sdp-exchange.js';

/** No frame for this long while live: the picture froze, the tile is no longer live. */
const STALL_MS = 4000;
/** A peer connection that has not connected this long after the answer is abandoned. */
const CONNECT_TIMEOUT_MS = 15000;
/** "disconnected" this long is treated as "failed" (Chromium may take ~30 s to say failed). */
const DISCONNECTED_GRACE_MS = 6000;
/**
 * A viewer that shows no frame this long while the unit publishes is replaced
 * (after the answer, after the unit starts publishing again, or after the last
 * frame). The server holds a new viewer until a keyframe, asked for every few
 * seconds, so a healthy viewer never waits this long.
 */
const NO_VIDEO_MS = 10000;

/** Errors after which retrying without a change (a new publish) is pointless. */
const BLOCKING_STATUSES = new Set([400, 403, 404, 413, 415]);

/**
 * @typedef {object} TileContext
 * @property {() => string | null} getToken person token
 * @property {() => RTCIceServer[]} getIceServers from /api/console-config
 * @property {() => Promise<() => void>} acquireSlot limits concurrent negotiations; resolves to a release function
 * @property {(tile: VideoTile) => void} onChange state, stream or unit changed
 * @property {(tile: VideoTile) => void} onActivate the operator clicked the tile
 * @property {(tile: VideoTile) => void} onCloseFull the operator clicked the tile's close button
 * @property {(message: string) => void} onUnauthorized the token was refused (HTTP 401)
 * @property {(unitId: string) => HTMLElement} [createTalkControl] the push-to-talk control (talk.js)
 * @property {() => boolean} [linkDown] whether the console's own link to the server is down
 * @property {(unitId: string, tile: VideoTile) => void} [onDropUnit] a unit was dragged onto this tile
 */

export class VideoTile {
  /**
   * @param {import('./roster.js').Unit} unit
   * @param {TileContext} context
   */
  constructor(unit, context) {
    this.unitId = unit.id;
    this.unit = unit;
    this.ctx = context;
    this.publishing = false;
    /** @type {RTCPeerConnection | null} */
    this.pc = null;
    /** @type {MediaStream | null} */
    this.stream = null;
    this.location = null;
    this.sessionId = null;
    this.live = false;
    this.stalled = false;
    this.error = null;
    this.blocked = false;
    this.closed = false;
    this.opening = false;
    this.generation = 0;
    this.backoff = new Backoff({ baseMs: 1000, capMs: 15000 });
    this.retryTimer = null;
    this.retryAt = 0;
    this.connectTimer = null;
    this.disconnectTimer = null;
    this.lastFrames = 0;
    this.lastBytes = 0;
    this.lastStatsAt = 0;
    this.lastFrameAt = 0;
    this.waitingSince = 0;
    this.fps = 0;
    this.kbps = 0;
    /** Whether an open alarm (SOS) is about this unit: `data-alarm="sos"`. */
    this.alarm = false;
    this.buildDom();
    this.watchFrames();
    this.setUnit(unit);
  }

  /** "connecting" | "live" | "offline", as in `data-state`. */
  get state() {
    if (!this.publishing) return 'offline';
    return this.live ? 'live' : 'connecting';
  }

  buildDom() {
    const el = document.createElement('div');
    el.className = 'tile';
    el.dataset.unitId = this.unitId;
    el.tabIndex = 0;
    el.innerHTML = `
      <div class="tile-stage">
        <video muted autoplay playsinline disablepictureinpicture></video>
        <div class="tile-overlay"><span class="tile-overlay-main"></span><small class="tile-overlay-detail"></small></div>
      </div>
      <div class="tile-bar">
        <span class="tile-alarm">SOS</span><span class="tile-id"></span><span class="tile-name"></span>
        <span class="tile-kind"></span><span class="tile-state"></span>
        <span class="tile-stats"></span><span class="tile-pos"></span>
        <button type="button" class="tile-unmute"></button>
        <button type="button" class="tile-close"></button>
      </div>`;
    el.title = t('tile_full_title');
    this.element = el;
    /** @type {HTMLVideoElement} */
    this.video = el.querySelector('video');
    this.video.muted = true;
    this.dom = {
      overlayMain: el.querySelector('.tile-overlay-main'),
      overlayDetail: el.querySelector('.tile-overlay-detail'),
      id: el.querySelector('.tile-id'),
      name: el.querySelector('.tile-name'),
      kind: el.querySelector('.tile-kind'),
      state: el.querySelector('.tile-state'),
      stats: el.querySelector('.tile-stats'),
      pos: el.querySelector('.tile-pos'),
      unmute: el.querySelector('.tile-unmute'),
      close: el.querySelector('.tile-close'),
    };
    const talk = this.ctx.createTalkControl ? this.ctx.createTalkControl(this.unitId) : null;
    if (talk) this.dom.unmute.before(talk);
    this.dom.unmute.addEventListener('click', (event) => {
      event.stopPropagation();
      this.setMuted(!this.video.muted);
    });
    this.dom.close.addEventListener('click', (event) => {
      event.stopPropagation();
      this.ctx.onCloseFull(this);
    });
    // Double-click (or Enter on the focused tile) for full screen; a single click only selects.
    el.addEventListener('dblclick', () => this.ctx.onActivate(this));
    el.addEventListener('keydown', (event) => {
      if (event.key === 'Enter' && event.target === el) this.ctx.onActivate(this);
    });
    el.addEventListener('dragover', (event) => {
      if (!this.ctx.onDropUnit || !event.dataTransfer.types.includes('text/x-unit-id')) return;
      event.preventDefault();
      event.dataTransfer.dropEffect = 'copy';
      el.classList.add('tile--drop');
    });
    el.addEventListener('dragleave', () => el.classList.remove('tile--drop'));
    el.addEventListener('drop', (event) => {
      el.classList.remove('tile--drop');
      const unitId = event.dataTransfer.getData('text/x-unit-id');
      if (!unitId || !this.ctx.onDropUnit) return;
      event.preventDefault();
      this.ctx.onDropUnit(unitId, this);
    });
    this.video.addEventListener('loadedmetadata', () => this.ctx.onChange(this));
    this.render();
  }

  /** @param {boolean} alarm whether an open SOS is about this unit */
  setAlarm(alarm) {
    this.alarm = Boolean(alarm);
    if (this.alarm) this.element.dataset.alarm = 'sos';
    else delete this.element.dataset.alarm;
  }

  /** Unmuting is a user gesture, so the browser lets the audio play. */
  setMuted(muted) {
    this.video.muted = muted;
    if (!muted) this.video.play().catch(() => {});
    this.render();
  }

  /**
   * Take a new unit object from the roster. A start of publishing opens a
   * viewer if none is attached; a stop leaves the attached viewer in place.
   * @param {import('./roster.js').Unit} unit
   */
  setUnit(unit) {
    const wasPublishing = this.publishing;
    this.unit = unit;
    this.publishing = Boolean(unit.publishing);
    if (this.publishing !== wasPublishing) {
      // Frames from before the change say nothing about the stream after it.
      this.live = false;
      this.stalled = false;
      if (this.publishing) {
        this.waitingSince = performance.now();
        this.blocked = false;
        this.clearRetry();
        if (!this.pc && !this.opening) this.open();
      } else {
        this.clearRetry();
      }
    }
    this.render();
  }

  /** Open a WHEP viewer. Does nothing while one is attached or being negotiated. */
  async open() {
    if (this.closed || this.pc || this.opening) return;
    this.clearRetry();
    this.opening = true;
    this.error = null;
    const generation = ++this.generation;
    this.render();
    const release = await this.ctx.acquireSlot();
    try {
      if (generation !== this.generation) return;
      await this.negotiate(generation);
    } catch (exc) {
      if (generation === this.generation) this.handleOpenError(exc);
    } finally {
      release();
      if (generation === this.generation) this.opening = false;
      this.render();
    }
  }

  /** @param {number} generation */
  async negotiate(generation) {
    const pc = new RTCPeerConnection({ iceServers: this.ctx.getIceServers() });
    this.pc = pc;
    this.lastFrames = 0;
    this.lastBytes = 0;
    this.lastStatsAt = 0;
    const stream = new MediaStream();
    this.stream = stream;
    this.video.srcObject = stream;
    pc.addTransceiver('video', { direction: 'recvonly' });
    pc.addTransceiver('audio', { direction: 'recvonly' });
    pc.addEventListener('track', (event) => {
      stream.addTrack(event.track);
      this.video.play().catch(() => {});
    });
    pc.addEventListener('connectionstatechange', () => this.onConnectionState(pc));
    this.ctx.onChange(this);

    await pc.setLocalDescription(await pc.createOffer());
    await waitForIceGathering(pc);
    if (generation !== this.generation) return;
    const token = this.ctx.getToken();
    const { answer, location } = await postOffer(
      `/whep/${encodeURIComponent(this.unitId)}`, pc.localDescription.sdp, token,
    );
    if (generation !== this.generation) {
      deleteSession(location, token);
      return;
    }
    this.location = location;
    this.sessionId = sessionIdOf(location);
    await pc.setRemoteDescription({ type: 'answer', sdp: answer });
    this.waitingSince = performance.now();
    this.connectTimer = setTimeout(() => {
      if (this.pc === pc && pc.connectionState !== 'connected') {
        this.fail(t('tile_connect_timeout'), true);
      }
    }, CONNECT_TIMEOUT_MS);
    this.element.dataset.sessionId = this.sessionId || '';
  }

  handleOpenError(exc) {
    const status = exc instanceof SdpExchangeError ? exc.status : 0;
    if (status === 401) {
      this.teardown(false);
      this.ctx.onUnauthorized(errorText(exc));
      return;
    }
    const message = exc instanceof SdpExchangeError ? errorText(exc) : t('tile_connect_failed');
    if (BLOCKING_STATUSES.has(status)) {
      this.teardown(false);
      this.blocked = true;
      this.error = message;
      return;
    }
    const waiting = status === 409 && exc.code === 'not_publishing';
    this.fail(waiting ? t('err.not_publishing') : message, false);
  }

  /** @param {RTCPeerConnection} pc */
  onConnectionState(pc) {
    if (pc !== this.pc) return;
    const state = pc.connectionState;
    if (state === 'connected') {
      clearTimeout(this.connectTimer);
      clearTimeout(this.disconnectTimer);
      this.disconnectTimer = null;
      this.error = null;
    } else if (state === 'disconnected') {
      if (!this.disconnectTimer) {
        this.disconnectTimer = setTimeout(() => {
          if (this.pc === pc) this.fail(t('tile_connection_lost'), true);
        }, DISCONNECTED_GRACE_MS);
      }
    } else if (state === 'failed') {
      this.fail(t('tile_connect_failed'), true);
    }
    this.render();
  }

  /**
   * The console's Socket.IO link came back, maybe to a restarted server that
   * knows nothing of our viewer: replace a viewer whose transport is not up
   * now instead of waiting for the browser to declare it failed.
   */
  revalidate() {
    if (this.pc && !this.opening && this.pc.connectionState !== 'connected') {
      this.fail(t('tile_server_reconnected'), true);
    }
  }

  /** The server ended our viewing session (`viewer_closed`). */
  serverClosed(reason) {
    this.fail(reason ? t('tile_viewer_closed_reason', { r: reason }) : t('tile_viewer_closed'), false);
  }

  /**
   * Drop the viewer and try again: after a backoff while the unit publishes,
   * or as soon as it publishes again.
   * @param {string} message shown on the tile meanwhile
   * @param {boolean} deleteRemote whether the server may still hold the session
   */
  fail(message, deleteRemote) {
    this.teardown(deleteRemote);
    this.error = message;
    this.scheduleRetry();
    this.render();
  }

  scheduleRetry() {
    this.clearRetry();
    if (this.closed || this.blocked || !this.publishing) return;
    const delay = this.backoff.next();
    this.retryAt = Date.now() + delay;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      this.open();
    }, delay);
  }

  clearRetry() {
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.retryAt = 0;
  }

  /** Close the peer connection; `deleteRemote` also DELETEs the WHEP resource. */
  teardown(deleteRemote) {
    this.generation += 1;
    this.opening = false;
    clearTimeout(this.connectTimer);
    clearTimeout(this.disconnectTimer);
    this.disconnectTimer = null;
    if (this.pc) {
      this.pc.close();
      this.pc = null;
    }
    if (deleteRemote) deleteSession(this.location, this.ctx.getToken());
    this.location = null;
    this.sessionId = null;
    this.live = false;
    this.stalled = false;
    this.fps = 0;
    this.kbps = 0;
    if (this.stream) {
      this.stream = null;
      this.video.srcObject = null;
      this.ctx.onChange(this);
    }
    delete this.element.dataset.sessionId;
  }

  /** End the viewer for good (tile removed, logout, page closing). Idempotent. */
  close() {
    if (this.closed) return;
    this.clearRetry();
    this.teardown(true);
    this.closed = true;
    this.element.remove();
  }

  /** A decoded frame was seen (video frame callback or a rising framesDecoded). */
  onFrame() {
    this.lastFrameAt = performance.now();
    this.waitingSince = this.lastFrameAt;
    if (!this.pc || !this.publishing) return;
    if (!this.live) {
      this.live = true;
      this.stalled = false;
      this.error = null;
      this.backoff.reset();
      this.render();
    }
  }

  watchFrames() {
    if (!('requestVideoFrameCallback' in HTMLVideoElement.prototype)) return;
    const onVideoFrame = () => {
      if (this.closed) return;
      this.onFrame();
      this.video.requestVideoFrameCallback(onVideoFrame);
    };
    this.video.requestVideoFrameCallback(onVideoFrame);
  }

  /**
   * Inbound video counters of the current peer connection (zeros without one).
   * @returns {Promise<{framesDecoded: number, bytesReceived: number, framesPerSecond: number,
   *   packetsLost: number}>}
   */
  async stats() {
    const result = { framesDecoded: 0, bytesReceived: 0, framesPerSecond: 0, packetsLost: 0 };
    const pc = this.pc;
    if (!pc) return result;
    let report;
    try {
      report = await pc.getStats();
    } catch {
      return result; // closed while we asked
    }
    report.forEach((entry) => {
      if (entry.type === 'inbound-rtp' && (entry.kind || entry.mediaType) === 'video') {
        result.framesDecoded = entry.framesDecoded || 0;
        result.bytesReceived = entry.bytesReceived || 0;
        result.framesPerSecond = entry.framesPerSecond || 0;
        result.packetsLost = entry.packetsLost || 0;
      }
    });
    return result;
  }

  /** Called about once a second by the wall: rates, live and stall detection. */
  async poll() {
    if (!this.pc) {
      this.render();
      return;
    }
    const pc = this.pc;
    const now = performance.now();
    const stats = await this.stats();
    if (pc !== this.pc) return;
    if (this.lastStatsAt) {
      const seconds = (now - this.lastStatsAt) / 1000;
      this.kbps = Math.max(0, ((stats.bytesReceived - this.lastBytes) * 8) / 1000 / seconds);
      this.fps = stats.framesPerSecond || Math.max(0, (stats.framesDecoded - this.lastFrames) / seconds);
    }
    const advanced = stats.framesDecoded > this.lastFrames;
    this.lastFrames = stats.framesDecoded;
    this.lastBytes = stats.bytesReceived;
    this.lastStatsAt = now;
    if (advanced) this.onFrame();
    if (this.live && now - this.lastFrameAt > STALL_MS) {
      this.live = false;
      this.stalled = true;
    }
    if (this.publishing && !this.live && !this.opening && now - this.waitingSince > NO_VIDEO_MS) {
      this.fail(t('tile_no_video'), true);
      return;
    }
    this.render();
  }

  /** "publishing" | "online" | "offline" | "unreachable": what the tile says about the unit. */
  get presence() {
    if (this.ctx.linkDown && this.ctx.linkDown()) return 'unreachable';
    if (this.publishing) return 'publishing';
    return this.unit.online ? 'online' : 'offline';
  }

  /** The picture's width / height (4:3 until the video says otherwise). */
  get aspect() {
    const { videoWidth, videoHeight } = this.video;
    return videoWidth > 0 && videoHeight > 0 ? videoWidth / videoHeight : 4 / 3;
  }

  render() {
    const el = this.element;
    const state = this.state;
    const presence = this.presence;
    const changed = el.dataset.state !== state || el.dataset.presence !== presence;
    el.dataset.state = state;
    el.dataset.presence = presence;
    el.dataset.stalled = String(this.stalled);
    this.dom.id.textContent = this.unitId;
    this.dom.name.textContent = this.unit.name || '';
    this.dom.name.hidden = !this.unit.name;
    this.dom.kind.textContent = kindLabel(this.unit.kind);
    const since = this.unit.last_seen ? t('tile_offline_since', { t: formatShort(this.unit.last_seen) })
      : t('tile_offline_never');
    const label = {
      publishing: state === 'live' ? `● ${t('tile_live')}` : `◌ ${t('tile_connecting')}`,
      online: `○ ${t('tile_online')}`,
      offline: `○ ${since}`,
      unreachable: '—',
    }[presence];
    // Video without the unit's instruction link: say it cannot hear instructions or talk-back.
    const noLink = (presence === 'publishing' || presence === 'online') && !this.unit.reachable;
    el.dataset.reachable = String(!noLink);
    this.dom.state.textContent = noLink ? `${label} · ${t('status.no_link')}` : label;
    this.dom.state.title = noLink ? t('status.no_link_title') : '';
    this.dom.state.dataset.state = state;
    this.dom.state.dataset.presence = presence;
    this.dom.pos.textContent = this.unit.position ? formatPosition(this.unit.position) : '';

    const codec = this.unit.video_codec || '';
    this.dom.stats.textContent = this.live
      ? `${codec} ${t('tile_fps', { fps: Math.round(this.fps), kbps: Math.round(this.kbps) })}`.trim()
      : '';

    let main = '';
    let detail = '';
    if (presence === 'unreachable') {
      // The console says it once for all tiles (the banner); the tile keeps quiet.
    } else if (presence === 'offline') {
      main = since;
      detail = t('tile_offline_detail');
    } else if (presence === 'online') {
      main = t('tile_online');
      detail = t('tile_online_detail');
    } else if (state === 'connecting') {
      main = this.blocked ? t('tile_blocked') : this.stalled ? t('tile_stalled') : t('tile_connecting_main');
      detail = this.error || (this.stalled ? t('tile_stalled_detail') : '');
      if (this.retryAt) {
        const seconds = Math.max(0, Math.ceil((this.retryAt - Date.now()) / 1000));
        detail = [detail, t('tile_retry', { s: seconds })].filter(Boolean).join(' · ');
      }
    }
    this.dom.overlayMain.textContent = main;
    this.dom.overlayDetail.textContent = detail;
    el.classList.toggle('tile--overlay', Boolean(main));

    this.dom.unmute.textContent = this.video.muted ? t('tile_unmute') : t('tile_mute');
    this.dom.unmute.setAttribute('aria-pressed', String(!this.video.muted));
    this.dom.unmute.title = this.video.muted ? t('tile_unmute_title') : t('tile_mute_title');
    this.dom.close.textContent = `✕ ${t('tile_close')}`;
    if (changed && this.ctx) this.ctx.onChange(this);
  }
}
