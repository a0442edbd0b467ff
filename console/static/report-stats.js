/**
 * The printable statistics (`/report/stats?<query of GET /api/stats>`): the court's name and the
 * period in the header, then a table per view; A4 print CSS (stats.css), so the browser's "print
 * to PDF" makes the report. The figures come from `GET /api/stats` with the console's session
 * (sessionStorage, api.js); without one, the page says to log in first.
 * `#report[data-state]` is `loading`, `ready` or `error` (read by the tests).
 */
import { ApiClient } from './api.js';
import { applyTexts, errorText, formatTime, setTimeZone, t } from './console-texts.js';
import { evidenceTable, periodText, statsViews, viewTable } from './stats-views.js';

const byId = (id) => /** @type {HTMLElement} */ (document.getElementById(id));

async function main() {
  applyTexts(document);
  const report = byId('report');
  const api = new ApiClient((message) => {
    byId('report-error').hidden = false;
    byId('report-error').textContent = message || t('report_login_first');
  });
  byId('report-print').textContent = t('stats_print');
  byId('report-print').addEventListener('click', () => window.print());
  if (!api.session) {
    byId('report-error').hidden = false;
    byId('report-error').textContent = t('report_login_first');
    report.dataset.state = 'error';
    return;
  }
  try {
    const config = await api.consoleConfig();
    if (typeof config.time_zone === 'string') setTimeZone(config.time_zone);
    const stats = await api.request('GET', `/api/stats${window.location.search}`);
    document.title = `${stats.court_name} ${t('stats_title')} ${periodText(stats.period)}`;
    byId('report-court').textContent = stats.court_name;
    byId('report-title').textContent = `${t('stats_title')} · ${t(`stats_group.${stats.group}`)}`;
    byId('report-period').textContent = t('report_period', { period: periodText(stats.period),
      kind: t(`stats_period.${stats.period.kind}`) });
    byId('report-generated').textContent = t('stats_report_generated', { at: formatTime(stats.generated_at) });
    const views = byId('report-views');
    for (const view of statsViews(stats)) {
      const section = document.createElement('section');
      section.className = 'stats-view';
      const h = document.createElement('h3');
      h.textContent = view.title;
      section.append(h, viewTable(stats, view));
      views.append(section);
    }
    const ev = evidenceTable(stats);
    if (ev) {
      const section = document.createElement('section');
      section.className = 'stats-view';
      const h = document.createElement('h3');
      h.textContent = t('stats_view_evidence');
      section.append(h, ev);
      views.append(section);
    }
    report.dataset.state = 'ready';
  } catch (err) {
    byId('report-error').hidden = false;
    byId('report-error').textContent = errorText(err);
    report.dataset.state = 'error';
  }
}

main();
