/**
 * The video wall's grouping by running enforcement action (执行行动): one
 * section per running action, headed by its case number and title, with the
 * tiles of its team; the units in no action share a last section.
 *
 * A unit's group comes from its roster object (`action_id`, `case_number`);
 * titles and team lists come from the actions list. A unit whose action is not
 * known yet (the roster arrived before `GET /api/actions`) is grouped under the
 * case number the roster gives.
 *
 * DOM: `#video-wall > .wall-group[data-action-id] > .wall-group-head + .wall-grid`;
 * `data-action-id` is "" for the units in no action.
 *
 * Each running action's header carries its compliance with the rules of procedure right now
 * (流程预警, pushed as `action_procedure`): `.wall-group-compliance[data-compliant]` reading
 * 合规, or 违规：<what> with every rule broken now.
 */
import { t } from './console-texts.js';
import { ACTION_TYPES, formatClock, labelOf } from './labels.js';
import { statusBadge, unitStatus } from './roster.js';

const OTHERS = '';

const byUnitId = (a, b) => a.localeCompare(b, 'en', { numeric: true });

export class WallGroups {
  /**
   * @param {HTMLElement} root the `#video-wall` container
   * @param {Map<string, import('./roster.js').Unit>} units the roster
   * @param {(unitId: string) => void} onMember a team member without a tile was clicked
   */
  constructor(root, units, onMember) {
    this.root = root;
    this.units = units;
    this.onMember = onMember;
    /** @type {Map<string, object>} every known action by id */
    this.actions = new Map();
    /** @type {Map<string, {element: HTMLElement, head: HTMLElement, grid: HTMLElement, signature: string}>} */
    this.groups = new Map();
    /** @type {Map<string, {compliant: boolean, open: {rule: string, unit_id: string | null}[]}>} by action id */
    this.compliance = new Map();
  }

  /** An `action_procedure` event or `GET /api/actions/{id}/procedure`: the action's compliance now. */
  setCompliance(compliance) {
    if (!compliance || typeof compliance.action_id !== 'string') return;
    this.compliance.set(compliance.action_id, {
      compliant: Boolean(compliance.compliant),
      open: Array.isArray(compliance.open) ? compliance.open : [],
    });
  }

  /** @param {Map<string, object>} actions all known actions (any state) */
  setActions(actions) {
    this.actions = actions;
  }

  /**
   * The group a unit's tile belongs in: its running action, or "" (no action).
   * @param {import('./roster.js').Unit} unit
   */
  keyOf(unit) {
    const actionId = unit && unit.action_id;
    if (!actionId) return OTHERS;
    const action = this.actions.get(actionId);
    // An action that ended keeps its units' action_id until their status is pushed again.
    return action && action.state !== 'running' ? OTHERS : actionId;
  }

  /**
   * Put every tile in its group, in unit-id order, creating and dropping
   * groups as needed, and refresh the headers. Moves only the tiles whose
   * place changed (a moved <video> keeps playing: it is re-inserted at once).
   * @param {Map<string, import('./video-tile.js').VideoTile>} tiles
   */
  layout(tiles) {
    /** @type {Map<string, import('./video-tile.js').VideoTile[]>} */
    const members = new Map();
    for (const action of this.actions.values()) {
      if (action.state === 'running') members.set(action.id, []);
    }
    for (const tile of tiles.values()) {
      const key = this.keyOf(this.units.get(tile.unitId) || tile.unit);
      if (!members.has(key)) members.set(key, []);
      members.get(key).push(tile);
    }
    if (!members.has(OTHERS)) members.set(OTHERS, []);

    for (const [key, group] of this.groups) {
      if (!members.has(key)) {
        group.element.remove();
        this.groups.delete(key);
      }
    }
    const order = [...members.keys()].sort((a, b) => this.compareGroups(a, b));
    const grouped = order.length > 1;
    let previous = null;
    for (const key of order) {
      const group = this.groups.get(key) || this.createGroup(key);
      const list = members.get(key).sort((a, b) => byUnitId(a.unitId, b.unitId));
      list.forEach((tile, index) => {
        const at = group.grid.children[index] || null;
        if (at !== tile.element) group.grid.insertBefore(tile.element, at);
      });
      group.grid.dataset.count = String(list.length);
      group.element.dataset.count = String(list.length);
      group.element.dataset.grouped = String(grouped);
      // The units in no action need no header (nor space) when no action runs.
      group.element.hidden = key === OTHERS && list.length === 0 && grouped;
      this.renderHead(key, group, list, grouped);
      const next = previous ? previous.nextSibling : this.root.firstChild;
      if (next !== group.element) this.root.insertBefore(group.element, next);
      previous = group.element;
    }
  }

  /** Running actions by start time, then actions not loaded yet, then the units in no action. */
  compareGroups(a, b) {
    if (a === OTHERS || b === OTHERS) return a === OTHERS ? 1 : -1;
    const started = (key) => Date.parse(this.actions.get(key)?.started_at || '') || Number.MAX_SAFE_INTEGER;
    return started(a) - started(b) || a.localeCompare(b);
  }

  createGroup(key) {
    const element = document.createElement('section');
    element.className = 'wall-group';
    element.dataset.actionId = key;
    const head = document.createElement('header');
    head.className = 'wall-group-head';
    const grid = document.createElement('div');
    grid.className = 'wall-grid';
    element.append(head, grid);
    const group = { element, head, grid, signature: '' };
    this.groups.set(key, group);
    return group;
  }

  /**
   * @param {string} key
   * @param {{head: HTMLElement, signature: string}} group
   * @param {import('./video-tile.js').VideoTile[]} tiles
   * @param {boolean} grouped whether any action group is shown
   */
  renderHead(key, group, tiles, grouped) {
    const { head } = group;
    head.hidden = !grouped;
    if (!grouped) {
      group.signature = '';
      return;
    }
    const live = tiles.filter((tile) => tile.state === 'live').length;
    // Rebuilt only when what it shows changed: the wall lays out on every unit
    // update, and a header rebuilt under the pointer would swallow clicks.
    const action = this.actions.get(key);
    const statuses = [...this.units.values()].filter((u) => u.action_id === key || action?.units.includes(u.id))
      .map((u) => `${u.id}:${unitStatus(u)}:${u.case_number}`);
    const signature = JSON.stringify([action, live, tiles.map((t) => t.unitId), statuses, this.compliance.get(key)]);
    if (group.signature === signature) return;
    group.signature = signature;
    head.replaceChildren();
    if (key === OTHERS) {
      head.append(text('strong', 'wall-group-title', t('wall_others')));
      head.append(text('span', 'wall-group-count', `${live} / ${tiles.length}`));
      return;
    }
    const sample = [...this.units.values()].find((unit) => unit.action_id === key);
    const caseNumber = action ? action.case_number : sample?.case_number || key;
    head.append(text('span', 'wall-group-case', caseNumber));
    if (action) {
      const kind = text('span', 'wall-group-type', labelOf(ACTION_TYPES, action.type));
      head.append(kind, text('strong', 'wall-group-title', action.title));
      if (action.started_at) {
        const since = text('small', 'wall-group-since', t('wall_group_since', { t: formatClock(action.started_at) }));
        head.append(since);
      }
    }
    const compliance = this.compliance.get(key);
    if (compliance) head.append(complianceBadge(compliance));
    const team = action ? action.units : [...this.units.values()].filter((u) => u.action_id === key).map((u) => u.id);
    head.append(text('span', 'wall-group-count', `${live} / ${team.length}`));
    head.lastChild.title = t('wall_group_count_title');
    // Team members without a tile: a chip each, a click opens their tile.
    const shown = new Set(tiles.map((tile) => tile.unitId));
    for (const unitId of [...team].sort(byUnitId)) {
      if (shown.has(unitId)) continue;
      const unit = this.units.get(unitId);
      const status = unit ? unitStatus(unit) : 'offline';
      const chip = document.createElement('button');
      chip.type = 'button';
      chip.className = 'chip wall-group-member';
      chip.dataset.unitId = unitId;
      chip.dataset.status = status;
      chip.title = `${unitId}: ${t('open_tile')}`;
      chip.append(text('span', 'chip-id', unitId), statusBadge(status));
      chip.addEventListener('click', () => this.onMember(unitId));
      head.append(chip);
    }
  }

  clear() {
    for (const group of this.groups.values()) group.element.remove();
    this.groups.clear();
  }
}

/** 合规, or 违规：<each rule broken now, with its unit>. */
function complianceBadge(compliance) {
  const badge = text('span', 'wall-group-compliance', '');
  badge.dataset.compliant = String(compliance.compliant);
  if (compliance.compliant) {
    badge.textContent = t('procedure.ok');
    badge.title = t('procedure.ok_title');
    return badge;
  }
  const what = compliance.open.map((b) => t(`procedure_rule.${b.rule}`) + (b.unit_id ? ` ${b.unit_id}` : ''));
  badge.textContent = t('procedure.broken', { what: [...new Set(what)].join('、') });
  badge.dataset.rules = [...new Set(compliance.open.map((b) => b.rule))].sort().join(' ');
  return badge;
}

function text(tag, className, content) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  node.textContent = content;
  return node;
}
