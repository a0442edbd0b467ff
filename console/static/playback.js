/**
 * Recordings (录像): search the evidence archive and play a recording back.
 *
 * The panel (`#recordings-panel`) searches `GET /api/recordings` by unit, case number, officer
 * and time range and lists what it finds. Opening one (`GET /api/recordings/{id}`) shows the
 * player (`#playback-view`, above the video wall): one `<video>` that plays the recording's
 * sealed segments one after another, a timeline over the whole recording with every segment at
 * its `offset_s`, every gap drawn as a marked region (its cause in the tooltip) and every marker
 * (`markers`: the spoken notice 已告知 of the action, 流程预警) as a tick at its `t`, and a small
 * Leaflet map on which a marker follows the unit's GPS track in step with the video.
 *
 * Times: `t` is seconds on the recording's timeline (0 = the recording opened). A segment file
 * starts at its own 0, so at `t` the segment whose span holds `t` plays at `t - offset_s`. A `t`
 * inside a gap plays from the next segment's start. At `ended` the next segment follows.
 * The segment URLs carry a short-lived ticket (a `<video>` cannot send the bearer token); when
 * one has expired the detail is fetched again once and playback resumes where it was.
 *
 * Test hook `dispatchConsole.playback = {open(recordingId), state(), seek(t), close()}`;
 * `state()` = `{recording, segment, time, duration, playing, gaps: [{start_s, end_s, cause}], markers: [{kind, t}],
 * segments: [{seq, offset_s, duration_s}] (playable ones), position: [lat, lon] as displayed | null, error}`.
 */
import { ApiError } from './api.js';
import { codeText, errorText, t } from './console-texts.js';
import { el, formatDateTime, fromLocalInput, labelElement } from './labels.js';
/** Seconds before a segment's end that still count as inside it (the last frame's length). */
const EDGE_S = 0.25;

/** "1:05", "1:02:05" for seconds. */
export function formatSpan(seconds) {
  const s = Math.max(0, Math.floor(seconds || 0));
  const hms = [Math.floor(s / 3600), Math.floor(s / 60) % 60, s % 60];
  const pad = (n) => String(n).padStart(2, '0');
  return hms[0] ? `${hms[0]}:${pad(hms[1])}:${pad(hms[2])}` : `${hms[1]}:${pad(hms[2])}`;
}

/**
 * Where the unit was at `t`: linear between the track's fixes, the nearest end outside them.
 * @param {{t: number, lat: number, lon: number}[]} track sorted by t
 * @returns {[number, number] | null} WGS-84 [lat, lon]
 */
export function positionAt(track, t) {
  if (!track.length) return null;
  if (t <= track[0].t) return [track[0].lat, track[0].lon];
  const last = track[track.length - 1];
  if (t >= last.t) return [last.lat, last.lon];
  let lo = 0;
  let hi = track.length - 1;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (track[mid].t <= t) lo = mid;
    else hi = mid;
  }
  const a = track[lo];
  const b = track[hi];
  const f = b.t > a.t ? (t - a.t) / (b.t - a.t) : 0;
  return [a.lat + (b.lat - a.lat) * f, a.lon + (b.lon - a.lon) * f];
}

export class Playback {
  /**
   * @param {{panel: HTMLElement, view: HTMLElement}} elements empty containers this module fills
   * @param {{api: import('./api.js').ApiClient, map: import('./map.js').UnitMap}} ctx
   */
  constructor(elements, ctx) {
    this.el = elements;
    this.api = ctx.api;
    this.unitMap = ctx.map;
    this.rec = null;
    /** @type {object[]} playable segments by offset */
    this.segments = [];
    this.current = null;
    this.time = 0;
    this.total = 0;
    this.pendingSeek = 0;
    this.wantPlay = false;
    this.retried = false;
    this.error = '';
    this.searched = false;
    this.L = window.L;
    this.leaflet = null;
    this.marker = null;
    this.line = null;
    this.position = null;
    this.buildPanel();
    this.buildView();
    this.hook = {
      open: (id) => this.open(id),
      state: () => this.state(),
      seek: (t) => this.seek(t),
      close: () => this.close(),
    };
  }

  // ---------- search panel ----------

  buildPanel() {
    const head = el('div', 'panel-head');
    head.append(labelElement('h2', '', t('recordings_title')));
    this.status = el('span', 'muted');
    head.append(this.status);
    const form = el('form', 'dform pb-search');
    form.noValidate = true;
    const field = (key, input) => {
      const label = el('label');
      label.append(labelElement('span', '', t(key)), input);
      return label;
    };
    const input = (name, type = 'text', placeholder = '') => {
      const i = /** @type {HTMLInputElement} */ (el('input'));
      i.name = name;
      i.type = type;
      i.placeholder = placeholder;
      i.autocomplete = 'off';
      return i;
    };
    this.inputs = {
      unit: input('unit', 'text', 'bc-01'),
      case: input('case', 'text', '（2026）冀0916执123号'),
      officer: input('officer'),
      from: input('from', 'datetime-local'),
      to: input('to', 'datetime-local'),
    };
    form.append(field('rec_unit', this.inputs.unit), field('rec_officer', this.inputs.officer));
    const caseField = field('rec_case', this.inputs.case);
    caseField.className = 'wide';
    form.append(caseField, field('rec_from', this.inputs.from), field('rec_to', this.inputs.to));
    const buttons = el('div', 'form-buttons wide');
    const submit = labelElement('button', 'btn btn--primary', t('rec_search'));
    submit.setAttribute('type', 'submit');
    buttons.append(submit);
    this.formError = el('p', 'form-error wide');
    this.formError.hidden = true;
    form.append(this.formError, buttons);
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      this.search();
    });
    this.list = el('ul', 'cards pb-results');
    this.empty = labelElement('p', 'empty', t('rec_empty'));
    const scroll = el('div', 'panel-scroll');
    scroll.append(form, this.list, this.empty);
    this.el.panel.append(head, scroll);
  }

  /** The panel came into view: the first time, list the latest recordings. */
  shown() {
    if (!this.searched) this.search();
  }

  async search() {
    this.searched = true;
    const params = new URLSearchParams();
    for (const key of ['unit', 'case', 'officer']) {
      const value = this.inputs[key].value.trim();
      if (value) params.set(key, value);
    }
    for (const key of ['from', 'to']) {
      const iso = fromLocalInput(this.inputs[key].value);
      if (iso) params.set(key, iso);
    }
    this.formError.hidden = true;
    this.status.textContent = '…';
    try {
      const body = await this.api.request('GET', `/api/recordings?${params}`);
      this.renderList(body.recordings || []);
      this.status.textContent = String((body.recordings || []).length);
    } catch (exc) {
      this.status.textContent = '';
      this.formError.textContent = errorText(exc);
      this.formError.hidden = false;
    }
  }

  renderList(recordings) {
    this.list.replaceChildren(...recordings.map((r) => {
      const li = el('li', 'card pb-item');
      li.dataset.recordingId = r.id;
      const title = el('button', 'link', `${r.unit_id || '?'} · ${formatDateTime(r.opened_at)}`);
      title.type = 'button';
      title.addEventListener('click', () => this.open(r.id));
      const meta = el('div', 'muted', [r.case_number || '—', formatSpan(r.duration_s),
        t('rec_segments', { n: r.segment_count }), r.gap_count ? t('rec_gaps', { n: r.gap_count }) : '']
        .filter(Boolean).join(' · '));
      li.append(title, meta);
      if (r.held) li.append(labelElement('span', 'pb-held', t('rec_held')));
      return li;
    }));
    this.empty.hidden = recordings.length > 0;
  }

  // ---------- player ----------

  buildView() {
    const view = this.el.view;
    const bar = el('div', 'pb-bar');
    this.title = el('strong', 'pb-title');
    this.download = /** @type {HTMLAnchorElement} */ (el('a', 'btn btn--small pb-download'));
    this.download.append(labelElement('span', '', t('rec_download')));
    this.download.hidden = true;
    const close = labelElement('button', 'btn btn--small', t('rec_close'));
    close.setAttribute('type', 'button');
    close.addEventListener('click', () => this.close());
    bar.append(labelElement('span', 'pb-label', t('rec_playback')), this.title, el('div', 'spacer'),
      this.download, close);

    const stage = el('div', 'pb-stage');
    this.video = /** @type {HTMLVideoElement} */ (el('video', 'pb-video'));
    this.video.playsInline = true;
    this.video.preload = 'auto';
    this.mapBox = el('div', 'pb-map');
    stage.append(this.video, this.mapBox);

    const controls = el('div', 'pb-controls');
    this.playButton = /** @type {HTMLButtonElement} */ (el('button', 'btn btn--small pb-play', '▶'));
    this.playButton.type = 'button';
    this.playButton.addEventListener('click', () => this.togglePlay());
    this.clock = el('span', 'pb-clock', '0:00 / 0:00');
    this.timeline = el('div', 'pb-timeline');
    this.head = el('div', 'pb-head');
    this.timeline.addEventListener('click', (event) => {
      const box = this.timeline.getBoundingClientRect();
      if (box.width > 0 && this.total > 0) this.seek(((event.clientX - box.left) / box.width) * this.total);
    });
    controls.append(this.playButton, this.timeline, this.clock);
    this.message = el('div', 'pb-message');
    this.message.hidden = true;
    view.append(bar, stage, controls, this.message);

    this.video.addEventListener('loadedmetadata', () => this.onLoaded());
    this.video.addEventListener('timeupdate', () => this.onTime());
    this.video.addEventListener('ended', () => this.onEnded());
    this.video.addEventListener('error', () => this.onError());
    this.video.addEventListener('play', () => this.renderControls());
    this.video.addEventListener('pause', () => this.renderControls());
  }

  /** Open a recording and play it from its start. */
  async open(recordingId) {
    this.stopVideo();
    this.error = '';
    this.retried = false;
    const rec = await this.fetchDetail(recordingId);
    if (!rec) return;
    this.rec = rec;
    this.el.view.hidden = false;
    this.title.textContent = [rec.unit_id, rec.case_number, formatDateTime(rec.opened_at)].filter(Boolean).join(' · ');
    this.drawTimeline();
    this.drawMap();
    this.time = 0;
    const first = this.segments[0];
    if (!first) {
      this.showMessage(t('rec_nothing'));
      this.render();
      return;
    }
    this.load(first, 0, true);
    this.render();
  }

  async fetchDetail(recordingId) {
    try {
      const rec = await this.api.request('GET', `/api/recordings/${encodeURIComponent(recordingId)}`);
      this.segments = (rec.segments || []).filter((s) => s.url).sort((a, b) => a.offset_s - b.offset_s);
      const ends = [rec.duration_s || 0, ...rec.segments.map((s) => s.offset_s + s.duration_s),
        ...rec.gaps.map((g) => g.end_s || 0)];
      this.total = Math.max(...ends);
      return rec;
    } catch (exc) {
      this.error = exc instanceof ApiError ? errorText(exc) : String(exc);
      this.el.view.hidden = false;
      this.showMessage(this.error);
      return null;
    }
  }

  close() {
    this.stopVideo();
    this.rec = null;
    this.segments = [];
    this.el.view.hidden = true;
  }

  /** Logged out: forget everything shown. */
  clear() {
    this.close();
    this.list.replaceChildren();
    this.searched = false;
  }

  stopVideo() {
    this.wantPlay = false;
    this.current = null;
    this.video.pause();
    this.video.removeAttribute('src');
    this.video.load();
    this.message.hidden = true;
  }

  /** The latest segment whose span holds `t`, else the next one after `t` (inside a gap), else null. */
  segmentAt(t) {
    let holding = null;
    for (const seg of this.segments) {
      if (seg.offset_s > t) return holding || seg;
      if (t < seg.offset_s + seg.duration_s + EDGE_S) holding = seg;
    }
    return holding;
  }

  load(seg, within, play) {
    this.current = seg;
    this.pendingSeek = Math.max(0, within);
    this.wantPlay = play;
    this.video.src = seg.url;
    this.download.hidden = !seg.download_url;
    if (seg.download_url) this.download.href = seg.download_url;
  }

  /** Jump to `t` seconds on the recording's timeline. */
  seek(t) {
    if (!this.rec) return;
    const target = Math.min(Math.max(0, Number(t) || 0), this.total);
    const seg = this.segmentAt(target);
    if (!seg) {
      this.video.pause();
      this.time = this.total;
      this.render();
      return;
    }
    const within = Math.max(0, target - seg.offset_s);
    this.time = seg.offset_s + within;
    const play = this.wantPlay || !this.video.paused;
    if (seg === this.current && this.video.readyState >= 1) {
      this.video.currentTime = within;
    } else {
      this.load(seg, within, play);
    }
    this.render();
  }

  togglePlay() {
    if (!this.current) return;
    if (this.video.paused) this.play();
    else {
      this.wantPlay = false;
      this.video.pause();
    }
  }

  play() {
    this.wantPlay = true;
    this.video.play().catch((exc) => {
      // A newer src or a pause() interrupts play(): not an error.
      if (exc && exc.name !== 'AbortError') this.showMessage(`${exc.name}: ${exc.message}`);
    });
  }

  onLoaded() {
    if (this.pendingSeek > 0) this.video.currentTime = this.pendingSeek;
    this.pendingSeek = 0;
    if (this.wantPlay) this.play();
  }

  onTime() {
    if (!this.current || this.pendingSeek > 0) return;
    this.time = this.current.offset_s + this.video.currentTime;
    this.render();
  }

  onEnded() {
    const index = this.segments.indexOf(this.current);
    const next = index >= 0 ? this.segments[index + 1] : null;
    if (next) {
      this.load(next, 0, true);
      this.time = next.offset_s;
    } else {
      this.wantPlay = false;
      this.time = this.total;
    }
    this.render();
  }

  /** A segment did not load: its ticket may have expired; fetch the detail again once. */
  async onError() {
    if (!this.rec || !this.current || !this.video.getAttribute('src')) return;
    if (this.retried) {
      this.error = t('rec_segment_failed', { seq: this.current.seq });
      this.showMessage(this.error);
      return;
    }
    this.retried = true;
    const at = this.time;
    const play = this.wantPlay;
    const rec = await this.fetchDetail(this.rec.id);
    if (!rec) return;
    this.rec = rec;
    this.current = null;
    this.wantPlay = play;
    this.seek(at);
  }

  showMessage(text) {
    this.message.textContent = text;
    this.message.hidden = !text;
  }

  // ---------- timeline and map ----------

  drawTimeline() {
    const pct = (s) => `${(100 * s) / (this.total || 1)}%`;
    const parts = [];
    for (const seg of this.rec.segments) {
      const block = el('div', seg.deleted ? 'pb-seg pb-seg--deleted' : 'pb-seg');
      block.style.left = pct(seg.offset_s);
      block.style.width = pct(seg.duration_s);
      block.dataset.seq = String(seg.seq);
      block.title = t('rec_segment_title', { seq: seg.seq, start: formatSpan(seg.offset_s),
        end: formatSpan(seg.offset_s + seg.duration_s) }) + (seg.deleted ? ` · ${t('rec_segment_deleted')}` : '');
      parts.push(block);
    }
    for (const gap of this.rec.gaps) {
      const block = el('div', 'pb-gap');
      block.style.left = pct(gap.start_s);
      block.style.width = pct(Math.max(0, gap.end_s - gap.start_s));
      block.dataset.cause = gap.cause;
      block.title = t('rec_gap_title', { cause: codeText('gap', gap.cause), s: Math.round(gap.seconds),
        start: formatSpan(gap.start_s), end: formatSpan(gap.end_s) });
      parts.push(block);
    }
    for (const marker of this.rec.markers || []) {
      const tick = el('div', 'pb-marker');
      tick.style.left = pct(marker.t);
      tick.dataset.kind = marker.kind;
      tick.title = t(`rec_marker_${marker.kind}`, { at: formatSpan(marker.t), by: marker.marked_by || '' });
      parts.push(tick);
    }
    this.timeline.replaceChildren(...parts, this.head);
  }

  drawMap() {
    if (!this.L) return;
    const { L } = this;
    if (!this.leaflet) {
      this.leaflet = L.map(this.mapBox, { attributionControl: false, zoomControl: true, center: [0, 0], zoom: 2 });
      const tileUrl = this.unitMap.config.tileUrl;
      if (tileUrl) L.tileLayer(tileUrl, { maxZoom: 19, maxNativeZoom: 18 }).addTo(this.leaflet);
    }
    if (this.line) this.line.remove();
    if (this.marker) this.marker.remove();
    this.line = null;
    this.marker = null;
    this.position = null;
    const shown = this.rec.track.map((p) => this.unitMap.toDisplay(p.lat, p.lon));
    this.leaflet.invalidateSize();
    if (!shown.length) return;
    this.line = L.polyline(shown, { color: '#3b8eea', weight: 3, opacity: 0.8 }).addTo(this.leaflet);
    this.marker = L.circleMarker(shown[0], { radius: 7, color: '#fff', weight: 2, fillColor: '#2ecc71', fillOpacity: 1 })
      .addTo(this.leaflet);
    this.leaflet.fitBounds(this.line.getBounds(), { padding: [20, 20], maxZoom: 18 });
  }

  render() {
    if (!this.rec) return;
    this.head.style.left = `${(100 * this.time) / (this.total || 1)}%`;
    this.clock.textContent = `${formatSpan(this.time)} / ${formatSpan(this.total)}`;
    this.renderControls();
    const where = positionAt(this.rec.track, this.time);
    if (where && this.marker) {
      this.position = this.unitMap.toDisplay(where[0], where[1]);
      this.marker.setLatLng(this.position);
    }
  }

  renderControls() {
    this.playButton.textContent = this.video.paused ? '▶' : '❚❚';
  }

  state() {
    return {
      recording: this.rec ? this.rec.id : null,
      segment: this.current ? this.current.seq : null,
      time: this.time,
      duration: this.total,
      playing: !this.video.paused && !this.video.ended,
      gaps: this.rec ? this.rec.gaps.map((g) => ({ start_s: g.start_s, end_s: g.end_s, cause: g.cause })) : [],
      markers: this.rec ? (this.rec.markers || []).map((m) => ({ kind: m.kind, t: m.t })) : [],
      segments: this.segments.map((seg) => ({ seq: seg.seq, offset_s: seg.offset_s, duration_s: seg.duration_s })),
      position: this.position,
      error: this.error,
    };
  }
}
