/**
 * Footage requests of parties (当事人调取申请): issue access codes, decide requests, review blur
 * regions on a keyframe, start the export, follow its progress, revoke links.
 *
 * The panel builds its own DOM inside `#requests-panel`. Requests come from
 * `GET /api/footage-requests` and the `footage_request` Socket.IO event. Rows are
 * `li.request-row[data-request-id][data-state]`; the detail pane `#request-detail` has the
 * decision form, the review image (drag on it to add a blur region; click a box to keep it, i.e.
 * not blur it, for an officer's face), the export button and progress, the finished export to
 * watch (`#export-preview`) and release (`#export-release`), and the links.
 *
 * The review frame is scaled to the panel's width (CSS); pointer positions are converted to video
 * pixels and clamped to the frame, so every region drawn lies inside the picture. The server
 * refuses a region outside the frame with a message, which is shown, and nothing is exported.
 * Test hook: `dispatchConsole.requests` {requests (Map), open(id), refresh(), regions()}.
 */

import { codeText, errorText, formatTime, t as tx } from './console-texts.js';

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') node.className = v;
    else if (k === 'dataset') Object.assign(node.dataset, v);
    else if (k in node) node[k] = v;
    else node.setAttribute(k, v);
  }
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

const when = (t) => (t ? formatTime(t) : '');

export class RequestsPanel {
  /**
   * @param {HTMLElement} panel
   * @param {{api: import('./api.js').ApiClient}} ctx
   */
  constructor(panel, ctx) {
    this.panel = panel;
    this.api = ctx.api;
    /** @type {Map<string, object>} */
    this.requests = new Map();
    this.openId = null;
    this.regions = [];
    this.review = null;
    this.build();
  }

  build() {
    this.codeForm = el('form', { class: 'request-code-form' },
      el('input', { id: 'code-case', placeholder: tx('req_code_case'), required: true }),
      el('input', { id: 'code-party', placeholder: tx('req_code_party'), required: true }),
      el('button', { class: 'btn', id: 'code-issue', type: 'submit' }, tx('req_code_issue')));
    this.codeOut = el('p', { id: 'code-out', class: 'request-code' });
    this.list = el('ol', { id: 'requests-list', class: 'requests-list' });
    this.detail = el('div', { id: 'request-detail', class: 'request-detail' });
    this.panel.replaceChildren(el('h2', {}, tx('requests_title')),
      this.codeForm, this.codeOut, this.list, this.detail);
    this.codeForm.addEventListener('submit', (e) => { e.preventDefault(); this.issueCode(); });
  }

  async issueCode() {
    try {
      const code = await this.api.request('POST', '/api/party/codes', {
        case_number: this.codeForm.querySelector('#code-case').value,
        party_name: this.codeForm.querySelector('#code-party').value,
      });
      this.codeOut.textContent = tx('req_code_out', { code: code.code, party: code.party_name,
        case: code.case_number, until: when(code.expires_at) });
      this.codeOut.dataset.code = code.code;
    } catch (err) {
      this.codeOut.textContent = errorText(err);
    }
  }

  async refresh() {
    try {
      const { requests } = await this.api.request('GET', '/api/footage-requests');
      this.requests = new Map(requests.map((r) => [r.id, r]));
      this.hook.requests = this.requests;
      this.renderList();
      if (this.openId) await this.open(this.openId);
    } catch (err) {
      this.list.replaceChildren(el('li', { class: 'request-error' }, errorText(err)));
    }
  }

  /** A `footage_request` event. */
  update(doc) {
    const before = this.requests.get(doc.id);
    this.requests.set(doc.id, { ...before, ...doc });
    this.renderList();
    if (this.openId !== doc.id) return;
    // A new state may bring what only the detail carries (the export's preview URL): fetch it.
    if (!before || before.state !== doc.state) this.open(doc.id);
    else this.renderDetail(this.requests.get(doc.id), this.recordings || []);
  }

  renderList() {
    const rows = [...this.requests.values()].sort((a, b) => b.created_at - a.created_at);
    this.list.replaceChildren(...rows.map((r) => {
      const li = el('li', { class: 'request-row', dataset: { requestId: r.id, state: r.state } },
        el('strong', {}, `${r.party_name} · ${r.case_number}`), ' ',
        el('span', { class: 'request-state' }, codeText('req_state', r.state)), ' ',
        el('small', {}, `${r.action_title || r.action_id} · ${when(r.created_at)}`));
      li.addEventListener('click', () => this.open(r.id));
      return li;
    }));
  }

  async open(id) {
    this.openId = id;
    const doc = await this.api.request('GET', `/api/footage-requests/${id}`);
    this.recordings = doc.recordings;
    this.requests.set(id, doc);
    this.regions = doc.regions || [];
    this.renderDetail(doc, doc.recordings);
  }

  renderDetail(doc, recordings) {
    const d = this.detail;
    d.dataset.requestId = doc.id;
    d.dataset.state = doc.state;
    const history = el('ul', { class: 'request-history' }, ...doc.history.map((h) =>
      el('li', { dataset: { what: h.what } },
        `${when(h.at)} ${h.by}: ${codeText('req_what', h.what)}${h.message ? ' — ' + h.message : ''}`)));
    const parts = [el('h3', {}, `${doc.id} · ${doc.party_name} · ${doc.case_number}`),
      el('p', {}, tx('req_reason', { r: doc.reason })), history];
    if (doc.state === 'pending' || doc.state === 'more_info') parts.push(this.decisionForm(doc, recordings));
    if (['approved', 'failed', 'review'].includes(doc.state)) parts.push(this.reviewPane(doc));
    if (doc.state === 'review') parts.push(this.releasePane(doc));
    if (doc.state === 'exporting') {
      parts.push(el('progress', { id: 'export-progress', max: 1, value: doc.export?.progress || 0 }));
    }
    if (doc.state === 'failed') parts.push(el('p', { class: 'request-error' }, doc.export?.error || codeText('req_state', 'failed')));
    for (const link of doc.links || []) {
      const row = el('p', { class: 'request-link', dataset: { linkId: link.id } },
        tx('req_link', { id: link.id, until: when(link.expires_at) }), link.revoked_at ? tx('req_link_revoked') : '');
      if (!link.revoked_at) {
        const revoke = el('button', { class: 'btn btn--danger link-revoke', type: 'button' }, tx('req_link_revoke'));
        revoke.addEventListener('click', async () => {
          await this.api.request('POST', `/api/links/${link.id}/revoke`);
          await this.open(doc.id);
        });
        row.append(' ', revoke);
      }
      parts.push(row);
    }
    d.replaceChildren(...parts);
  }

  decisionForm(doc, recordings) {
    const rec = el('select', { id: 'decision-recording' }, ...recordings.map((r) =>
      el('option', { value: r.recording_id }, tx('req_recording_option', { unit: r.unit_id, id: r.recording_id, segments: r.segments, gaps: r.gaps.length }))));
    const until = el('input', { id: 'decision-until', type: 'date' });
    const audio = el('input', { id: 'decision-audio', type: 'checkbox', checked: true });
    const reason = el('textarea', { id: 'decision-reason', rows: 2, placeholder: tx('req_decision_reason') });
    const err = el('p', { class: 'request-error' });
    const send = async (decision) => {
      const body = { decision, reason: reason.value };
      if (decision === 'approve') {
        body.recording_id = rec.value;
        body.include_audio = audio.checked;
        if (until.value) body.release_until = new Date(until.value + 'T23:59:59').toISOString();
      }
      try {
        await this.api.request('POST', `/api/footage-requests/${doc.id}/decision`, body);
        await this.open(doc.id);
      } catch (e) {
        err.textContent = errorText(e);
      }
    };
    const buttons = [['approve', tx('req_approve'), 'btn btn--primary'], ['more_info', tx('req_more_info'), 'btn'],
      ['refuse', tx('req_refuse'), 'btn btn--danger']].map(([d, label, cls]) => {
      const b = el('button', { type: 'button', class: `${cls} decision-${d}` }, label);
      b.addEventListener('click', () => send(d));
      return b;
    });
    return el('div', { class: 'decision-form' },
      el('label', {}, `${tx('req_recording')} `, rec), el('label', {}, `${tx('req_release_until')} `, until),
      el('label', {}, audio, ` ${tx('req_keep_audio')}`), reason, el('div', {}, ...buttons), err);
  }

  reviewPane(doc) {
    const t = el('input', { id: 'review-time', type: 'number', min: 0, step: 0.5, value: 0 });
    const load = el('button', { type: 'button', class: 'btn', id: 'review-load' }, tx('req_review_load'));
    const canvas = el('canvas', { id: 'review-canvas', class: 'review-canvas' });
    const info = el('p', { id: 'review-info' });
    const save = el('button', { type: 'button', class: 'btn', id: 'regions-save' }, tx('req_regions_save'));
    const exp = el('button', { type: 'button', class: 'btn btn--primary', id: 'export-start' }, tx('req_export'));
    const err = el('p', { class: 'request-error', id: 'regions-error' });
    load.addEventListener('click', () => this.loadReview(doc.id, Number(t.value), canvas, info));
    const saveRegions = async () => {
      err.textContent = '';
      try {
        await this.api.request('PUT', `/api/footage-requests/${doc.id}/regions`, { regions: this.regions });
        return true;
      } catch (e) {
        err.textContent = errorText(e);  // e.g. a region outside the frame: nothing is exported
        return false;
      }
    };
    save.addEventListener('click', async () => {
      if (await saveRegions()) info.textContent = tx('req_regions_saved', { n: this.regions.length });
    });
    exp.addEventListener('click', async () => {
      if (!(await saveRegions())) return;
      try {
        await this.api.request('POST', `/api/footage-requests/${doc.id}/export`);
        await this.open(doc.id);
      } catch (e) {
        err.textContent = errorText(e);
      }
    });
    const clear = el('button', { type: 'button', class: 'btn', id: 'regions-clear' }, tx('req_regions_clear'));
    clear.addEventListener('click', () => {
      this.regions = [];
      if (this.reviewImage) this.drawReview(canvas, this.reviewImage);
      info.textContent = tx('req_no_regions');
    });
    this.attachDrawing(canvas, t, info);
    return el('div', { class: 'review-pane' }, el('label', {}, `${tx('req_time')} `, t), load,
      el('div', { class: 'review-frame' }, canvas), info, err, save, clear, exp);
  }

  /** The finished export as the party will get it (redacted, watermarked), and its release. */
  releasePane(doc) {
    const video = el('video', { id: 'export-preview', class: 'export-preview', controls: true, preload: 'metadata',
      src: doc.preview_url || '' });
    const release = el('button', { type: 'button', class: 'btn btn--primary', id: 'export-release', disabled: true },
      tx('req_release'));
    const err = el('p', { class: 'request-error' });
    // The server releases only to someone it served the export to; the button waits until it played here.
    video.addEventListener('loadeddata', () => { release.disabled = false; });
    release.addEventListener('click', async () => {
      try {
        await this.api.request('POST', `/api/footage-requests/${doc.id}/release`);
        await this.open(doc.id);
      } catch (e) {
        err.textContent = errorText(e);
      }
    });
    return el('div', { class: 'release-pane' },
      el('h4', {}, tx('req_preview'), ' ', el('small', {}, tx('req_preview_hint'))), video, release, err);
  }

  async loadReview(id, at, canvas, info) {
    const frame = await this.api.request('GET', `/api/footage-requests/${id}/review?t=${at}`);
    this.review = frame;
    const img = new Image();
    img.onload = () => {
      canvas.width = frame.width;
      canvas.height = frame.height;
      this.drawReview(canvas, img);
      this.reviewImage = img;
    };
    img.src = frame.image;
    info.textContent = tx('req_frame_info', { t: frame.time_s.toFixed(2), blurred: frame.blurred.length, kept: frame.kept.length });
  }

  drawReview(canvas, img) {
    const ctx = canvas.getContext('2d');
    ctx.drawImage(img, 0, 0);
    ctx.lineWidth = 2;
    for (const r of this.regions) {
      ctx.strokeStyle = r.action === 'keep' ? '#3ecf8e' : '#ff4d4d';
      ctx.strokeRect(r.x, r.y, r.w, r.h);
    }
  }

  attachDrawing(canvas, timeInput, info) {
    let start = null;
    /** The pointer in video pixels (the canvas is scaled to the panel), clamped to the frame. */
    const pos = (e) => {
      const rect = canvas.getBoundingClientRect();
      const x = (e.clientX - rect.left) * (canvas.width / rect.width);
      const y = (e.clientY - rect.top) * (canvas.height / rect.height);
      return { x: Math.round(Math.min(Math.max(x, 0), canvas.width)), y: Math.round(Math.min(Math.max(y, 0), canvas.height)) };
    };
    canvas.addEventListener('pointerdown', (e) => {
      start = pos(e);
      canvas.setPointerCapture(e.pointerId);  // a drag that leaves the frame still ends here
    });
    canvas.addEventListener('pointerup', (e) => {
      if (!start || !this.review) return;
      const end = pos(e);
      const at = this.review.time_s;
      const w = Math.abs(end.x - start.x);
      const h = Math.abs(end.y - start.y);
      if (w < 4 || h < 4) {
        // A click on a planned box keeps it (e.g. an officer's face): a "keep" region over it.
        const box = this.review.blurred.find((b) => start.x >= b.x && start.x <= b.x + b.w && start.y >= b.y && start.y <= b.y + b.h);
        if (box) this.regions.push({ ...box, start_s: Math.max(0, at - 2), end_s: at + 2, action: 'keep', reason: 'officer' });
      } else {
        this.regions.push({ x: Math.min(start.x, end.x), y: Math.min(start.y, end.y), w, h,
          start_s: Math.max(0, at - 2), end_s: at + 2, action: 'blur', reason: 'reviewer' });
      }
      start = null;
      if (this.reviewImage) this.drawReview(canvas, this.reviewImage);
      info.textContent = tx('req_regions_pending', { n: this.regions.length });
      timeInput.blur();
    });
  }

  get hook() {
    if (!this._hook) {
      this._hook = { requests: this.requests, open: (id) => this.open(id), refresh: () => this.refresh(),
        regions: () => this.regions };
    }
    return this._hook;
  }
}
