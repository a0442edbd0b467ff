/**
 * Administration (管理): units, users, the audit trail, legal holds and retention, each a screen
 * of `#admin-view` shown to those whose permissions allow it (`data-perm` on the tabs):
 *
 * - units (`units.admin`: supervisors and admins): register with kind and name (the token is shown once in
 *   `#adm-token`), issue a new token, disable (the unit is disconnected at once) or enable;
 * - users (`accounts.admin`: admins): create, reset a password (their sessions end), change the role,
 *   disable or enable;
 * - audit (`audit.read`): filters by person, unit, case, action and time; export to CSV;
 * - holds (`evidence.hold`): set a legal hold with a reason, release it with a reason;
 * - retention (`evidence.retention`): the categories, a dry run listing what would go, the run.
 *
 * Every result or refusal is a sentence in `#adm-notice` (`data-kind` ok | error).
 * Test hook `dispatchConsole.admin = {show(tab), current}`.
 */
import {
  codeText, errorText, formatBytes, formatTime, fromZonedInput, hasText, t,
} from './console-texts.js';

const ROLES = ['operator', 'supervisor', 'auditor', 'admin'];
const KINDS = ['body', 'vehicle', 'phone'];
const VERB_FAMILIES = ['unit', 'user', 'instruction', 'action', 'alert', 'talk', 'login'];

/** createElement with attributes and children. */
function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') node.className = v;
    else if (k === 'dataset') Object.assign(node.dataset, v);
    else if (k === 'text') node.textContent = v;
    else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else if (k in node && typeof v !== 'string') node[k] = v;
    else node.setAttribute(k, v === true ? '' : v);
  }
  node.append(...children.filter((c) => c !== null && c !== undefined && c !== false));
  return node;
}

function field(labelKey, input, wide = false) {
  return h('label', { class: wide ? 'wide' : '' }, h('span', { text: t(labelKey) }), input);
}

function table(headKeys, rows, emptyKey) {
  if (!rows.length) return h('p', { class: 'empty', text: t(emptyKey) });
  return h('div', { class: 'adm-table-wrap' }, h('table', { class: 'adm-table' },
    h('thead', {}, h('tr', {}, ...headKeys.map((k) => h('th', { text: k ? t(k) : '' })))),
    h('tbody', {}, ...rows)));
}

export class AdminView {
  /**
   * @param {{view: HTMLElement, body: HTMLElement, tabs: HTMLElement}} elements
   * @param {{api: import('./api.js').ApiClient, can: (p: string) => boolean, me: () => string,
   *   config: () => object}} ctx
   */
  constructor(elements, ctx) {
    this.el = elements;
    this.ctx = ctx;
    this.current = '';
    /** @type {HTMLButtonElement[]} */
    this.tabs = [...elements.tabs.querySelectorAll('[data-admin]')];
    for (const tab of this.tabs) tab.addEventListener('click', () => this.show(tab.dataset.admin));
    this.notice = h('p', { id: 'adm-notice', class: 'adm-notice', role: 'status', hidden: true });
    this.screen = h('div', { class: 'adm-screen' });
    elements.body.append(this.notice, this.screen);
    const view = this;
    this.hook = {
      show: (tab) => this.show(tab),
      get current() {
        return view.current;
      },
    };
  }

  refreshTabs() {
    const visible = this.tabs.filter((tab) => !tab.hidden);
    if (!visible.some((tab) => tab.dataset.admin === this.current)) this.current = visible[0]?.dataset.admin || '';
  }

  /** The view came into sight: draw the current screen afresh. */
  shown() {
    this.refreshTabs();
    if (this.current) this.show(this.current);
  }

  /** @param {string} name units | users | audit | holds | retention */
  async show(name) {
    const tab = this.tabs.find((b) => b.dataset.admin === name);
    if (!tab || tab.hidden) return;
    this.current = name;
    for (const b of this.tabs) b.setAttribute('aria-selected', String(b === tab));
    this.el.body.dataset.screen = name;
    this.say('');
    this.screen.replaceChildren(h('p', { class: 'muted', text: t('loading') }));
    try {
      await this[`render_${name}`]();
    } catch (exc) {
      this.screen.replaceChildren();
      this.say(errorText(exc), 'error');
    }
  }

  /** @param {string} text @param {'ok' | 'error'} [kind] */
  say(text, kind = 'ok') {
    this.notice.textContent = text;
    this.notice.dataset.kind = kind;
    this.notice.hidden = !text;
  }

  /** Run an administrative call; say its result or its refusal, then redraw the screen. */
  async act(call, done) {
    try {
      const result = await call();
      const text = typeof done === 'function' ? done(result) : done;
      await this.show(this.current);
      if (text) this.say(text, 'ok');
      return result;
    } catch (exc) {
      this.say(errorText(exc), 'error');
      return null;
    }
  }

  // units ------------------------------------------------------------------------------------
  async render_units() {
    const { units } = await this.ctx.api.request('GET', '/api/units');
    const id = h('input', { id: 'adm-unit-id', required: true, autocomplete: 'off', spellcheck: 'false', maxlength: 64 });
    const kind = h('select', { id: 'adm-unit-kind' }, ...KINDS.map((k) => h('option', { value: k, text: codeText('kind', k) })));
    const name = h('input', { id: 'adm-unit-name', maxlength: 64, placeholder: t('adm_unit_name_placeholder') });
    const form = h('form', { id: 'adm-unit-form', class: 'dform adm-form', novalidate: true },
      field('adm_unit_id', id), field('adm_unit_kind', kind), field('adm_unit_name', name),
      h('div', { class: 'form-buttons' }, h('button', { type: 'submit', class: 'btn btn--primary', id: 'adm-unit-register',
        text: t('adm_unit_register') })));
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      const created = await this.act(() => this.ctx.api.request('POST', '/api/units',
        { id: id.value.trim(), kind: kind.value, name: name.value.trim() }),
      (u) => t('adm_unit_registered', { id: u.id }));
      if (created) this.showToken(created.id, created.token);
    });
    const rows = units.map((u) => {
      const status = u.disabled ? 'disabled' : u.publishing ? 'publishing' : u.online ? 'online' : 'offline';
      const rotate = h('button', { type: 'button', class: 'btn btn--small adm-rotate', text: t('adm_unit_rotate'),
        onclick: async () => {
          if (!window.confirm(t('adm_rotate_confirm', { id: u.id }))) return;
          const result = await this.act(() => this.ctx.api.request('POST', `/api/units/${encodeURIComponent(u.id)}/rotate`), '');
          if (result) this.showToken(u.id, result.token);
        } });
      const toggle = u.disabled
        ? h('button', { type: 'button', class: 'btn btn--small adm-enable', text: t('adm_unit_enable'),
          onclick: () => this.act(() => this.ctx.api.request('POST', `/api/units/${encodeURIComponent(u.id)}/enable`),
            t('adm_unit_enabled_done', { id: u.id })) })
        : h('button', { type: 'button', class: 'btn btn--small btn--danger adm-disable', text: t('adm_unit_disable'),
          onclick: () => {
            if (!window.confirm(t('adm_disable_confirm', { id: u.id }))) return;
            this.act(() => this.ctx.api.request('POST', `/api/units/${encodeURIComponent(u.id)}/disable`),
              t('adm_unit_disabled_done', { id: u.id }));
          } });
      return h('tr', { dataset: { unitId: u.id, disabled: String(Boolean(u.disabled)) } },
        h('td', { class: 'mono', text: u.id }), h('td', { text: u.name || '' }), h('td', { text: codeText('kind', u.kind) }),
        h('td', {}, h('span', { class: `badge badge--${status}`, text: t(`status.${status}`) })),
        h('td', { class: 'mono', text: u.last_seen ? formatTime(u.last_seen) : t('none') }),
        h('td', { class: 'adm-buttons' }, rotate, toggle));
    });
    this.tokenBox = h('div', { id: 'adm-token', class: 'adm-token', hidden: true });
    this.screen.replaceChildren(form, this.tokenBox,
      table(['adm_unit_id', 'adm_unit_name', 'adm_unit_kind', 'adm_unit_state', 'roster_seen', ''], rows, 'adm_units_empty'));
  }

  /** A unit's token, shown this once (only its hash is stored). */
  showToken(unitId, token) {
    const box = this.tokenBox;
    if (!box || !token) return;
    const value = h('code', { id: 'adm-token-value', class: 'adm-token-value', text: token });
    const copy = h('button', { type: 'button', class: 'btn btn--small', text: t('adm_token_copy'),
      onclick: async () => {
        try {
          await navigator.clipboard.writeText(token);
          copy.textContent = t('adm_token_copied');
        } catch {
          window.getSelection()?.selectAllChildren(value);
        }
      } });
    const done = h('button', { type: 'button', class: 'btn btn--small btn--primary', text: t('adm_token_done'),
      onclick: () => {
        box.replaceChildren();
        box.hidden = true;
      } });
    box.dataset.unitId = unitId;
    box.replaceChildren(h('strong', { text: t('adm_token_title', { id: unitId }) }), value, copy, done);
    box.hidden = false;
  }

  // users ------------------------------------------------------------------------------------
  async render_users() {
    const { users } = await this.ctx.api.request('GET', '/api/users');
    const name = h('input', { id: 'adm-user-name', required: true, autocomplete: 'off', maxlength: 64 });
    const role = h('select', { id: 'adm-user-role' }, ...ROLES.map((r) => h('option', { value: r, text: t(`role.${r}`) })));
    const password = h('input', { id: 'adm-user-password', type: 'password', autocomplete: 'new-password', required: true });
    const form = h('form', { id: 'adm-user-form', class: 'dform adm-form', novalidate: true },
      field('adm_user_name', name), field('adm_user_role', role), field('adm_user_password', password),
      h('div', { class: 'form-buttons' }, h('button', { type: 'submit', class: 'btn btn--primary', id: 'adm-user-create',
        text: t('adm_user_create') })));
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      this.act(() => this.ctx.api.request('POST', '/api/users',
        { username: name.value.trim(), role: role.value, password: password.value }),
      (u) => t('adm_user_created_done', { name: u.username }));
    });
    const me = this.ctx.me();
    const rows = users.map((u) => {
      const path = `/api/users/${encodeURIComponent(u.username)}`;
      const roleSelect = h('select', { class: 'adm-role', disabled: u.username === me },
        ...ROLES.map((r) => h('option', { value: r, text: t(`role.${r}`), selected: r === u.role })));
      roleSelect.addEventListener('change', () => this.act(
        () => this.ctx.api.request('POST', `${path}/role`, { role: roleSelect.value }),
        t('adm_user_role_done', { name: u.username, role: t(`role.${roleSelect.value}`) })));
      const reset = h('button', { type: 'button', class: 'btn btn--small adm-reset', text: t('adm_user_reset') });
      const resetRow = h('span', { class: 'adm-inline', hidden: true });
      const newPassword = h('input', { type: 'password', class: 'adm-new-password', autocomplete: 'new-password',
        placeholder: t('adm_user_new_password') });
      resetRow.append(newPassword, h('button', { type: 'button', class: 'btn btn--small btn--primary adm-reset-save',
        text: t('save'), onclick: () => this.act(() => this.ctx.api.request('POST', `${path}/password`,
          { password: newPassword.value }), t('adm_user_reset_done', { name: u.username })) }));
      reset.addEventListener('click', () => {
        resetRow.hidden = !resetRow.hidden;
        if (!resetRow.hidden) newPassword.focus();
      });
      const toggle = u.disabled
        ? h('button', { type: 'button', class: 'btn btn--small adm-enable', text: t('adm_user_enable'),
          onclick: () => this.act(() => this.ctx.api.request('POST', `${path}/enable`),
            t('adm_user_enabled_done', { name: u.username })) })
        : h('button', { type: 'button', class: 'btn btn--small btn--danger adm-disable', text: t('adm_user_disable'),
          disabled: u.username === me,
          onclick: () => {
            if (!window.confirm(t('adm_disable_user_confirm', { name: u.username }))) return;
            this.act(() => this.ctx.api.request('POST', `${path}/disable`),
              t('adm_user_disabled_done', { name: u.username }));
          } });
      const status = u.disabled ? 'disabled' : 'online';
      return h('tr', { dataset: { username: u.username, disabled: String(u.disabled), role: u.role } },
        h('td', { class: 'mono', text: u.username + (u.username === me ? t('adm_you') : '') }),
        h('td', {}, roleSelect),
        h('td', {}, h('span', { class: `badge badge--${status}`, text: t(u.disabled ? 'adm_user_disabled' : 'adm_user_active') })),
        h('td', { text: String(u.sessions) }), h('td', { class: 'mono', text: formatTime(u.created_at) }),
        h('td', { class: 'adm-buttons' }, reset, toggle, resetRow));
    });
    this.screen.replaceChildren(form, table(['adm_user_name', 'adm_user_role', 'adm_user_state',
      'adm_user_sessions', 'adm_user_created', ''], rows, 'none'));
  }

  // audit ------------------------------------------------------------------------------------
  async render_audit() {
    const input = (id, type = 'text') => h('input', { id, type, autocomplete: 'off' });
    const f = {
      actor: input('adm-audit-actor'), unit: input('adm-audit-unit'), case: input('adm-audit-case'),
      action: h('select', { id: 'adm-audit-action' }, h('option', { value: '', text: t('adm_audit_any') }),
        ...VERB_FAMILIES.map((v) => h('option', { value: v, text: t(`verb.${v}`) }))),
      from: input('adm-audit-from', 'datetime-local'), to: input('adm-audit-to', 'datetime-local'),
    };
    const results = h('div', { id: 'adm-audit-results' });
    const params = () => {
      const q = new URLSearchParams();
      for (const key of ['actor', 'unit', 'case', 'action']) if (f[key].value.trim()) q.set(key, f[key].value.trim());
      for (const key of ['from', 'to']) {
        const iso = fromZonedInput(f[key].value);
        if (iso) q.set(key, iso);
      }
      return q;
    };
    let latest = 0;
    const search = async () => {
      const mine = ++latest;
      const query = params();
      try {
        const { entries } = await this.ctx.api.request('GET', `/api/audit?${query}&limit=1000`);
        if (mine !== latest) return; // a newer search is under way: its answer is the one to show
        results.dataset.query = query.toString(); // what the rows shown answer
        results.replaceChildren(h('p', { class: 'muted', id: 'adm-audit-count', text: t('adm_audit_count', { n: entries.length }) }),
          table(['adm_audit_time', 'adm_audit_actor', 'adm_audit_action', 'adm_audit_subject', 'adm_audit_detail'],
            entries.map((e) => h('tr', { dataset: { verb: e.verb, n: String(e.n) } },
              h('td', { class: 'mono', text: formatTime(e.at || e.ts) }), h('td', { text: e.actor }),
              h('td', { title: e.verb, text: verbText(e.verb) }), h('td', { class: 'mono', text: e.subject }),
              h('td', { class: 'adm-detail', text: detailText(e.detail) }))), 'adm_audit_empty'));
        this.say('');
      } catch (exc) {
        this.say(errorText(exc), 'error');
      }
    };
    const csv = h('button', { type: 'button', class: 'btn', id: 'adm-audit-csv', text: t('adm_audit_csv'),
      onclick: async () => {
        try {
          const response = await this.ctx.api.send('GET', `/api/audit?${params()}&format=csv&limit=50000`);
          const url = URL.createObjectURL(await response.blob());
          const link = h('a', { href: url, download: 'audit.csv' });
          document.body.append(link);
          link.click();
          link.remove();
          setTimeout(() => URL.revokeObjectURL(url), 10000);
        } catch (exc) {
          this.say(errorText(exc), 'error');
        }
      } });
    const form = h('form', { id: 'adm-audit-form', class: 'dform adm-form adm-filters', novalidate: true },
      field('adm_audit_actor', f.actor), field('adm_audit_unit', f.unit), field('adm_audit_case', f.case),
      field('adm_audit_action', f.action), field('adm_audit_from', f.from), field('adm_audit_to', f.to),
      h('div', { class: 'form-buttons' }, h('button', { type: 'submit', class: 'btn btn--primary', id: 'adm-audit-search',
        text: t('adm_audit_search') }), csv));
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      search();
    });
    this.screen.replaceChildren(form, results);
    await search();
  }

  // holds ------------------------------------------------------------------------------------
  async render_holds() {
    if (!this.archiveEnabled()) {
      this.screen.replaceChildren(h('p', { class: 'empty', text: t('adm_archive_off') }));
      return;
    }
    const { holds } = await this.ctx.api.request('GET', '/api/holds');
    const kase = h('input', { id: 'adm-hold-case', required: true, placeholder: '（2026）冀0916执123号', autocomplete: 'off' });
    const reason = h('input', { id: 'adm-hold-reason', required: true, maxlength: 2000,
      placeholder: t('adm_hold_reason_placeholder') });
    const form = h('form', { id: 'adm-hold-form', class: 'dform adm-form', novalidate: true },
      field('adm_hold_case', kase), field('adm_hold_reason', reason, true),
      h('div', { class: 'form-buttons' }, h('button', { type: 'submit', class: 'btn btn--primary', id: 'adm-hold-set',
        text: t('adm_hold_set') })));
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      this.act(() => this.ctx.api.request('POST', '/api/holds', { case_number: kase.value.trim(), reason: reason.value.trim() }),
        (hold) => t('adm_hold_set_done', { case: hold.case_number }));
    });
    const rows = holds.map((hold) => {
      const why = h('input', { class: 'adm-release-reason', maxlength: 2000, placeholder: t('adm_hold_release_reason') });
      const release = h('button', { type: 'button', class: 'btn btn--small btn--danger adm-release', text: t('adm_hold_release'),
        onclick: () => {
          if (!why.value.trim()) {
            why.setAttribute('aria-invalid', 'true');
            why.focus();
            this.say(t('err.bad_reason'), 'error');
            return;
          }
          this.act(() => this.ctx.api.request('DELETE',
            `/api/holds/${encodeURIComponent(hold.case_number)}?reason=${encodeURIComponent(why.value.trim())}`),
          t('adm_hold_released_done', { case: hold.case_number }));
        } });
      return h('tr', { dataset: { caseNumber: hold.case_number } },
        h('td', { text: hold.case_number }), h('td', { text: hold.reason || '' }), h('td', { text: hold.set_by || '' }),
        h('td', { class: 'mono', text: formatTime(hold.set_at) }),
        h('td', { text: String(Array.isArray(hold.recordings) ? hold.recordings.length : hold.recordings ?? '') }),
        h('td', { class: 'adm-buttons' }, why, release));
    });
    this.screen.replaceChildren(form, table(['adm_hold_case', 'adm_hold_reason', 'adm_hold_by', 'adm_hold_at',
      'adm_hold_recordings', ''], rows, 'adm_holds_empty'));
  }

  // retention --------------------------------------------------------------------------------
  async render_retention() {
    if (!this.archiveEnabled()) {
      this.screen.replaceChildren(h('p', { class: 'empty', text: t('adm_archive_off') }));
      return;
    }
    const rules = this.ctx.config().archive?.retention || [];
    const categories = table(['adm_ret_category', 'adm_ret_keep'], rules.map((r) =>
      h('tr', { dataset: { category: r.category } }, h('td', { text: codeText('category', r.category) }),
        h('td', { text: String(r.keep_days) }))), 'none');
    const result = h('div', { id: 'adm-ret-result' });
    const dry = h('button', { type: 'button', class: 'btn btn--primary', id: 'adm-ret-dry', text: t('adm_ret_dry') });
    const run = h('button', { type: 'button', class: 'btn btn--danger', id: 'adm-ret-run', text: t('adm_ret_run'), disabled: true });
    let planned = null;
    const show = (view) => {
      const f = view.figures;
      const pct = (x) => `${Math.round(Number(x || 0) * 1000) / 10}%`;
      const summary = view.dry_run
        ? t('adm_ret_would', { segments: f.segments, recordings: f.recordings, bytes: formatBytes(f.bytes), share: pct(f.share),
          held: f.held_recordings })
        : t('adm_ret_deleted', { segments: view.deleted, recordings: f.recordings, bytes: formatBytes(view.deleted_bytes),
          held: f.held_recordings });
      const lines = [h('p', { id: 'adm-ret-summary', dataset: { dryRun: String(view.dry_run), segments: String(f.segments) },
        text: f.recordings ? summary : t('adm_ret_nothing') })];
      if (f.halted) lines.push(h('p', { class: 'form-error', text: t('adm_ret_halted', { max: pct(f.max_delete_share) }) }));
      lines.push(table(['adm_ret_recording', 'adm_ret_category', 'adm_ret_closed', 'adm_ret_segments', 'adm_ret_size'],
        view.due.map((d) => h('tr', { dataset: { recordingId: d.recording_id } }, h('td', { class: 'mono', text: d.recording_id }),
          h('td', { text: codeText('category', d.category) }), h('td', { class: 'mono', text: formatTime(d.closed_at) }),
          h('td', { text: String(d.segments) }), h('td', { text: formatBytes(d.bytes) }))), 'adm_ret_nothing'));
      result.replaceChildren(...lines);
    };
    dry.addEventListener('click', async () => {
      try {
        planned = await this.ctx.api.request('POST', '/api/retention/run?dry_run=1');
        show(planned);
        run.disabled = !planned.figures.recordings || planned.figures.halted;
        this.say('');
      } catch (exc) {
        this.say(errorText(exc), 'error');
      }
    });
    run.addEventListener('click', async () => {
      if (!planned) return;
      if (!window.confirm(t('adm_ret_confirm', { n: planned.figures.recordings, segments: planned.figures.segments }))) return;
      try {
        show(await this.ctx.api.request('POST', '/api/retention/run?dry_run=0'));
        this.say('');
      } catch (exc) {
        this.say(errorText(exc), 'error');
      }
      run.disabled = true;
      planned = null;
    });
    this.screen.replaceChildren(h('p', { class: 'muted', text: t('adm_ret_intro') }), categories,
      h('div', { class: 'form-buttons' }, dry, run), result);
  }

  archiveEnabled() {
    const archive = this.ctx.config().archive;
    return !archive || archive.enabled !== false;
  }
}

/** What an audit verb says, in the interface language (the verb itself in the tooltip). */
export function verbText(verb) {
  if (hasText(`audit.${verb}`)) return t(`audit.${verb}`);
  if (verb.startsWith('alert.') && hasText(`alert.${verb.slice(6)}`)) {
    return t('audit_alert', { kind: t(`alert.${verb.slice(6)}`) });
  }
  return verb;
}

/** Values that are machine codes, by the detail key that holds them. */
const VALUE_FAMILIES = {
  type: 'ins_type', priority: 'priority', role: 'role', from: 'role', to: 'role', reason: 'ins_reason', state: 'ins_state',
};

function valueText(key, value) {
  if (typeof value === 'string') {
    const family = key === 'kind' ? (hasText(`kind.${value}`) ? 'kind' : 'alert') : VALUE_FAMILIES[key];
    return family && hasText(`${family}.${value}`) ? t(`${family}.${value}`) : value;
  }
  if (typeof value === 'boolean') return t(value ? 'yes' : 'no');
  if (Array.isArray(value)) return value.map((v) => valueText(key, v)).join('、');
  return typeof value === 'number' ? String(value) : JSON.stringify(value);
}

/** An audit entry's detail as `key: value` pairs, keys and coded values in the interface language. */
function detailText(detail) {
  if (!detail || typeof detail !== 'object') return '';
  return Object.entries(detail).filter(([, v]) => v !== null && v !== undefined && v !== '')
    .map(([k, v]) => `${hasText(`audit_key.${k}`) ? t(`audit_key.${k}`) : k}: ${valueText(k, v)}`).join(' · ');
}
