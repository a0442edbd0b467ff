/**
 * The form that sends an instruction (`POST /api/instructions`) to one unit,
 * to an action's team, or to every online unit.
 *
 * Ids: `#instruction-form`, `#instruction-target` (unit | action | all),
 * `#instruction-unit`, `#instruction-action`, `#instruction-type`,
 * `#instruction-text`, `#instruction-lat`, `#instruction-lon`, `#instruction-note`
 * (goto), `#instruction-priority`, `#instruction-ttl` (seconds),
 * `#instruction-ack-deadline` (seconds), `#instruction-send`,
 * `#instruction-error` (the server's refusal), `#instruction-result`.
 */
import { errorText, t } from './console-texts.js';
import { ACTION_STATES, labelOf } from './labels.js';
import { unitStatus } from './roster.js';


const byId = (id) => /** @type {any} */ (document.getElementById(id));

export class InstructionForm {
  /**
   * @param {{send: (body: object) => Promise<{id: string, ids: string[]}>,
   *   units: Map<string, import('./roster.js').Unit>, actions: Map<string, object>}} ctx
   */
  constructor(ctx) {
    this.ctx = ctx;
    this.form = /** @type {HTMLFormElement} */ (byId('instruction-form'));
    this.unitsSignature = '';
    this.actionsSignature = '';
    this.form.addEventListener('submit', (event) => {
      event.preventDefault();
      this.submit();
    });
    byId('instruction-target').addEventListener('change', () => this.showFields());
    byId('instruction-type').addEventListener('change', () => this.showFields());
    this.showFields();
  }

  showFields() {
    const target = byId('instruction-target').value;
    byId('instruction-unit').closest('label').hidden = target !== 'unit';
    byId('instruction-action').closest('label').hidden = target !== 'action';
    const goto = byId('instruction-type').value === 'goto';
    this.form.querySelector('.instr-goto').hidden = !goto;
    const text = byId('instruction-text');
    text.required = byId('instruction-type').value === 'text';
    text.placeholder = text.required ? t('instr_text_placeholder') : t('instr_note_placeholder');
  }

  /** Address the form to a unit or an action's team and bring it into view. */
  preset({ unit = null, action = null }) {
    if (action) {
      this.renderActions();
      byId('instruction-target').value = 'action';
      byId('instruction-action').value = action;
    } else if (unit) {
      this.renderUnits();
      byId('instruction-target').value = 'unit';
      byId('instruction-unit').value = unit;
    }
    this.showFields();
    this.form.scrollIntoView({ block: 'start' });
    byId('instruction-text').focus({ preventScroll: true });
  }

  /** The unit choices (all roster units, with their status). Called when the roster changes. */
  renderUnits() {
    const units = [...this.ctx.units.values()].sort((a, b) => a.id.localeCompare(b.id, 'en', { numeric: true }));
    const signature = JSON.stringify(units.map((u) => [u.id, unitStatus(u), u.case_number]));
    if (signature === this.unitsSignature) return;
    this.unitsSignature = signature;
    const select = byId('instruction-unit');
    const chosen = select.value;
    select.replaceChildren(...units.map((unit) => {
      const status = unitStatus(unit);
      const label = t('instr_unit_option', { id: unit.name ? `${unit.id} ${unit.name}` : unit.id, status: t(`status.${status}`) });
      const option = new Option(`${label}${unit.case_number ? ` · ${unit.case_number}` : ''}`, unit.id);
      option.dataset.status = status;
      return option;
    }));
    if (units.some((u) => u.id === chosen)) select.value = chosen;
  }

  /** The action choices: planned and running actions. Called when the actions change. */
  renderActions() {
    const actions = [...this.ctx.actions.values()].filter((a) => a.state !== 'ended')
      .sort((a, b) => (a.state === 'running' ? 0 : 1) - (b.state === 'running' ? 0 : 1) ||
        a.case_number.localeCompare(b.case_number));
    const signature = JSON.stringify(actions.map((a) => [a.id, a.state, a.case_number, a.title, a.units.length]));
    if (signature === this.actionsSignature) return;
    this.actionsSignature = signature;
    const select = byId('instruction-action');
    const chosen = select.value;
    select.replaceChildren(...actions.map((a) => new Option(t('instr_action_option', {
      case: a.case_number, title: a.title, state: labelOf(ACTION_STATES, a.state), n: a.units.length,
    }), a.id)));
    if (actions.some((a) => a.id === chosen)) select.value = chosen;
  }

  /** @returns {object} the request body */
  body() {
    const target = byId('instruction-target').value;
    const body = {};
    if (target === 'unit') body.unit = byId('instruction-unit').value;
    else if (target === 'action') body.action = byId('instruction-action').value;
    else body.all = true;
    body.type = byId('instruction-type').value;
    const text = byId('instruction-text').value.trim();
    if (text) body.text = text;
    if (body.type === 'goto') {
      const number = (id) => {
        const raw = byId(id).value.trim();
        return raw === '' ? null : Number(raw);
      };
      body.lat = number('instruction-lat');
      body.lon = number('instruction-lon');
      body.note = byId('instruction-note').value.trim();
    }
    body.priority = byId('instruction-priority').value;
    const ttl = Number(byId('instruction-ttl').value);
    if (byId('instruction-ttl').value !== '') body.ttl_s = ttl;
    const deadline = byId('instruction-ack-deadline').value;
    if (deadline !== '') body.ack_deadline_s = Number(deadline);
    return body;
  }

  async submit() {
    const send = byId('instruction-send');
    send.disabled = true;
    this.setError('');
    this.setResult('');
    const body = this.body();
    try {
      if (body.unit === '' || body.action === '') {
        throw new Error(body.unit === '' ? t('instr_choose_unit') : t('instr_choose_action'));
      }
      const created = await this.ctx.send(body);
      this.setResult(...sentFeedback(created));
      byId('instruction-text').value = '';
    } catch (exc) {
      this.setError(exc.code ? errorText(exc) : exc.message || String(exc));
    } finally {
      send.disabled = false;
    }
  }

  setError(message) {
    const error = byId('instruction-error');
    error.textContent = message;
    error.hidden = !message;
  }

  /** @param {string} message @param {'online' | 'offline' | 'mixed' | ''} [reach] */
  setResult(message, reach = '') {
    const result = byId('instruction-result');
    result.textContent = message;
    result.hidden = !message;
    result.dataset.reach = reach;
  }
}

/**
 * What the create answer says about delivery: online targets get it now; offline ones when they
 * come back (`online` lists the targets with an instruction link).
 * @returns {[string, 'online' | 'offline' | 'mixed']}
 */
export function sentFeedback(created) {
  const units = Array.isArray(created.units) ? created.units : [];
  const online = new Set(Array.isArray(created.online) ? created.online : units);
  const offline = units.filter((u) => !online.has(u));
  const n = units.length || 1;
  if (!offline.length) return [t('instr_sent_online', { n }), 'online'];
  if (offline.length === units.length) return [t('instr_sent_offline'), 'offline'];
  return [t('instr_sent_mixed', { n, online: units.length - offline.length, offline: offline.length,
    units: offline.slice(0, 5).join('、') + (offline.length > 5 ? '…' : '') }), 'mixed'];
}
