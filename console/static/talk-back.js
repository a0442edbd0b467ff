/**
 * Talk-back (对讲): the operator's microphone to one unit's speaker.
 *
 * One session at a time (there is one microphone): getUserMedia({audio: true}),
 * a sendonly audio transceiver, the complete offer POSTed to
 * `/api/talk/{unit}` (application/sdp, person token, no trickle ICE, as in
 * sdp-exchange.js), and a DELETE of the `Location` when the operator lets go.
 *
 * Each tile carries a push-to-talk control (`createControl`): hold it to talk
 * and release to stop, or tap it once to latch talking on and tap again to
 * stop. Keyboard (Enter/Space) toggles.
 *
 * States (`state`, and `data-talk` on the control): "idle" | "connecting" |
 * "live" | "error". Server refusals (409 unit_offline, 409 talk_busy) are shown
 * on the tile with the server's message.
 */
import {
  SdpExchangeError, deleteSession, postOffer, sessionIdOf, waitForIceGathering,
} from './sdp-exchange.js';
import { errorText, t } from './console-texts.js';

/** A press shorter than this latches talking on (tap to toggle); longer is push-to-talk. */
const HOLD_MS = 350;
/** How long an error stays on the tile. */
const ERROR_SHOW_MS = 8000;

const LABELS = { idle: 'talk_idle', connecting: 'talk_connecting', live: 'talk_live', error: 'talk_idle' };

export class TalkBack extends EventTarget {
  /**
   * @param {{getToken: () => string | null, getIceServers: () => RTCIceServer[],
   *   onUnauthorized: (message: string) => void}} context
   */
  constructor(context) {
    super();
    this.ctx = context;
    /** @type {string | null} the unit being talked to (or being connected) */
    this.unitId = null;
    /** @type {'idle' | 'connecting' | 'live' | 'error'} */
    this.state = 'idle';
    /** @type {string | null} last error message, with the unit it concerns in `errorUnit` */
    this.error = null;
    this.errorUnit = null;
    /** @type {RTCPeerConnection | null} */
    this.pc = null;
    /** @type {MediaStream | null} */
    this.mic = null;
    /** @type {string | null} the talk resource, for DELETE */
    this.location = null;
    this.sessionId = null;
    this.latched = false;
    this.generation = 0;
    this.pressedAt = 0;
    this.pressStarted = false;
    this.errorTimer = null;
  }

  /** Start talking to `unitId`, ending any other talk first. */
  async start(unitId) {
    this.stop();
    const generation = ++this.generation;
    this.unitId = unitId;
    this.setState('connecting', null);
    try {
      await this.connect(unitId, generation);
    } catch (exc) {
      if (generation !== this.generation) return;
      this.release(true);
      if (exc instanceof SdpExchangeError && exc.status === 401) {
        this.ctx.onUnauthorized(exc.message);
        return;
      }
      this.showError(unitId, describe(exc));
    }
  }

  /** @param {string} unitId @param {number} generation */
  async connect(unitId, generation) {
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      throw new Error(t('talk_no_mic_context'));
    }
    const mic = await navigator.mediaDevices.getUserMedia({ audio: true, video: false });
    if (generation !== this.generation) {
      mic.getTracks().forEach((track) => track.stop());
      return;
    }
    this.mic = mic;
    const pc = new RTCPeerConnection({ iceServers: this.ctx.getIceServers() });
    this.pc = pc;
    pc.addTransceiver(mic.getAudioTracks()[0], { direction: 'sendonly', streams: [mic] });
    pc.addEventListener('connectionstatechange', () => {
      if (pc !== this.pc) return;
      if (pc.connectionState === 'connected') this.setState('live', null);
      if (pc.connectionState === 'failed' || pc.connectionState === 'closed') {
        this.release(true);
        this.showError(unitId, t('talk_lost'));
      }
    });
    await pc.setLocalDescription(await pc.createOffer());
    await waitForIceGathering(pc);
    if (generation !== this.generation) return;
    const token = this.ctx.getToken();
    const { answer, location } = await postOffer(
      `/api/talk/${encodeURIComponent(unitId)}`, pc.localDescription.sdp, token,
    );
    if (generation !== this.generation) {
      // Released while the server was answering: end the session it just opened.
      deleteSession(location, token);
      return;
    }
    this.location = location;
    this.sessionId = sessionIdOf(location);
    await pc.setRemoteDescription({ type: 'answer', sdp: answer });
    if (pc.connectionState === 'connected') this.setState('live', null);
  }

  /** Stop talking (DELETE the talk resource). Idempotent. */
  stop() {
    if (!this.unitId) return;
    this.release(true);
    this.setState('idle', null);
  }

  /** Close the local side; `deleteRemote` also ends the server's session. */
  release(deleteRemote) {
    this.generation += 1;
    this.latched = false;
    if (deleteRemote && this.location) deleteSession(this.location, this.ctx.getToken());
    this.location = null;
    this.sessionId = null;
    if (this.pc) {
      this.pc.close();
      this.pc = null;
    }
    if (this.mic) {
      this.mic.getTracks().forEach((track) => track.stop());
      this.mic = null;
    }
  }

  showError(unitId, message) {
    this.errorUnit = unitId;
    this.setState('error', message);
    clearTimeout(this.errorTimer);
    this.errorTimer = setTimeout(() => {
      if (this.state === 'error') {
        this.unitId = null;
        this.setState('idle', null);
      }
    }, ERROR_SHOW_MS);
  }

  setState(state, error) {
    this.state = state;
    this.error = error;
    if (state === 'idle') this.unitId = null;
    this.dispatchEvent(new CustomEvent('change'));
  }

  /** The control was pressed on `unitId`'s tile. */
  press(unitId) {
    this.pressedAt = performance.now();
    const busy = this.unitId === unitId && (this.state === 'connecting' || this.state === 'live');
    if (busy && this.latched) {
      this.pressStarted = false;
      this.stop(); // a tap on a latched talk ends it
      return;
    }
    this.pressStarted = true;
    if (!busy) this.start(unitId);
  }

  /** The control was let go: a long press ends the talk, a short one latches it. */
  unpress(unitId) {
    if (!this.pressStarted || this.unitId !== unitId) return;
    this.pressStarted = false;
    // A start that already failed keeps its error on the tile.
    if (this.state !== 'connecting' && this.state !== 'live') return;
    if (performance.now() - this.pressedAt >= HOLD_MS) this.stop();
    else this.latched = true;
  }

  /** Keyboard: Enter or Space toggles. */
  toggle(unitId) {
    if (this.unitId === unitId && (this.state === 'connecting' || this.state === 'live')) {
      this.stop();
      return;
    }
    this.start(unitId); // synchronous up to getUserMedia: the flag below is not reset by it
    this.latched = true;
  }

  /**
   * The push-to-talk control of one tile: a button, and a line for the talk's
   * errors. It keeps itself in step with this TalkBack.
   * @returns {HTMLElement} `.tile-talk[data-talk]` with `button.tile-talk-btn` and `.tile-talk-msg`
   */
  createControl(unitId) {
    const box = document.createElement('span');
    box.className = 'tile-talk needs-write'; // talk-back needs live.watch: not for auditors
    const button = document.createElement('button');
    button.type = 'button';
    button.className = 'tile-talk-btn';
    const message = document.createElement('span');
    message.className = 'tile-talk-msg';
    message.setAttribute('role', 'status');
    box.append(button, message);

    const render = () => {
      const mine = this.unitId === unitId || (this.state === 'error' && this.errorUnit === unitId);
      const state = mine ? this.state : 'idle';
      box.dataset.talk = state;
      button.dataset.talk = state;
      button.setAttribute('aria-pressed', String(state === 'live' || state === 'connecting'));
      button.textContent = t(LABELS[state]);
      button.title = t('talk_title', { state: t(LABELS[state]) });
      message.textContent = state === 'error' ? this.error || '' : '';
      message.hidden = state !== 'error';
    };
    this.addEventListener('change', render);
    render();

    button.addEventListener('pointerdown', (event) => {
      if (event.button !== 0) return;
      event.stopPropagation();
      event.preventDefault(); // no focus steal, no text selection while held
      try {
        button.setPointerCapture(event.pointerId);
      } catch {
        // Synthetic pointers cannot be captured; the up event still arrives.
      }
      this.press(unitId);
    });
    const up = (event) => {
      event.stopPropagation();
      this.unpress(unitId);
    };
    button.addEventListener('pointerup', up);
    button.addEventListener('pointercancel', up);
    button.addEventListener('click', (event) => {
      event.stopPropagation(); // not a click on the tile (full screen)
      if (event.detail === 0) this.toggle(unitId); // keyboard activation
    });
    button.addEventListener('keydown', (event) => event.stopPropagation());
    button.addEventListener('dblclick', (event) => event.stopPropagation());
    return box;
  }
}

/** The operator-facing sentence for a failed start. */
function describe(exc) {
  if (exc instanceof SdpExchangeError) return errorText(exc);
  if (exc && (exc.name === 'NotAllowedError' || exc.name === 'SecurityError')) return t('talk_denied');
  if (exc && exc.name === 'NotFoundError') return t('talk_no_mic');
  return exc && exc.message && !exc.name?.endsWith('Error') ? exc.message : t('talk_failed');
}
