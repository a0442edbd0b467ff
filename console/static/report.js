/**
 * The per-action report (行动报告) at `/report/action?id=<action id>`: one printable page (A4)
 * built from `GET /api/actions/{id}/report`.
 *
 * The page uses the console's session (sessionStorage; a tab opened from the console with
 * `rel=opener` has a copy) or asks for a login. Times are the court's (`time_zone` of the report).
 * The map is Leaflet on a plain background, with the tiles of `map.tile_url` only when one is
 * configured (`GET /api/console-config`): nothing is requested from elsewhere.
 *
 * Exports: 打印 prints the page (and so "Save as PDF"); JSON saves the report as the server sent
 * it; each table has a CSV button (UTF-8 with a byte-order mark, Chinese column names, times in
 * the court's zone). `window.actionReport` is the test hook: `{state, data, error}`; the state
 * (loading, login, ready, forbidden, error) is also `body[data-report]`.
 */
import { ApiClient } from './api.js';
import {
  applyTexts, codeText, errorText, formatBytes, formatClock, formatTime, language, setLanguage, setTimeZone, t,
} from './console-texts.js';
import { datum } from './gcj02.js';

const COLORS = ['#1565c0', '#c62828', '#2e7d32', '#6a1b9a', '#ef6c00', '#00838f', '#ad1457', '#4e342e'];
const hook = { state: 'loading', data: null, error: null };
window.actionReport = hook;

/** The page's state, also on `body[data-report]` (tests wait on it without evaluating script). */
function setState(state) {
  hook.state = state;
  document.body.dataset.report = state;
}

const byId = (id) => /** @type {HTMLElement} */ (document.getElementById(id));

function el(tag, className = '', text = '') {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text) node.textContent = text;
  return node;
}

/** An SVG element (in the namespace of the page's own timeline `<svg>`, which HTML parsing gave it). */
function svg(tag, attrs) {
  const node = document.createElementNS(byId('r-timeline-svg').namespaceURI, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  return node;
}

const ms = (iso) => Date.parse(iso);

/** "1 小时 02 分 03 秒" / "4 分 05 秒" / "7 秒" / "0.4 秒" (under 10 s: tenths, so a short stretch never reads 0) */
export function formatDuration(seconds) {
  if (seconds === null || seconds === undefined || Number.isNaN(Number(seconds))) return t('none');
  if (Number(seconds) < 10) return t('report_dur_s', { s: Math.max(0, Number(seconds)).toFixed(1) });
  const total = Math.max(0, Math.round(Number(seconds)));
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  const pad = (n) => String(n).padStart(2, '0');
  if (h) return t('report_dur_hms', { h, m: pad(m), s: pad(s) });
  if (m) return t('report_dur_ms', { m, s: pad(s) });
  return t('report_dur_s', { s });
}

function setMessage(key, text) {
  const p = byId('report-message');
  p.hidden = false;
  p.textContent = text || t(key);
}

// tables ---------------------------------------------------------------------------------

/**
 * A table that renders as HTML and exports as CSV from the same rows.
 * @param {string} name file name part of its CSV
 * @param {[string, (row: any) => string, string?][]} columns text key of the heading, the cell, a class
 * @param {any[]} rows
 * @param {string} emptyKey text when there are no rows
 * @param {{key: (row: any) => string, head: (row: any) => string, hide: number[]} | null} [group] rows of one
 *   key under a heading row of their own; the `hide` columns (what the heading says) are left out on the page,
 *   kept in the CSV
 */
function table(name, columns, rows, emptyKey, group = null) {
  const wrap = el('div', 'table-wrap');
  wrap.dataset.table = name;
  if (!rows.length) {
    wrap.append(el('p', 'empty', t(emptyKey)));
    return wrap;
  }
  const csv = el('button', 'tool tool--small no-print csv', t('report_csv'));
  csv.type = 'button';
  csv.addEventListener('click', () => download(`${fileBase()}-${name}.csv`, 'text/csv;charset=utf-8',
    `\ufeff${toCsv(columns, rows)}`));
  wrap.append(csv);
  const tbl = el('table', `report-table report-table--${name}`);
  const shown = columns.filter((_, i) => !(group && group.hide.includes(i)));
  const head = el('tr');
  for (const [key, , cls] of shown) head.append(el('th', cls || '', t(key)));
  tbl.append(el('thead'));
  tbl.tHead.append(head);
  const body = el('tbody');
  let last = null;
  for (const row of rows) {
    if (group && group.key(row) !== last) {
      last = group.key(row);
      const tr = el('tr', 'group-row');
      const td = el('td', '', group.head(row));
      td.colSpan = shown.length;
      tr.append(td);
      body.append(tr);
    }
    const tr = el('tr');
    for (const [, cell, cls] of shown) tr.append(el('td', cls || '', cell(row)));
    body.append(tr);
  }
  tbl.append(body);
  wrap.append(tbl);
  return wrap;
}

function toCsv(columns, rows) {
  const quote = (v) => {
    const s = String(v ?? '');
    return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
  };
  const lines = [columns.map(([key]) => quote(t(key))).join(',')];
  for (const row of rows) lines.push(columns.map(([, cell]) => quote(cell(row))).join(','));
  return `${lines.join('\r\n')}\r\n`;
}

function download(name, type, text) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const a = el('a');
  a.href = url;
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

function fileBase() {
  const id = hook.data ? hook.data.action.id : 'action';
  return `report-${id}`;
}

// sections -------------------------------------------------------------------------------

function facts(dl, pairs) {
  dl.replaceChildren();
  for (const [key, value] of pairs) {
    dl.append(el('dt', '', t(key)), el('dd', '', value || t('none')));
  }
}

function unitLabel(unit) {
  const kind = unit.kind ? codeText('kind', unit.kind) : '';
  return [unit.id, unit.name, kind ? `(${kind})` : ''].filter(Boolean).join(' ');
}

function header(r) {
  const a = r.action;
  byId('r-court').textContent = r.court_name;
  byId('r-case').textContent = a.case_number;
  byId('r-title').textContent = a.title;
  const provisional = byId('r-provisional');
  provisional.hidden = !r.provisional;
  provisional.textContent = r.provisional ? t('report_provisional', { time: formatTime(r.times.until) }) : '';
  byId('r-generated').textContent = t('report_generated', { time: formatTime(r.generated_at), zone: r.time_zone });
  document.title = `${t('report_heading')} ${a.case_number}`;
  facts(byId('r-team'), [
    ['report_type', codeText('action_type', a.type)],
    ['report_address', a.address],
    ['report_units', r.team.units.map(unitLabel).join('；')],
    ['report_officers', r.team.officers.join('、')],
    ['report_judge', r.team.judge],
    ['report_created_by', r.team.created_by],
  ]);
  facts(byId('r-times'), [
    ['report_state', codeText('action_state', a.state)],
    ['report_planned', r.times.planned_at ? formatTime(r.times.planned_at) : ''],
    ['report_started', formatTime(r.times.started_at)],
    [r.provisional ? 'report_until' : 'report_ended', formatTime(r.provisional ? r.times.until : r.times.ended_at)],
    ['report_duration', formatDuration(r.times.duration_s)],
    ['report_zone', r.time_zone],
  ]);
}

function colorOf(r, unitId) {
  const order = r.timeline.map((u) => u.unit_id);
  const i = order.indexOf(unitId);
  return COLORS[(i < 0 ? order.length : i) % COLORS.length];
}

function drawMap(r, config) {
  const box = byId('report-map');
  const note = byId('r-map-note');
  if (typeof L === 'undefined') {
    note.hidden = false;
    note.textContent = t('report_map_unavailable');
    return;
  }
  const map = L.map(box, { zoomControl: false, attributionControl: false, zoomAnimation: false,
    fadeAnimation: false, markerZoomAnimation: false, preferCanvas: false });
  const view = datum(config.crs);
  const at = (lat, lon) => view.toDisplay(lat, lon);
  if (config.tileUrl) L.tileLayer(config.tileUrl, { maxZoom: 19, maxNativeZoom: 18 }).addTo(map);
  box.dataset.tiles = config.tileUrl ? 'true' : 'false';
  const bounds = [];
  const area = r.action.area;
  if (area && area.type === 'circle') {
    const center = L.latLng(at(area.lat, area.lon));
    L.circle(center, { radius: area.radius_m, className: 'report-area', color: '#555', weight: 1, dashArray: '4 3',
      fillOpacity: 0.06 }).addTo(map);
    const around = center.toBounds(2 * area.radius_m);  // no view yet: the circle cannot measure itself
    bounds.push(around.getNorthEast(), around.getSouthWest());
  } else if (area && area.type === 'polygon' && Array.isArray(area.points)) {
    const pts = area.points.map((p) => at(p.lat ?? p[0], p.lon ?? p[1]));
    L.polygon(pts, { className: 'report-area', color: '#555', weight: 1, dashArray: '4 3', fillOpacity: 0.06 })
      .addTo(map);
    bounds.push(...pts);
  }
  const legend = el('div', 'map-legend');
  let drawn = 0;
  for (const track of r.tracks) {
    if (!track.points.length) continue;
    const color = colorOf(r, track.unit_id);
    const pts = track.points.map(([lat, lon]) => at(lat, lon));
    L.polyline(pts, { color, weight: 3, opacity: 0.9, smoothFactor: 0, className: 'report-track' }).addTo(map);
    L.circleMarker(pts[0], { radius: 4, color, weight: 2, fillColor: '#fff', fillOpacity: 1, className: 'report-start' })
      .addTo(map);
    L.circleMarker(pts[pts.length - 1], { radius: 4, color, weight: 2, fillColor: color, fillOpacity: 1,
      className: 'report-end' }).addTo(map);
    bounds.push(...pts);
    const item = el('span', 'legend-item');
    const swatch = el('span', 'swatch');
    swatch.style.background = color;
    item.append(swatch, document.createTextNode(`${track.unit_id} (${t('report_fixes', { n: track.fixes })})`));
    legend.append(item);
    drawn += 1;
  }
  if (bounds.length) map.fitBounds(L.latLngBounds(bounds), { padding: [16, 16], maxZoom: 18, animate: false });
  else map.setView(config.center || [38.04, 114.51], config.zoom || 13);
  box.append(legend);
  box.dataset.tracks = String(drawn);
  if (!drawn) {
    note.hidden = false;
    note.textContent = t('report_map_no_fixes');
  }
}

/** Per-unit bars of what was recorded, the gaps, and a first row of the shortfalls. */
function drawTimeline(r) {
  const from = r.coverage.start;  // the action's own times to the millisecond (times.* are whole seconds)
  const to = r.coverage.end;
  const start = ms(from);
  const end = ms(to);
  const span = Math.max(1, end - start);
  const W = 1000;
  const LABEL = 150;
  const ROW = 22;
  const rows = r.timeline.length + 1;
  const H = rows * ROW + 26;
  const x = (iso) => LABEL + ((Math.min(end, Math.max(start, ms(iso))) - start) / span) * (W - LABEL - 6);
  const box = byId('r-timeline-svg');
  box.replaceChildren();
  box.setAttribute('viewBox', `0 0 ${W} ${H}`);
  const bar = (row, a, b, cls, title) => {
    const x1 = x(a);
    const w = Math.max(1.5, x(b) - x1);
    const rect = svg('rect', { x: x1, y: row * ROW + 4, width: w, height: ROW - 8, class: cls });
    if (title) rect.append(Object.assign(svg('title', {}), { textContent: title }));
    box.append(rect);
  };
  const label = (row, text) => {
    const node = svg('text', { x: 4, y: row * ROW + ROW / 2 + 4, class: 'tl-label' });
    node.textContent = text;
    box.append(node);
  };
  // row 0: the coverage by the required number of recorders
  label(0, t('report_coverage_row', { n: r.coverage.required }));
  bar(0, from, to, 'tl-covered');
  for (const s of r.coverage.shortfalls) {
    bar(0, s.start, s.end, 'tl-short', `${formatClock(s.start)}–${formatClock(s.end)} ${t('report_running_n', { n: s.running })}`);
  }
  r.timeline.forEach((unit, i) => {
    const row = i + 1;
    label(row, unit.unit_id);
    bar(row, from, to, 'tl-track');
    for (const [a, b] of unit.recorded) bar(row, a, b, 'tl-recorded', `${formatClock(a)}–${formatClock(b)}`);
    for (const g of unit.gaps) {
      if (g.start && g.end) bar(row, g.start, g.end, 'tl-gap', `${codeText('gap', g.cause)} ${formatClock(g.start)}–${formatClock(g.end)}`);
    }
  });
  const axisY = rows * ROW + 4;
  box.append(svg('line', { x1: LABEL, x2: W - 6, y1: axisY, y2: axisY, class: 'tl-axis' }));
  const ticks = 5;
  for (let i = 0; i <= ticks; i += 1) {
    const at = new Date(start + (span * i) / ticks).toISOString();
    const tx = x(at);
    box.append(svg('line', { x1: tx, x2: tx, y1: axisY, y2: axisY + 4, class: 'tl-axis' }));
    const text = svg('text', { x: tx, y: axisY + 16, class: 'tl-tick',
      'text-anchor': i === 0 ? 'start' : i === ticks ? 'end' : 'middle' });
    text.textContent = formatClock(at);
    box.append(text);
  }
  const legend = el('div', 'tl-legend');
  for (const [cls, key] of [['tl-recorded', 'report_legend_recorded'], ['tl-gap', 'report_legend_gap'],
    ['tl-covered', 'report_legend_covered'], ['tl-short', 'report_legend_short']]) {
    const item = el('span', 'legend-item');
    item.append(el('span', `swatch ${cls}`), document.createTextNode(t(key)));
    legend.append(item);
  }
  byId('r-timeline-legend').replaceChildren(legend);
}

function coverage(r) {
  const c = r.coverage;
  byId('r-coverage').textContent = t('report_coverage_summary', {
    ratio: `${(c.ratio * 100).toFixed(1)}%`, covered: formatDuration(c.covered_s), total: formatDuration(c.total_s),
    n: c.required,
  });
  // Shortfalls under the table's precision (a tenth of a second, where one segment ends and the
  // next begins) are counted in the ratio above and summed up in a line, not listed as "0.0 s".
  const shown = c.shortfalls.filter((s) => s.seconds >= 0.05);
  const tiny = c.shortfalls.length - shown.length;
  const rows = table('shortfalls', [
    ['report_col_start', (s) => formatTime(s.start)],
    ['report_col_end', (s) => formatTime(s.end)],
    ['report_col_seconds', (s) => formatDuration(s.seconds)],
    ['report_col_running', (s) => t('report_running_n', { n: s.running })],
  ], shown, 'report_no_shortfalls');
  const note = document.createElement('p');
  note.className = 'muted report-tiny-shortfalls';
  note.textContent = tiny ? t('report_tiny_shortfalls', { n: tiny }) : '';
  note.hidden = !tiny;
  byId('r-shortfalls').replaceChildren(rows, note);
}

function breaks(r) {
  const notice = byId('r-notice');
  const n = r.notice;
  if (n) {
    notice.textContent = `${t('report_notice')}: ${t('report_notice_at', {
      time: formatTime(n.notice_at), who: n.marked_by, unit: n.unit_id, after: formatDuration(n.after_start_s),
    })}${n.in_time === false ? t('report_notice_late') : ''}`;
  } else {
    notice.textContent = `${t('report_notice')}: ${t(r.rule.notice_within_s ? 'report_notice_none' : 'report_notice_not_required')}`;
  }
  byId('r-breaks').replaceChildren(table('rule-breaks', [
    ['report_col_rule', (b) => codeText('procedure_rule', b.rule)],
    ['report_col_unit', (b) => b.unit_id || t('report_whole_action')],
    ['report_col_start', (b) => formatTime(b.started_at)],
    ['report_col_end', (b) => (b.open ? t('report_open') : formatTime(b.ended_at))],
    ['report_col_seconds', (b) => formatDuration(b.seconds)],
    ['report_col_detail', (b) => (language() === 'en' ? b.statement_en : b.statement) || ''],
  ], r.rule_breaks, 'report_no_breaks'));
}

function gaps(r) {
  byId('r-gaps').replaceChildren(table('gaps', [
    ['report_col_unit', (g) => g.unit_id],
    ['report_col_recording', (g) => g.recording_id, 'mono'],
    ['report_col_start', (g) => formatTime(g.start)],
    ['report_col_end', (g) => formatTime(g.end)],
    ['report_col_seconds', (g) => formatDuration(g.seconds)],
    ['report_col_cause', (g) => codeText('gap', g.cause)],
  ], r.gaps, 'report_no_gaps'));
}

function content(ins) {
  const p = ins.payload || {};
  if (ins.type === 'text') return String(p.text ?? '');
  if (ins.type === 'goto') return `${Number(p.lat).toFixed(5)}, ${Number(p.lon).toFixed(5)} ${p.note ?? ''}`.trim();
  return '';
}

function answer(ins) {
  if (ins.reason) return codeText('ins_reason', ins.reason);
  if (ins.result && typeof ins.result === 'object') {
    return Object.entries(ins.result)
      .map(([k, v]) => `${k}: ${v !== null && typeof v === 'object' ? JSON.stringify(v) : v}`).join('; ');
  }
  return '';
}

function instructions(r) {
  const rows = r.instructions;
  const shown = table('instructions', [
    ['report_col_created', (i) => formatTime(i.created_at)],
    ['report_col_unit', (i) => i.unit_id],
    ['report_col_type', (i) => codeText('ins_type', i.type)],
    ['report_col_content', (i) => content(i)],
    ['report_col_state', (i) => codeText('ins_state', i.state)],
    ['report_col_delivered', (i) => (i.delivered_at ? formatClock(i.delivered_at) : '')],
    ['report_col_acknowledged', (i) => (i.acknowledged_at ? formatClock(i.acknowledged_at) : '')],
    ['report_col_answered', (i) => {
      const at = i.done_at || i.refused_at || i.expired_at || i.cancelled_at;
      return at ? formatClock(at) : '';
    }],
    ['report_col_result', answer],
  ], rows, 'report_no_instructions');
  if (r.instructions_truncated) shown.append(el('p', 'note', t('report_truncated', { n: rows.length })));
  byId('r-instructions').replaceChildren(shown);
}

function alerts(r) {
  const shown = table('alerts', [
    ['report_col_time', (a) => formatTime(a.created_at)],
    ['report_col_kind', (a) => codeText('alert', a.kind)],
    ['report_col_unit', (a) => a.unit_id],
    ['report_col_state', (a) => codeText('report_alert_state', a.state)],
    ['report_col_ack_by', (a) => a.acknowledged_by || ''],
    ['report_col_acknowledged', (a) => (a.acknowledged_at ? formatTime(a.acknowledged_at) : '')],
    ['report_col_escalated', (a) => t(a.escalated ? 'report_yes' : 'report_no')],
  ], r.alerts, 'report_no_alerts');
  if (r.alerts_truncated) shown.append(el('p', 'note', t('report_truncated', { n: r.alerts.length })));
  byId('r-alerts').replaceChildren(shown);
}

function evidence(r) {
  const ev = r.evidence;
  const summary = byId('r-evidence-summary');
  if (!ev.archive) {
    summary.textContent = t('report_archive_disabled');
    byId('r-evidence').replaceChildren();
    return;
  }
  summary.textContent = t('report_evidence_summary', {
    recordings: ev.recordings.length, segments: ev.segments, bytes: formatBytes(ev.bytes),
  });
  const rows = [];
  for (const rec of ev.recordings) {
    for (const seg of rec.segments) rows.push({ rec, seg });
    if (!rec.segments.length) rows.push({ rec, seg: null });
  }
  byId('r-evidence').replaceChildren(table('evidence', [
    ['report_col_recording', ({ rec }) => rec.recording_id, 'mono'],
    ['report_col_unit', ({ rec }) => rec.unit_id || '', 'nowrap'],
    ['report_col_seq', ({ seg }) => (seg ? String(seg.seq) : t('none'))],
    ['report_col_start', ({ seg }) => (seg ? formatTime(seg.start) : ''), 'nowrap'],
    ['report_col_end', ({ seg }) => (seg ? formatClock(seg.end) : ''), 'nowrap'],
    ['report_col_bytes', ({ seg }) => (seg ? formatBytes(seg.bytes) : ''), 'nowrap'],
    ['report_col_sha256', ({ seg }) => (seg ? seg.sha256 : ''), 'mono hash'],
    ['report_col_ledger', ({ rec, seg }) => (seg ? String(seg.ledger_index) : String(rec.opened_index ?? ''))],
  ], rows, 'report_no_evidence', {
    key: ({ rec }) => rec.recording_id,
    hide: [0, 1],
    head: ({ rec }) => t('report_rec_head', {
      id: rec.recording_id, unit: rec.unit_id || t('none'), opened: formatTime(rec.opened),
      closed: rec.closed ? formatClock(rec.closed) : t('report_open'), index: rec.opened_index ?? t('none'),
      cause: rec.end_cause ? t('report_rec_cause', { cause: codeText('gap', rec.end_cause) }) : '',
    }),
  }));
}

function render(r, config) {
  setTimeZone(r.time_zone);
  header(r);
  byId('report').hidden = false;
  byId('report-message').hidden = true;
  drawMap(r, config);
  drawTimeline(r);
  coverage(r);
  breaks(r);
  gaps(r);
  instructions(r);
  alerts(r);
  evidence(r);
  byId('report-print').disabled = false;
  byId('report-json').disabled = false;
}

// loading --------------------------------------------------------------------------------

async function mapConfig(api) {
  try {
    const c = await api.consoleConfig();
    const m = (c && c.map) || {};
    return {
      tileUrl: typeof m.tile_url === 'string' ? m.tile_url.trim() : '',
      crs: m.tile_crs === 'gcj02' ? 'gcj02' : 'wgs84',
      center: Array.isArray(m.center) ? m.center : null,
      zoom: typeof m.zoom === 'number' ? m.zoom : null,
    };
  } catch {
    return { tileUrl: '', crs: 'wgs84', center: null, zoom: null };
  }
}

async function load(api, id) {
  setMessage('report_loading');
  setState('loading');
  let data;
  try {
    data = await api.request('GET', `/api/actions/${encodeURIComponent(id)}/report`);
  } catch (exc) {
    if (exc.status === 401) return;  // the login form is showing
    setState(exc.status === 403 ? 'forbidden' : 'error');
    hook.error = { status: exc.status, code: exc.code };
    setMessage('', exc.status === 403 ? t('report_forbidden') : errorText(exc));
    return;
  }
  hook.data = data;
  render(data, await mapConfig(api));
  setState('ready');
}

function showLogin(api, id, message) {
  const form = /** @type {HTMLFormElement} */ (byId('report-login'));
  form.hidden = false;
  setMessage('report_login_needed', message);
  setState('login');
  form.onsubmit = async (event) => {
    event.preventDefault();
    try {
      await api.login(form.elements.namedItem('username').value, form.elements.namedItem('password').value);
    } catch (exc) {
      setMessage('', errorText(exc));
      return;
    }
    form.hidden = true;
    await load(api, id);
  };
}

function main() {
  applyTexts(document);
  document.title = t('report_heading');
  const id = new URLSearchParams(window.location.search).get('id') || '';
  const api = new ApiClient((message) => showLogin(api, id, message));
  byId('report-lang').addEventListener('click', () => {
    setLanguage(language() === 'zh' ? 'en' : 'zh');
    window.location.reload();
  });
  byId('report-print').addEventListener('click', () => window.print());
  byId('report-json').addEventListener('click', () => {
    if (hook.data) download(`${fileBase()}.json`, 'application/json', `${JSON.stringify(hook.data, null, 2)}\n`);
  });
  if (!id) {
    setState('error');
    setMessage('report_no_id');
    return;
  }
  if (!api.token) {
    showLogin(api, id);
    return;
  }
  load(api, id);
}

main();
