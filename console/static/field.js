/**
 * The field page (`/field`): a phone or a body camera with a browser runs the whole field loop.
 *
 * One tap on 开始 (Start), and until 停止 (Stop):
 * - video: the camera and microphone are published over WHIP (field-publisher.js);
 * - link: Socket.IO `/unit` carries instructions, answers, positions and talk-back
 *   (field-link.js), reconnecting by itself with capped, jittered backoff;
 * - instructions arrive as cards with a beep and a vibration (field-inbox.js, field-cards.js);
 *   the officer answers human ones, the page carries out machine ones (field-machine-orders.js);
 *   answers are sent in order, also after the link was down (field-answers.js);
 * - GPS fixes are sent in batches and back-filled after a link loss (field-gps.js);
 * - talk-back from the command room plays on the speaker (field-talk.js);
 * - the SOS button works over plain HTTP, with or without the link (field-sos.js).
 * - 已告知 marks the spoken notice of the unit's running action over the link (field-notice.js).
 *
 * Texts: Simplified Chinese by default, English on request (field-texts.js, remembered).
 * The unit id and token are remembered in localStorage. `?unit=..&token=..` prefill the form and
 * `&autostart=1` starts on load (kiosk use).
 *
 * Test hook: `window.fieldPage` (see the end of this file).
 */
import { FieldCamera, CameraError } from './field-camera.js';
import { FieldPublisher } from './field-publisher.js';
import { UnitLink } from './field-link.js';
import { AnswerOutbox } from './field-answers.js';
import { InstructionInbox } from './field-inbox.js';
import { OrderCards } from './field-cards.js';
import { MachineOrders } from './field-machine-orders.js';
import { FieldGps } from './field-gps.js';
import { TalkListener } from './field-talk.js';
import { Notifier } from './field-notify.js';
import { FieldSos } from './field-sos.js';
import { FieldNotice } from './field-notice.js';
import {
  applyTexts, language, messageText, setLanguage, t,
} from './field-texts.js';

const STORE_UNIT = 'dispatch.field.unit';
const STORE_TOKEN = 'dispatch.field.token';

const byId = (id) => /** @type {HTMLElement} */ (document.getElementById(id));

class FieldApp {
  constructor() {
    this.unitId = '';
    this.token = '';
    /** Whether the officer has started (until 停止). */
    this.running = false;
    this.message = null;

    this.unitInput = /** @type {HTMLInputElement} */ (byId('unit-id'));
    this.tokenInput = /** @type {HTMLInputElement} */ (byId('unit-token'));
    this.startButton = /** @type {HTMLButtonElement} */ (byId('start-btn'));
    this.stopButton = /** @type {HTMLButtonElement} */ (byId('stop-btn'));

    const credentials = () => ({ unitId: this.unitId, token: this.token });
    this.notifier = new Notifier();
    this.camera = new FieldCamera(/** @type {HTMLVideoElement} */ (byId('field-preview')),
      (kind) => this.publisher.deviceLost(kind));
    this.publisher = new FieldPublisher({ stream: () => this.camera.stream, credentials });
    this.link = new UnitLink();
    this.answers = new AnswerOutbox(this.link);
    this.gps = new FieldGps(this.link);
    this.cards = new OrderCards(/** @type {HTMLElement} */ (byId('orders')), byId('orders-empty'), {
      answer: (card, state, reason) => this.answer(card, state, reason),
      here: () => this.gps.last,
      pending: (id) => this.answers.isPending(id),
      online: () => this.link.online,
    });
    this.inbox = new InstructionInbox(this.link, (item, receivedAt) => this.delivered(item, receivedAt));
    this.machine = new MachineOrders({
      publisher: this.publisher, camera: this.camera, link: this.link, credentials,
    });
    this.machineChain = Promise.resolve();
    this.talk = new TalkListener(this.link, /** @type {HTMLAudioElement} */ (byId('talk-audio')),
      () => this.publisher.iceServers);
    this.sos = new FieldSos({ credentials: () => this.credentialsForSos(), lastFix: () => this.gps.last });
    this.notice = new FieldNotice(this.link);

    this.link.on('media_lost', (data) => this.publisher.mediaLost(data && data.reason));
    this.publisher.addEventListener('change', () => this.render());
    this.link.addEventListener('state', () => this.render());
    this.gps.addEventListener('change', () => {
      this.render();
      this.cards.refreshWays();
    });
    this.talk.addEventListener('change', () => this.render());
    this.answers.addEventListener('change', () => this.cards.renderAll());
    this.answers.addEventListener('rejected', (event) => {
      this.cards.update(event.detail.answer.id, { rejected: true });
    });

    byId('field-form').addEventListener('submit', (event) => {
      event.preventDefault();
      this.start();
    });
    this.stopButton.addEventListener('click', () => this.stop());
    byId('lang-btn').addEventListener('click', () => {
      setLanguage(language() === 'zh' ? 'en' : 'zh');
      this.render();
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

  credentialsForSos() {
    if (this.running) return { unitId: this.unitId, token: this.token };
    return { unitId: this.unitInput.value.trim(), token: this.tokenInput.value.trim() };
  }

  /** Everything on: link, GPS, camera and publishing. */
  async start() {
    if (this.running) return;
    const unitId = this.unitInput.value.trim();
    const token = this.tokenInput.value.trim();
    if (!unitId || !token) {
      this.message = { key: 'msg_need_credentials' };
      this.render();
      return;
    }
    // The tap on 开始 is the user gesture that lets the page beep and play talk-back.
    this.notifier.unlock();
    localStorage.setItem(STORE_UNIT, unitId);
    localStorage.setItem(STORE_TOKEN, token);
    if (unitId !== this.unitId) {
      this.inbox.reset();
      this.gps.buffer = [];
      this.gps.last = null;
    }
    this.unitId = unitId;
    this.token = token;
    this.running = true;
    this.message = null;
    this.answers.use(unitId);
    this.link.open(unitId, token);
    this.gps.start();
    this.render();
    try {
      this.message = { key: 'msg_opening_camera' };
      this.render();
      await this.camera.open();
      this.message = null;
    } catch (exc) {
      // No camera: the link, instructions and GPS still work; machine orders that need the
      // camera are refused with the reason.
      this.message = exc instanceof CameraError ? { key: exc.key, detail: exc.detail } : { key: 'msg_camera_failed' };
      this.render();
      return;
    }
    if (this.running) this.publisher.publish();
  }

  /** Everything off: publishing, camera, link, GPS, talk-back. */
  stop() {
    this.running = false;
    this.publisher.unpublish();
    this.camera.close();
    this.talk.close();
    this.link.close();
    this.gps.stop();
    this.message = null;
    this.render();
  }

  /** A delivered instruction: a card, a beep; a machine order is carried out. */
  delivered(item, receivedAt) {
    const card = this.cards.add(item, receivedAt);
    const queued = this.answers.lastQueued(card.id);
    if (queued) {
      // Answered before this page was reloaded, not sent yet: show that answer, do not redo it.
      this.cards.update(card.id, { state: queued.state, reason: queued.reason || null });
      this.render();
      return;
    }
    this.notifier.announce(item.priority === 'urgent' || item.priority === 'high');
    this.render();
    if (card.machine) {
      // One machine order at a time, in the order they came (record_stop then record_start).
      this.machineChain = this.machineChain.then(async () => {
        const outcome = await this.machine.run(card);
        this.cards.update(card.id, { state: outcome.state, outcome: outcome.outcome, reason: outcome.reason || null });
        this.answers.report({ id: card.id, state: outcome.state, reason: outcome.reason, result: outcome.result });
      });
    }
  }

  /** The officer answered on a card: show it at once, send it when the link lets us. */
  answer(card, state, reason) {
    this.cards.update(card.id, { state, reason: reason || null });
    this.answers.report({ id: card.id, state, reason });
  }

  render() {
    applyTexts(document);
    const pub = this.publisher;
    byId('field-status').dataset.state = pub.state;
    const stateEl = byId('field-state');
    stateEl.dataset.state = pub.state;
    stateEl.textContent = t(`pub_${pub.state}`);

    const message = this.message || pub.message;
    const messageEl = byId('field-message');
    messageEl.textContent = messageText(message);
    messageEl.title = (message && message.detail) || '';
    messageEl.dataset.code = (message && message.code) || '';

    const link = this.link;
    const linkEl = byId('link-state');
    linkEl.dataset.state = link.state;
    linkEl.textContent = t(`link_${link.state}`);
    const linkMessage = byId('link-message');
    const showLinkMessage = link.message && (link.state === 'reconnecting' || link.state === 'refused');
    linkMessage.textContent = showLinkMessage ? messageText(link.message) : '';
    linkMessage.title = (showLinkMessage && link.message.detail) || '';

    const gpsEl = byId('gps-state');
    gpsEl.dataset.state = this.gps.state;
    gpsEl.textContent = this.gps.state === 'fix' && this.gps.accuracy !== null
      ? t('gps_fix', { m: Math.round(this.gps.accuracy) })
      : t(`gps_${this.gps.state === 'fix' ? 'waiting' : this.gps.state}`);

    const talkEl = byId('talk-state');
    talkEl.dataset.state = this.talk.state;
    talkEl.textContent = t(`talk_${this.talk.state}`, { from: this.talk.from });
    byId('talk-chip').hidden = this.talk.state === 'idle';

    const unitLine = byId('unit-line');
    unitLine.hidden = !this.running;
    unitLine.textContent = this.running ? t('unit_line', { unit: this.unitId }) : '';
    byId('field-credentials').hidden = this.running;
    this.startButton.disabled = this.running;
    // Running: the big 开始 gives way; 停止 stays within reach.
    this.startButton.hidden = this.running;
    this.stopButton.disabled = !this.running;
    byId('orders-empty').hidden = this.cards.cards.size > 0;
    this.cards.renderAll();
    this.sos.render();
    this.notice.render();
  }
}

const app = new FieldApp();
/**
 * Test hook. `pc`/`state`/`message`: the WHIP publisher (state as in `#field-state`);
 * `mediaLosses`: how often the server said it lost our media (its media worker died);
 * `link`: the Socket.IO link's state; `orders()`: the cards, newest first; `talk`: talk-back;
 * `gps`: the GPS state, newest fix and how many fixes wait to be sent.
 */
window.fieldPage = {
  get pc() {
    return app.publisher.pc;
  },
  get state() {
    return app.publisher.state;
  },
  get mediaLosses() {
    return app.publisher.mediaLosses;
  },
  get message() {
    return messageText(app.message || app.publisher.message);
  },
  get link() {
    return app.link.state;
  },
  get linkConnects() {
    return app.link.connects;
  },
  orders: () => app.cards.snapshot(),
  get talk() {
    const talk = app.talk;
    return { state: talk.state, from: talk.from, pc: talk.pc, stream: talk.stream, detail: talk.detail };
  },
  get gps() {
    const gps = app.gps;
    return { state: gps.state, last: gps.last, buffered: gps.buffer.length, sent: gps.sent };
  },
  get answersQueued() {
    return app.answers.queue.length;
  },
  get beeps() {
    return app.notifier.beeps;
  },
  get audio() {
    return app.notifier.context ? app.notifier.context.state : 'none';
  },
  get language() {
    return language();
  },
  setLanguage: (lang) => {
    setLanguage(lang);
    app.render();
  },
  start: () => app.start(),
  stop: () => app.stop(),
};
app.restore();
