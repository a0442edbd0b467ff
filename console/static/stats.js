/**
 * The 统计 tab (statistics, people with `stats.read`): period and grouping pickers, an ECharts
 * chart and a table per view (actions, recording, instructions, alerts, party requests) and the
 * evidence figures; a click on a figure (a table cell or a bar) lists the actions behind it, each
 * linking to its report (`/report/action?id=`). CSV and XLSX downloads and the printable report
 * (`/report/stats?<same query>`) use the same query.
 *
 * DOM: `#stats-period`, `#stats-date`, `#stats-from`, `#stats-to`, `#stats-group`, `#stats-load`,
 * `#stats-csv`, `#stats-xlsx`, `#stats-print`; per view `.stats-view[data-view]` with
 * `.stats-chart` and `table.stats-table`; the drill-down `#stats-drill` (`li[data-action-id]`).
 * Test hook: `dispatchConsole.stats` {data (the last answer), charts (Map view -> ECharts
 * instance), load(), drill(figure, key)}.
 * ECharts is the global of /vendor/echarts/echarts.min.js (npm `echarts`, served locally).
 */
import { errorText, t, timeZone } from './console-texts.js';
import { evidenceTable, groupLabel, periodText, statsViews, viewTable } from './stats-views.js';

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') node.className = v;
    else if (k in node) node[k] = v;
    else node.setAttribute(k, v);
  }
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

/** The series each view's chart shows: [text key, getter, drill-down figure]. */
const CHART_SERIES = {
  actions: [['stats_col_planned', (r) => r.actions.planned, 'planned'],
    ['stats_col_started', (r) => r.actions.started, 'started'], ['stats_col_ended', (r) => r.actions.ended, 'ended'],
    ['stats_col_cancelled', (r) => r.actions.cancelled, 'cancelled']],
  recording: [['stats_col_recorded_hours', (r) => r.recording.recorded_hours, null],
    ['stats_col_gaps', (r) => r.recording.gaps.count, 'gaps']],
  instructions: [['stats_col_instructions', (r) => r.instructions.total, null],
    ['ins_state.expired', (r) => r.instructions.expired, 'expired'],
    ['ins_state.refused', (r) => r.instructions.refused, 'refused']],
  alerts: [['stats_col_alerts', (r) => r.alerts.total, null], ['alert.sos', (r) => r.alerts.sos, 'sos'],
    ['stats_col_unacknowledged', (r) => r.alerts.unacknowledged, 'unacknowledged']],
  requests: [['stats_col_received', (r) => r.requests.received, 'requests'],
    ['stats_col_approved', (r) => r.requests.decided.approve, null],
    ['stats_col_downloads', (r) => r.requests.downloads, null]],
};

export class StatsPanel {
  /**
   * @param {HTMLElement} panel
   * @param {{api: import('./api.js').ApiClient}} ctx
   */
  constructor(panel, ctx) {
    this.panel = panel;
    this.api = ctx.api;
    this.data = null;
    /** @type {Map<string, any>} */
    this.charts = new Map();
    this.build();
    // The side column widens while this tab is open (console.css): the charts follow its width.
    new ResizeObserver(() => this.resize()).observe(this.panel);
    const panelSelf = this;
    this.hook = {
      get data() { return panelSelf.data; },
      charts: this.charts,
      load: () => this.load(),
      drill: (figure, key) => this.drill(figure, key),
    };
  }

  build() {
    const option = (value, key) => el('option', { value }, t(key));
    this.period = el('select', { id: 'stats-period' }, ...['day', 'week', 'month', 'custom'].map(
      (p) => option(p, `stats_period.${p}`)));
    this.period.value = 'month';
    this.date = el('input', { id: 'stats-date', type: 'date' });
    this.from = el('input', { id: 'stats-from', type: 'date', hidden: true });
    this.to = el('input', { id: 'stats-to', type: 'date', hidden: true });
    this.group = el('select', { id: 'stats-group' }, ...['type', 'judge', 'officer', 'unit', 'team'].map(
      (g) => option(g, `stats_group.${g}`)));
    const button = (id, key) => el('button', { id, type: 'button', class: 'btn btn--small' }, t(key));
    const load = button('stats-load', 'stats_load');
    const csv = button('stats-csv', 'stats_csv');
    const xlsx = button('stats-xlsx', 'stats_xlsx');
    const print = button('stats-print', 'stats_print');
    this.status = el('p', { id: 'stats-status', class: 'muted' });
    this.views = el('div', { id: 'stats-views' });
    this.drillBox = el('section', { id: 'stats-drill', class: 'stats-drill', hidden: true });
    const controls = el('form', { class: 'stats-controls' },
      el('label', {}, t('stats_period'), ' ', this.period), el('label', {}, t('stats_date'), ' ', this.date),
      el('label', {}, t('stats_from'), ' ', this.from), el('label', {}, t('stats_to'), ' ', this.to),
      el('label', {}, t('stats_grouping'), ' ', this.group), load, csv, xlsx, print);
    this.panel.replaceChildren(el('h2', {}, t('stats_title')), controls, this.status, this.drillBox, this.views);
    this.period.addEventListener('change', () => {
      const custom = this.period.value === 'custom';
      this.date.hidden = custom;
      this.from.hidden = !custom;
      this.to.hidden = !custom;
    });
    controls.addEventListener('submit', (e) => { e.preventDefault(); this.load(); });
    load.addEventListener('click', () => this.load());
    this.group.addEventListener('change', () => this.load());
    csv.addEventListener('click', () => this.download('csv'));
    xlsx.addEventListener('click', () => this.download('xlsx'));
    print.addEventListener('click', () => window.open(`/report/stats?${this.query()}`, '_blank'));
  }

  /** The query of the pickers (the same for JSON, files, drill-down and the report). */
  query() {
    const q = new URLSearchParams({ period: this.period.value, group: this.group.value });
    if (this.period.value === 'custom') {
      q.set('from', this.from.value);
      q.set('to', this.to.value);
    } else if (this.date.value) {
      q.set('date', this.date.value);
    }
    return q.toString();
  }

  /** The tab was opened: load once. */
  shown() {
    if (!this.date.value) {
      // Today in the court's zone (the server's default too), so the picker shows the period counted.
      const today = new Intl.DateTimeFormat('en-CA', { timeZone: timeZone(), year: 'numeric', month: '2-digit',
        day: '2-digit' }).format(new Date());
      this.date.value = today;
      if (!this.from.value) this.from.value = today;
      if (!this.to.value) this.to.value = today;
    }
    if (!this.data) this.load();
  }

  async load() {
    this.status.textContent = t('stats_loading');
    try {
      this.data = await this.api.request('GET', `/api/stats?${this.query()}`);
      this.status.textContent = t('stats_period_of', { period: periodText(this.data.period),
        group: t(`stats_group.${this.data.group}`) });
      this.render();
    } catch (err) {
      this.status.textContent = errorText(err);
    }
  }

  render() {
    for (const chart of this.charts.values()) chart.dispose();
    this.charts.clear();
    this.views.replaceChildren();
    const stats = this.data;
    for (const view of statsViews(stats)) {
      const chartBox = el('div', { class: 'stats-chart' });
      const section = el('section', { class: 'stats-view' }, el('h3', {}, view.title), chartBox,
        el('div', { class: 'stats-table-wrap' }, viewTable(stats, view, (f, k) => this.drill(f, k))));
      section.dataset.view = view.id;
      this.views.append(section);
      this.chart(view.id, chartBox, stats);
    }
    const ev = evidenceTable(stats);
    if (ev) {
      const section = el('section', { class: 'stats-view' }, el('h3', {}, t('stats_view_evidence')), ev);
      section.dataset.view = 'evidence';
      this.views.append(section);
    }
  }

  chart(id, box, stats) {
    const echarts = /** @type {any} */ (window).echarts;
    if (!echarts) return;
    const chart = echarts.init(box, null, { renderer: 'canvas' });
    const keys = stats.groups.map((g) => g.key);
    const series = CHART_SERIES[id].map(([key, get, figure]) => ({
      name: t(key), type: 'bar', data: stats.groups.map(get), figure,
    }));
    chart.setOption({
      animation: false,
      tooltip: { trigger: 'axis' },
      legend: { top: 0 },
      grid: { left: 40, right: 10, top: 30, bottom: 40 },
      xAxis: { type: 'category', data: keys.map((k) => groupLabel(stats.group, k)), axisLabel: { interval: 0, rotate: 20 } },
      yAxis: { type: 'value' },
      series,
    });
    chart.on('click', (event) => {
      const figure = series[event.seriesIndex] && series[event.seriesIndex].figure;
      if (figure) this.drill(figure, keys[event.dataIndex]);
    });
    this.charts.set(id, chart);
  }

  /** List the actions behind `figure` in group `key` (null: all groups). */
  async drill(figure, key) {
    const q = new URLSearchParams(this.query());
    q.set('figure', figure);
    if (key !== null && key !== undefined) q.set('key', key);
    this.drillBox.hidden = false;
    this.drillBox.dataset.figure = figure;
    try {
      const { actions } = await this.api.request('GET', `/api/stats/actions?${q}`);
      const list = el('ol', { class: 'stats-drill-list' }, ...actions.map((a) => {
        const li = el('li', {}, el('a', { href: a.report_url, target: '_blank' }, `${a.case_number} ${a.title}`),
          ' ', el('span', { class: 'muted' }, `${t(`action_type.${a.type}`)} · ${t(`action_state.${a.state}`)}`
            + (a.coverage === null ? '' : ` · ${t('stats_col_coverage_ratio')} ${(a.coverage * 100).toFixed(1)}%`)));
        li.dataset.actionId = a.id;
        return li;
      }));
      const title = t('stats_drill_title', { figure: t(`stats_figure.${figure}`),
        group: key === null || key === undefined ? t('stats_total') : groupLabel(this.data.group, key),
        n: actions.length });
      const close = el('button', { type: 'button', class: 'btn btn--small', id: 'stats-drill-close' }, t('stats_drill_close'));
      close.addEventListener('click', () => { this.drillBox.hidden = true; });
      this.drillBox.replaceChildren(el('h3', {}, title), close, actions.length ? list
        : el('p', { class: 'muted' }, t('stats_drill_none')));
    } catch (err) {
      this.drillBox.replaceChildren(el('p', { class: 'form-error' }, errorText(err)));
    }
  }

  /** Fetch the file with the person's token and hand it to the browser as a download. */
  async download(format) {
    try {
      const res = await fetch(`/api/stats?${this.query()}&format=${format}`,
        { headers: { Authorization: `Bearer ${this.api.token}` } });
      if (!res.ok) throw new Error((await res.json()).error?.message || res.statusText);
      const disposition = res.headers.get('Content-Disposition') || '';
      const name = (/filename="([^"]+)"/.exec(disposition) || [])[1] || `stats.${format}`;
      const url = URL.createObjectURL(await res.blob());
      const a = el('a', { href: url, download: name });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10000);
    } catch (err) {
      this.status.textContent = errorText(err);
    }
  }

  /** The panel is resized or shown again: charts follow its width. */
  resize() {
    for (const chart of this.charts.values()) chart.resize();
  }
}
