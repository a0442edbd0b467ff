/**
 * The views of the statistics (汇总统计) as tables: shared by the 统计 tab (stats.js) and the
 * printable report (report-stats.js). Each view has columns (a text key and a getter over one
 * group's figures from `GET /api/stats`); some columns name a drill-down `figure`
 * (`GET /api/stats/actions?figure=`), whose cells become buttons in the tab.
 */
import { formatBytes, formatTime, t } from './console-texts.js';

const secs = (v) => (v === null || v === undefined ? '—' : Number(v).toFixed(1));
const ratio = (v) => (v === null || v === undefined ? '—' : `${(Number(v) * 100).toFixed(1)}%`);
const n = (v) => (v === null || v === undefined ? '—' : String(v));

/** `[{id, title, columns: [{key, get(row) -> shown text, value(row) -> number, figure?}]}]` */
export function statsViews(stats) {
  const every = [...stats.groups, stats.totals];
  const union = (get) => [...new Set(every.flatMap((r) => Object.keys(get(r))))].sort();
  const col = (key, get, show = n, figure = undefined, label = undefined) => ({
    key, label: label || t(key), value: get, get: (r) => show(get(r)), figure,
  });
  const pctCols = (view, part, prefix, points) => points.map((p) =>
    col(`stats_col_${prefix}_${p}`, (r) => r[view][part][p], secs));
  return [
    { id: 'actions', title: t('stats_view_actions'), columns: [
      col('stats_col_planned', (r) => r.actions.planned, n, 'planned'),
      col('stats_col_started', (r) => r.actions.started, n, 'started'),
      col('stats_col_ended', (r) => r.actions.ended, n, 'ended'),
      col('stats_col_cancelled', (r) => r.actions.cancelled, n, 'cancelled'),
      col('stats_col_running', (r) => r.actions.running, n, 'running'),
      col('stats_col_duration_total', (r) => r.actions.duration_s.total, secs),
      col('stats_col_duration_mean', (r) => r.actions.duration_s.mean, secs),
      col('stats_col_duration_max', (r) => r.actions.duration_s.max, secs),
    ] },
    { id: 'recording', title: t('stats_view_recording'), columns: [
      col('stats_col_recorded_hours', (r) => r.recording.recorded_hours, (v) => Number(v).toFixed(2)),
      col('stats_col_coverage_actions', (r) => r.recording.coverage.actions),
      col('stats_col_coverage_full', (r) => r.recording.coverage.full),
      col('stats_col_coverage_ratio', (r) => r.recording.coverage.ratio, ratio, 'undercovered'),
      col('stats_col_gaps', (r) => r.recording.gaps.count, n, 'gaps'),
      col('stats_col_gap_seconds', (r) => r.recording.gaps.seconds, secs),
      ...union((r) => r.recording.gaps.by_cause).map((c) => col(`gap_${c}`,
        (r) => (r.recording.gaps.by_cause[c] || { count: 0 }).count, n, 'gaps', t('stats_col_gap_cause', { cause: c }))),
    ] },
    { id: 'instructions', title: t('stats_view_instructions'), columns: [
      col('stats_col_instructions', (r) => r.instructions.total),
      ...union((r) => r.instructions.by_state).map((s) => col(`ins_state.${s}`,
        (r) => r.instructions.by_state[s] || 0, n, s === 'expired' || s === 'refused' ? s : undefined)),
      ...pctCols('instructions', 'delivery_s', 'delivery', ['p50', 'p90', 'p99', 'max']),
      ...pctCols('instructions', 'ack_s', 'ack', ['p50', 'p90', 'p99', 'max']),
    ] },
    { id: 'alerts', title: t('stats_view_alerts'), columns: [
      col('stats_col_alerts', (r) => r.alerts.total),
      ...union((r) => r.alerts.by_kind).map((k) => col(`alert.${k}`, (r) => r.alerts.by_kind[k] || 0, n,
        k === 'sos' ? 'sos' : undefined)),
      ...pctCols('alerts', 'sos_ack_s', 'sos_ack', ['p50', 'p90', 'max']),
      col('stats_col_unacknowledged', (r) => r.alerts.unacknowledged, n, 'unacknowledged'),
      col('stats_col_escalated', (r) => r.alerts.escalated),
    ] },
    { id: 'requests', title: t('stats_view_requests'), columns: [
      col('stats_col_received', (r) => r.requests.received, n, 'requests'),
      col('stats_col_approved', (r) => r.requests.decided.approve),
      col('stats_col_refused', (r) => r.requests.decided.refuse),
      col('stats_col_more_info', (r) => r.requests.more_info),
      ...pctCols('requests', 'decision_s', 'decision', ['p50', 'p90', 'max']),
      col('stats_col_exports', (r) => r.requests.exports),
      col('stats_col_downloads', (r) => r.requests.downloads),
      col('stats_col_links_revoked', (r) => r.requests.links_revoked),
    ] },
  ];
}

/** The label of a group key: action types get their name, the empty key reads 无. */
export function groupLabel(group, key) {
  if (key === '') return t('stats_none');
  return group === 'type' ? t(`action_type.${key}`) : key;
}

/**
 * A table of one view: a row per group, then 合计.
 * @param {(figure: string, key: string | null) => void} [onFigure] makes drill-down cells buttons
 */
export function viewTable(stats, view, onFigure) {
  const table = document.createElement('table');
  table.className = 'stats-table';
  table.dataset.view = view.id;
  const head = table.createTHead().insertRow();
  for (const text of [t(`stats_group.${stats.group}`), ...view.columns.map((c) => c.label)]) {
    const th = document.createElement('th');
    th.textContent = text;
    head.append(th);
  }
  const body = table.createTBody();
  const rows = [...stats.groups.map((g) => [g.key, g]), [null, stats.totals]];
  for (const [key, figures] of rows) {
    const tr = body.insertRow();
    tr.dataset.key = key === null ? '*' : key;
    const th = document.createElement('th');
    th.textContent = key === null ? t('stats_total') : groupLabel(stats.group, key);
    tr.append(th);
    for (const c of view.columns) {
      const td = tr.insertCell();
      td.dataset.col = c.key;
      if (c.figure && onFigure) {
        const b = document.createElement('button');
        b.type = 'button';
        b.className = 'stats-figure';
        b.dataset.figure = c.figure;
        b.textContent = c.get(figures);
        b.addEventListener('click', () => onFigure(c.figure, key));
        td.append(b);
      } else {
        td.textContent = c.get(figures);
      }
    }
  }
  return table;
}

/** The evidence figures (not grouped) as a table; null without an archive. */
export function evidenceTable(stats) {
  const ev = stats.evidence;
  if (!ev) return null;
  const table = document.createElement('table');
  table.className = 'stats-table';
  table.dataset.view = 'evidence';
  const check = ev.last_verification || {};
  const rows = [
    ['stats_ev_archive', formatBytes(ev.archive_bytes)], ['stats_ev_sealed', String(ev.segments_sealed)],
    ['stats_ev_sealed_bytes', formatBytes(ev.sealed_bytes)], ['stats_ev_deleted_bytes', formatBytes(ev.deleted_bytes)],
    ['stats_ev_growth', formatBytes(ev.growth_bytes)],
    ['stats_ev_verified_at', check.at ? formatTime(check.at) : '—'],
    ['stats_ev_verified', check.ok ? t('stats_ev_ok') : t('stats_ev_failed')],
  ];
  for (const [key, value] of rows) {
    const tr = table.insertRow();
    const th = document.createElement('th');
    th.textContent = t(key);
    tr.append(th);
    tr.insertCell().textContent = value;
  }
  return table;
}

/** "2026-12-01 — 2026-12-31" */
export function periodText(period) {
  return period.from === period.to ? period.from : `${period.from} — ${period.to}`;
}
