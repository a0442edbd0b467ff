/**
 * The party portal (执行公开): log in with case number + access code + name, request footage of
 * an action of the case, follow the court's decision, watch or download the approved export.
 *
 * Everything is served by the court's own server; nothing loads from elsewhere. The portal
 * session token lives in sessionStorage (a closed browser ends it: the party signs in again with
 * the same access code, as often as needed until it expires, to read decisions and download).
 * Requests are polled every two seconds while the page is open. Test hook: `window.portal`.
 *
 * Chinese by default, English after the switch (texts from console-texts.js); times in the
 * court's time zone.
 */
import { applyTexts, codeText, errorText, formatTime, language, setLanguage, t } from './console-texts.js';

const SESSION_KEY = 'dispatch.portal.session';
const POLL_MS = 2000;


const byId = (id) => /** @type {HTMLElement} */ (document.getElementById(id));

class PortalError extends Error {
  constructor(message, status, code) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

class Portal {
  constructor() {
    this.session = JSON.parse(sessionStorage.getItem(SESSION_KEY) || 'null');
    this.actions = [];
    this.requests = [];
    this.timer = 0;
  }

  async call(method, path, body) {
    const headers = { 'Content-Type': 'application/json' };
    if (this.session) headers.Authorization = `Bearer ${this.session.token}`;
    let resp;
    try {
      resp = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    } catch {
      throw new PortalError('the server cannot be reached', 0, 'network_error');
    }
    const data = await resp.json().catch(() => ({}));
    if (!resp.ok) {
      const err = (data && data.error) || {};
      if (resp.status === 401 && path !== '/api/party/login') this.logout(errorText(err));
      throw new PortalError(err.message || `HTTP ${resp.status}`, resp.status, err.code || 'http_error');
    }
    return data;
  }

  async login(event) {
    event.preventDefault();
    byId('login-error').textContent = '';
    try {
      const data = await this.call('POST', '/api/party/login', {
        case_number: /** @type {HTMLInputElement} */ (byId('case-number')).value,
        code: /** @type {HTMLInputElement} */ (byId('access-code')).value,
        name: /** @type {HTMLInputElement} */ (byId('party-name')).value,
      });
      this.session = data;
      sessionStorage.setItem(SESSION_KEY, JSON.stringify(data));
      await this.enter();
    } catch (err) {
      byId('login-error').textContent = errorText(err);
    }
  }

  logout(message) {
    this.session = null;
    sessionStorage.removeItem(SESSION_KEY);
    clearInterval(this.timer);
    byId('portal-app').hidden = true;
    byId('portal-login').hidden = false;
    if (message) byId('login-error').textContent = message;
  }

  async enter() {
    byId('portal-login').hidden = true;
    byId('portal-app').hidden = false;
    byId('who').textContent = `${this.session.name} · ${this.session.case_number}`;
    const { actions } = await this.call('GET', '/api/party/actions');
    this.actions = actions;
    const select = /** @type {HTMLSelectElement} */ (byId('request-action'));
    select.replaceChildren(...actions.map((a) => {
      const opt = document.createElement('option');
      opt.value = a.id;
      opt.textContent = t('portal_action_option', { title: a.title, type: codeText('action_type', a.type),
        state: codeText('action_state', a.state) });
      return opt;
    }));
    await this.refresh();
    clearInterval(this.timer);
    this.timer = setInterval(() => this.refresh().catch(() => {}), POLL_MS);
  }

  async submitRequest(event) {
    event.preventDefault();
    byId('request-error').textContent = '';
    const toIso = (id) => {
      const v = /** @type {HTMLInputElement} */ (byId(id)).value;
      return v ? new Date(v).toISOString() : null;
    };
    try {
      await this.call('POST', '/api/party/requests', {
        action_id: /** @type {HTMLSelectElement} */ (byId('request-action')).value,
        from: toIso('request-from'),
        to: toIso('request-to'),
        reason: /** @type {HTMLTextAreaElement} */ (byId('request-reason')).value,
      });
      /** @type {HTMLTextAreaElement} */ (byId('request-reason')).value = '';
      await this.refresh();
    } catch (err) {
      byId('request-error').textContent = errorText(err);
    }
  }

  async refresh() {
    if (!this.session) return;
    const { requests } = await this.call('GET', '/api/party/requests');
    this.requests = requests;
    this.render();
  }

  render() {
    const list = byId('requests');
    const open = new Set([...list.querySelectorAll('video')].map((v) => v.dataset.requestId));
    list.replaceChildren(...this.requests.map((r) => this.renderRequest(r, open.has(r.id))));
  }

  renderRequest(r, keepVideo) {
    const li = document.createElement('li');
    li.className = 'portal-request';
    li.dataset.requestId = r.id;
    li.dataset.state = r.state;
    const title = document.createElement('strong');
    title.textContent = `${r.action_title || r.action_id} · ${r.id}`;
    const state = document.createElement('div');
    state.className = 'portal-state';
    state.textContent = codeText('pstate', r.state);
    li.append(title, state);
    const messages = document.createElement('ul');
    messages.className = 'portal-messages';
    for (const m of r.messages) {
      if (!m.message) continue;
      const item = document.createElement('li');
      item.textContent = `${formatTime(m.at)} · ${m.message}`;
      messages.append(item);
    }
    li.append(messages);
    if (r.state === 'exporting') {
      const bar = document.createElement('progress');
      bar.max = 1;
      bar.value = r.progress || 0;
      li.append(bar);
    }
    if (r.state === 'more_info') {
      const form = document.createElement('form');
      const text = document.createElement('textarea');
      text.required = true;
      text.className = 'reply-text';
      const send = document.createElement('button');
      send.className = 'btn reply-send';
      send.textContent = t('portal_reply');
      form.append(text, send);
      form.addEventListener('submit', async (event) => {
        event.preventDefault();
        await this.call('POST', `/api/party/requests/${r.id}/reply`, { message: text.value });
        await this.refresh();
      });
      li.append(form);
    }
    for (const link of r.links || []) {
      const p = document.createElement('p');
      const a = document.createElement('a');
      a.href = link.url;
      a.className = 'download-link';
      a.textContent = t('portal_download');
      const watch = document.createElement('button');
      watch.type = 'button';
      watch.className = 'btn watch-btn';
      watch.textContent = t('portal_watch');
      const until = document.createElement('small');
      until.textContent = ` ${t('portal_valid_until', { t: formatTime(link.expires_at) })}`;
      p.append(a, ' ', watch, until);
      li.append(p);
      const show = () => {
        if (li.querySelector('video')) return;
        const video = document.createElement('video');
        video.controls = true;
        video.preload = 'metadata';
        video.src = link.video_url;
        video.dataset.requestId = r.id;
        li.append(video);
      };
      watch.addEventListener('click', show);
      if (keepVideo) show();
    }
    return li;
  }

  start() {
    byId('login-form').addEventListener('submit', (e) => this.login(e));
    byId('request-form').addEventListener('submit', (e) => this.submitRequest(e));
    byId('logout').addEventListener('click', () => this.logout(''));
    if (this.session) this.enter().catch((err) => this.logout(errorText(err)));
  }
}

applyTexts(document);
document.title = t('portal_title');
byId('lang-btn').addEventListener('click', () => {
  setLanguage(language() === 'zh' ? 'en' : 'zh');
  window.location.reload();
});
const portal = new Portal();
portal.start();
window.portal = {
  state: () => ({ session: portal.session, actions: portal.actions, requests: portal.requests }),
  refresh: () => portal.refresh(),
};
