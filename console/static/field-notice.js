/**
 * The field page's 已告知 button (流程预警): the officer has given the spoken notice
 * ("为保护您的合法权益，本次执行全程录音录像") of the unit's running action. It is sent over the
 * unit's Socket.IO link (`notice`); the server records it (a ledger entry and a marker on the
 * recording timeline) and the notice rule holds from then on. Only a unit of a running action may
 * mark it: otherwise the server refuses with `not_in_running_action`, shown as such.
 * `#notice-state[data-state]` is "sending" | "sent" | "error" (with `data-code` on a refusal).
 */
import { LinkDown, LinkRefusal } from './field-link.js';
import { t } from './field-texts.js';

const byId = (id) => /** @type {HTMLElement} */ (document.getElementById(id));

export class FieldNotice {
  /** @param {import('./field-link.js').UnitLink} link */
  constructor(link) {
    this.link = link;
    this.view = null;
    byId('notice-btn').addEventListener('click', () => this.mark());
  }

  async mark() {
    this.show('sending', { key: 'notice_sending' });
    try {
      const ack = await this.link.call('notice', {});
      const at = new Date(ack.notice_at);
      const time = [at.getHours(), at.getMinutes(), at.getSeconds()].map((n) => String(n).padStart(2, '0')).join(':');
      this.show('sent', { key: 'notice_sent', params: { t: time } });
    } catch (err) {
      if (err instanceof LinkRefusal) {
        const key = err.code === 'not_in_running_action' ? 'notice_not_in_action' : 'notice_failed';
        this.show('error', { key, code: err.code, detail: err.message });
      } else if (err instanceof LinkDown) {
        this.show('error', { key: 'notice_need_link', code: 'link_down', detail: err.message });
      } else {
        this.show('error', { key: 'notice_failed', detail: String(err) });
      }
    }
  }

  show(state, view) {
    this.view = { state, ...view };
    this.render();
  }

  /** Draw the state in the current language (also after a language switch). */
  render() {
    const el = byId('notice-state');
    if (!this.view) {
      el.dataset.state = 'idle';
      el.textContent = '';
      return;
    }
    el.dataset.state = this.view.state;
    if (this.view.code) el.dataset.code = this.view.code;
    else delete el.dataset.code;
    el.textContent = t(this.view.key, this.view.params);
    el.title = this.view.detail || '';
  }
}
