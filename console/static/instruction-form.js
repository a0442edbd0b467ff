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
import { ACTION_STATES, labelOf } from './labels.js';
import { unitStatus } from './roster.js';

const STATUS_ZH = { publishing: '直播', online: '在线', offline: '离线' };

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
    text.placeholder = text.required ? '指令内容 instruction text' : '附言（可选） note (optional)';
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
      const option = new Option(`${unit.id} · ${STATUS_ZH[status]} ${status}${unit.case_number ? ` · ${unit.case_number}` : ''}`,
        unit.id);
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
    select.replaceChildren(...actions.map((a) => new Option(
      `${a.case_number} ${a.title} · ${labelOf(ACTION_STATES, a.state)[0]} · ${a.units.length} 单位`, a.id)));
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
        throw new Error(body.unit === '' ? '请选择单位 choose a unit' : '请选择行动 choose an action');
      }
      const created = await this.ctx.send(body);
      const count = created.ids ? created.ids.length : 1;
      this.setResult(`已下发 ${count} 条 queued for ${count} unit${count === 1 ? '' : 's'}`);
      byId('instruction-text').value = '';
    } catch (exc) {
      this.setError(exc.message || String(exc));
    } finally {
      send.disabled = false;
    }
  }

  setError(message) {
    const error = byId('instruction-error');
    error.textContent = message;
    error.hidden = !message;
  }

  setResult(message) {
    const result = byId('instruction-result');
    result.textContent = message;
    result.hidden = !message;
  }
}
