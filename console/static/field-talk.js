/**
 * Talk-back heard on the field page: the command room speaks, the phone's speaker plays it.
 *
 * On the `/unit` event `talk {talk_id, from}` the page opens a receive-only audio
 * RTCPeerConnection, sends its complete offer with `talk_join {talk_id, sdp}` and applies the
 * answer; the operator's audio plays through the page's `<audio>` element (the officer's tap on
 * 开始 was the user gesture that lets it play). `talk_end {talk_id}` closes it, and so does a
 * dropped link (the server ends its side when the operator stops).
 *
 * States (`state`, `#talk-state[data-state]`): "idle", "connecting", "live", "error".
 */
import { waitForIceGathering } from './sdp-exchange.js';

const JOIN_TIMEOUT_MS = 20000;

export class TalkListener extends EventTarget {
  /**
   * @param {import('./field-link.js').UnitLink} link
   * @param {HTMLAudioElement} audio
   * @param {() => RTCIceServer[]} iceServers
   */
  constructor(link, audio, iceServers) {
    super();
    this.link = link;
    this.audio = audio;
    this.iceServers = iceServers;
    /** @type {'idle' | 'connecting' | 'live' | 'error'} */
    this.state = 'idle';
    this.from = '';
    this.talkId = null;
    /** @type {RTCPeerConnection | null} */
    this.pc = null;
    /** @type {MediaStream | null} the operator's audio as received */
    this.stream = null;
    this.detail = '';
    link.on('talk', (data) => this.onTalk(data));
    link.on('talk_end', (data) => {
      if (data && data.talk_id === this.talkId) this.close();
    });
    link.addEventListener('state', () => {
      if (!link.online && this.talkId) this.close();
    });
  }

  async onTalk(data) {
    if (!data || typeof data.talk_id !== 'string') return;
    this.close();
    const talkId = data.talk_id;
    this.talkId = talkId;
    this.from = typeof data.from === 'string' ? data.from : '';
    this.setState('connecting');
    const pc = new RTCPeerConnection({ iceServers: this.iceServers() });
    this.pc = pc;
    pc.addTransceiver('audio', { direction: 'recvonly' });
    pc.addEventListener('track', (event) => {
      if (pc !== this.pc) return;
      this.stream = event.streams[0] || new MediaStream([event.track]);
      this.audio.srcObject = this.stream;
      this.audio.play().catch((exc) => {
        this.detail = `${exc.name}: ${exc.message}`;
      });
    });
    pc.addEventListener('connectionstatechange', () => {
      if (pc !== this.pc) return;
      if (pc.connectionState === 'connected') this.setState('live');
      if (pc.connectionState === 'failed') this.fail('ICE failed');
    });
    try {
      await pc.setLocalDescription(await pc.createOffer());
      await waitForIceGathering(pc);
      if (pc !== this.pc) return;
      const reply = await this.link.call('talk_join', { talk_id: talkId, sdp: pc.localDescription.sdp },
        JOIN_TIMEOUT_MS);
      if (pc !== this.pc) return;
      await pc.setRemoteDescription({ type: 'answer', sdp: reply.sdp });
    } catch (exc) {
      if (pc === this.pc) this.fail(String(exc.message || exc));
    }
  }

  fail(detail) {
    this.detail = detail;
    this.release();
    this.setState('error');
  }

  /** End the current talk, if any. */
  close() {
    if (!this.pc && !this.talkId) return;
    this.release();
    this.setState('idle');
  }

  release() {
    if (this.pc) this.pc.close();
    this.pc = null;
    this.talkId = null;
    this.stream = null;
    this.audio.srcObject = null;
  }

  setState(state) {
    this.state = state;
    this.dispatchEvent(new Event('change'));
  }
}
