/**
 * The create / edit form of an enforcement action (执行行动).
 *
 * The case number is checked by the server only (it knows the rules); its
 * refusal (400 bad_case_number and every other error) is shown verbatim in
 * `#action-error`, and the field it names is marked `aria-invalid`.
 *
 * Ids: `#action-form`, `#action-case-number`, `#action-title`, `#action-type`,
 * `#action-address`, `#action-area-type` (none | circle | polygon),
 * `#action-area-lat`, `#action-area-lon`, `#action-area-radius`,
 * `#action-area-points` (one "lat, lon" per line), `#action-planned`,
 * `#action-units` (a checkbox per roster unit, `input[value=unitId]`),
 * `#action-officers`, `#action-judge`, `#action-save`, `#action-cancel`, `#action-error`.
 */
import { errorText, t } from './console-texts.js';
import { fromLocalInput, toLocalInput } from './labels.js';
import { formatPosition, unitStatus } from './roster.js';

/** Error codes and the field they are about. */
const FIELD_OF_CODE = { bad_case_number: 'case-number', bad_area: 'area-type', unknown_unit: 'units', unit_busy: 'units' };

const byId = (id) => /** @type {any} */ (document.getElementById(id));

export class ActionForm {
  /**
   * @param {{save: (id: string | null, fields: object) => Promise<object>,
   *   units: Map<string, import('./roster.js').Unit>}} ctx save: POST when id is null, else PATCH
   */
  constructor(ctx) {
    this.ctx = ctx;
    this.form = /** @type {HTMLFormElement} */ (byId('action-form'));
    /** @type {string | null} the action being edited; null for a new one */
    this.editing = null;
    /** @type {Set<string>} ticked team units (kept while the roster re-renders the list) */
    this.team = new Set();
    this.unitsSignature = '';
    this.form.addEventListener('submit', (event) => {
      event.preventDefault();
      this.submit();
    });
    byId('action-cancel').addEventListener('click', () => this.close());
    byId('action-area-type').addEventListener('change', () => this.showArea());
    byId('action-area-from-team').addEventListener('click', () => this.areaFromTeam());
    byId('action-units').addEventListener('change', (event) => {
      const box = event.target;
      if (box instanceof HTMLInputElement) {
        if (box.checked) this.team.add(box.value);
        else this.team.delete(box.value);
      }
    });
  }

  get isOpen() {
    return !this.form.hidden;
  }

  /** @param {object | null} action null: a new action */
  open(action) {
    this.editing = action ? action.id : null;
    this.setError('', null);
    byId('action-form-title').textContent = action ? t('action_form_edit', { case: action.case_number }) : t('action_form_new');
    byId('action-case-number').value = action ? action.case_number : '';
    byId('action-title').value = action ? action.title : '';
    byId('action-type').value = action ? action.type : 'seizure';
    byId('action-address').value = action ? action.address : '';
    const area = action && action.area;
    byId('action-area-type').value = area ? area.type : 'none';
    byId('action-area-lat').value = area && area.type === 'circle' ? area.lat : '';
    byId('action-area-lon').value = area && area.type === 'circle' ? area.lon : '';
    byId('action-area-radius').value = area && area.type === 'circle' ? area.radius_m : '200';
    byId('action-area-points').value = area && area.type === 'polygon'
      ? area.points.map(([lat, lon]) => `${lat}, ${lon}`).join('\n') : '';
    byId('action-planned').value = action ? toLocalInput(action.planned_at) : '';
    byId('action-officers').value = action ? action.officers.join('、') : '';
    byId('action-judge').value = action ? action.judge : '';
    this.team = new Set(action ? action.units : []);
    this.showArea();
    this.form.hidden = false;
    this.unitsSignature = '';
    this.renderUnits();
    byId('action-save').querySelector('span').textContent = action ? t('action_save') : t('action_create');
    this.form.scrollIntoView({ block: 'start' });
    byId('action-case-number').focus({ preventScroll: true });
  }

  close() {
    this.form.hidden = true;
    this.editing = null;
  }

  showArea() {
    const kind = byId('action-area-type').value;
    this.form.querySelector('.area-circle').hidden = kind !== 'circle';
    this.form.querySelector('.area-polygon').hidden = kind !== 'polygon';
  }

  /** Centre the circle on the first ticked team unit that has a position fix. */
  areaFromTeam() {
    const unit = [...this.team].map((id) => this.ctx.units.get(id)).find((u) => u && u.position);
    if (!unit) {
      this.setError(t('action_no_fix'), 'units');
      return;
    }
    byId('action-area-type').value = 'circle';
    byId('action-area-lat').value = unit.position.lat.toFixed(6);
    byId('action-area-lon').value = unit.position.lon.toFixed(6);
    this.showArea();
    this.setError('', null);
  }

  /** The team checklist: every roster unit, ticked as chosen. Called when the roster changes. */
  renderUnits() {
    if (!this.isOpen) return;
    const box = byId('action-units');
    const ids = new Set([...this.ctx.units.keys(), ...this.team]);
    const sorted = [...ids].sort((a, b) => a.localeCompare(b, 'en', { numeric: true }));
    const signature = JSON.stringify(sorted.map((id) => {
      const u = this.ctx.units.get(id);
      return [id, u ? unitStatus(u) : '', u?.case_number, this.team.has(id)];
    }));
    if (this.unitsSignature === signature) return;
    this.unitsSignature = signature;
    box.replaceChildren(...sorted.map((id) => {
      const unit = this.ctx.units.get(id);
      const label = document.createElement('label');
      label.className = 'unit-pick';
      const input = document.createElement('input');
      input.type = 'checkbox';
      input.value = id;
      input.checked = this.team.has(id);
      const status = unit ? unitStatus(unit) : 'offline';
      label.dataset.status = status;
      const name = document.createElement('span');
      name.className = 'unit-pick-id';
      name.textContent = id;
      label.append(input, name);
      if (unit && unit.case_number && unit.action_id !== this.editing) {
        const busy = document.createElement('small');
        busy.textContent = t('action_busy', { case: unit.case_number });
        label.append(' ', busy);
      }
      label.title = `${t(`status.${status}`)}${unit && unit.position ? ` · ${formatPosition(unit.position)}` : ''}`;
      return label;
    }));
  }

  /** @returns {object} the request body (every field, for POST and PATCH alike) */
  fields() {
    const number = (id) => {
      const raw = byId(id).value.trim();
      return raw === '' ? null : Number(raw);
    };
    const kind = byId('action-area-type').value;
    let area = null;
    if (kind === 'circle') {
      area = { type: 'circle', lat: number('action-area-lat'), lon: number('action-area-lon'),
        radius_m: number('action-area-radius') };
    } else if (kind === 'polygon') {
      const points = byId('action-area-points').value.split('\n').map((line) => line.trim()).filter(Boolean)
        .map((line) => line.split(/[\s,，]+/).filter(Boolean).map(Number));
      area = { type: 'polygon', points };
    }
    return {
      case_number: byId('action-case-number').value.trim(),
      title: byId('action-title').value.trim(),
      type: byId('action-type').value,
      address: byId('action-address').value.trim(),
      area,
      planned_at: fromLocalInput(byId('action-planned').value),
      units: [...this.team].sort((a, b) => a.localeCompare(b, 'en', { numeric: true })),
      officers: byId('action-officers').value.split(/[,，、;；\n]+/).map((s) => s.trim()).filter(Boolean),
      judge: byId('action-judge').value.trim(),
    };
  }

  async submit() {
    const save = byId('action-save');
    save.disabled = true;
    this.setError('', null);
    try {
      await this.ctx.save(this.editing, this.fields());
      this.close();
    } catch (exc) {
      this.setError(exc.code ? errorText(exc) : exc.message || String(exc), FIELD_OF_CODE[exc.code] || null);
    } finally {
      save.disabled = false;
    }
  }

  /** @param {string} message @param {string | null} field the `action-<field>` input to mark */
  setError(message, field) {
    const error = byId('action-error');
    error.textContent = message;
    error.hidden = !message;
    for (const input of this.form.querySelectorAll('[aria-invalid]')) input.removeAttribute('aria-invalid');
    if (field) {
      const input = byId(`action-${field}`);
      input.setAttribute('aria-invalid', 'true');
      if (input.focus) input.focus({ preventScroll: true });
    }
  }
}
