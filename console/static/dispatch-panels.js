/**
 * The dispatch side of the console: the right-hand tabs (Units / Actions /
 * Instructions / Alerts), and the wiring of the actions, instructions and
 * alerts to the HTTP API, the Socket.IO events and the video wall.
 *
 * The lists are loaded over HTTP when the `/console` link connects (and again
 * on every reconnect, to catch what was missed while it was down); after that
 * the `action_update`, `instruction_update` / `instruction_updates`, `alert`,
 * `alert_update` and `snapshot` (a still archived) events keep them current.
 */
import { ActionForm } from './action-form.js';
import { ActionBook } from './actions.js';
import { AlertCenter } from './alerts.js';
import { InstructionForm } from './instruction-form.js';
import { InstructionLog } from './instructions.js';
import { SideTabs } from './side-tabs.js';
import { StillGallery } from './stills.js';

const byId = (id) => /** @type {any} */ (document.getElementById(id));

export class DispatchPanels {
  /**
   * @param {{api: import('./api.js').ApiClient, wall: import('./video-wall.js').VideoWall,
   *   units: Map<string, import('./roster.js').Unit>, alarm: import('./alarm-sound.js').AlarmSound,
   *   canWrite: () => boolean}} ctx
   */
  constructor(ctx) {
    this.ctx = ctx;
    const { api, wall, units } = ctx;
    this.tabs = new SideTabs(byId('side-tabs'), byId('side-panels'));
    const openTile = (unitId) => wall.open(unitId);

    this.actions = new ActionBook({
      list: byId('actions-list'),
      empty: byId('actions-empty'),
      showEnded: byId('actions-show-ended'),
      count: byId('actions-count'),
    }, {
      move: (id, verb) => api.moveAction(id, verb),
      edit: (action) => this.actionForm.open(action),
      instruct: (action) => {
        this.tabs.show('instructions-panel');
        this.instructionForm.preset({ action: action.id });
      },
      openTile,
      units,
    });
    this.actionForm = new ActionForm({
      save: async (id, fields) => {
        const action = id ? await api.updateAction(id, fields) : await api.createAction(fields);
        this.actions.upsert(action);
        return action;
      },
      units,
    });
    byId('action-new').addEventListener('click', () => this.actionForm.open(null));
    this.actions.addEventListener('change', () => {
      wall.setActions(this.actions.actions);
      this.instructionForm.renderActions();
    });

    this.stills = new StillGallery(api);
    this.instructions = new InstructionLog({
      list: byId('instructions-list'),
      empty: byId('instructions-empty'),
      filter: byId('instructions-filter'),
    }, { openTile, stills: this.stills, cancel: (id) => api.cancelInstruction(id), canWrite: ctx.canWrite });
    this.instructionForm = new InstructionForm({
      send: async (body) => {
        const created = await api.sendInstruction(body);
        // The instruction_update events usually arrive first; fetch any that did not.
        for (const id of created.ids || [created.id]) {
          if (!this.instructions.instructions.has(id)) {
            api.getInstruction(id).then((ins) => this.instructions.upsert(ins)).catch(() => {});
          }
        }
        return created;
      },
      units,
      actions: this.actions.actions,
    });

    this.alerts = new AlertCenter({
      banner: byId('sos-banner'),
      list: byId('alerts-list'),
      empty: byId('alerts-empty'),
      showAcked: byId('alerts-show-acked'),
      tabCount: byId('alerts-count'),
      chip: byId('alert-chip'),
    }, {
      ack: (id) => api.ackAlert(id),
      openTile,
      fullTile: (unitId) => wall.enterFull(wall.open(unitId)),
      setAlarm: (unitId, on) => wall.setAlarm(unitId, on),
      showPanel: () => this.tabs.show('alerts-panel'),
      alarm: ctx.alarm,
      canAck: ctx.canWrite,
    });
  }

  /**
   * Load the three lists (on connect and reconnect). Failures other than a
   * 401 (which ends the session) are reported to the caller.
   */
  async refresh() {
    const [actions, instructions, openAlerts] = await Promise.all([
      this.ctx.api.listActions(),
      this.ctx.api.listInstructions(),
      this.ctx.api.listAlerts('open'),
    ]);
    this.actions.load(actions.actions || []);
    this.instructions.load(instructions.instructions || []);
    // The wall's compliance badges (流程预警) of the running actions; then kept by action_procedure.
    const running = (actions.actions || []).filter((a) => a.state === 'running');
    const compliance = await Promise.all(running.map((a) => this.ctx.api.actionProcedure(a.id).catch(() => null)));
    for (const c of compliance) if (c) this.ctx.wall.setCompliance(c);
    const open = openAlerts.alerts || [];
    this.alerts.load(open);
    // Open here but not on the server: acknowledged while this console was away.
    const stale = this.alerts.staleOpen(new Set(open.map((a) => a.id)));
    if (stale.length) this.alerts.load((await this.ctx.api.listAlerts(null)).alerts || []);
  }

  /** Subscribe to the dispatch events of the `/console` socket. */
  listen(socket) {
    socket.on('action_update', (action) => this.actions.upsert(action));
    socket.on('instruction_update', (ins) => this.instructions.upsert(ins));
    // Several changes within 50 ms (a broadcast to many units) come as one list.
    socket.on('instruction_updates', (payload) => {
      if (payload && Array.isArray(payload.instructions)) this.instructions.load(payload.instructions);
    });
    socket.on('snapshot', (still) => this.instructions.addStill(still));
    socket.on('alert', (alert) => this.alerts.upsert(alert));
    socket.on('alert_update', (alert) => this.alerts.upsert(alert));
    socket.on('action_procedure', (compliance) => this.ctx.wall.setCompliance(compliance));
  }

  /** The roster changed: refresh what shows units (team chips, pickers). */
  rosterChanged() {
    this.actions.refreshUnits();
    this.actionForm.renderUnits();
    this.instructionForm.renderUnits();
  }

  /** Once a second. */
  tick() {
    this.alerts.tick();
    this.instructions.tick();
  }

  /** Forget everything (logout). */
  clear() {
    this.actionForm.close();
    this.actions.clear();
    this.instructions.clear();
    this.stills.clear();
    this.alerts.clear();
  }
}
