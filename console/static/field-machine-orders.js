/**
 * Machine orders, carried out by the page itself and reported with what happened (the page's side
 * of field_client/machine_orders.py):
 *
 * - `record_start`: publish the camera over WHIP (the server records whatever a unit publishes);
 *   `done` with `{publishing: true}` once media flows, `refused` if there is no camera or the
 *   publish does not come up in time.
 * - `record_stop`: stop publishing; `done` with `{publishing: false}`. The camera stays open.
 * - `snapshot`: the camera's current picture as JPEG, uploaded to
 *   `POST /api/units/{unit}/snapshots?instruction=<id>&taken_at=<ISO>` (unit token; 201
 *   `{snapshot_id, sha256, bytes, ...}`); `done` with the id, hash and size, or `refused` with the
 *   server's message (e.g. a server without the endpoint answers 404).
 * - `callback`: the `/unit` event `callback {instruction_id}` (operators get `unit_callback` and
 *   listen to the unit's audio, so publishing is switched on if it was off); `done`.
 * - `end_action`: the unit's part of the action is over: stop publishing; `done`.
 *
 * `run()` never throws: it answers `{state, reason?, result?, outcome}` where `reason` (for the
 * command room, in both languages) and `outcome` (`{key, params?, detail?}`, for the card) say
 * what happened.
 */
import { CameraError } from './field-camera.js';
import { LinkDown } from './field-link.js';
import { wireText } from './field-texts.js';

const MEDIA_TIMEOUT_S = 30;

export class MachineOrders {
  /**
   * @param {{publisher: import('./field-publisher.js').FieldPublisher,
   *   camera: import('./field-camera.js').FieldCamera, link: import('./field-link.js').UnitLink,
   *   credentials: () => {unitId: string, token: string}}} context
   */
  constructor(context) {
    this.ctx = context;
  }

  /** @param {{id: string, type: string}} order */
  async run(order) {
    try {
      switch (order.type) {
        case 'record_start': return await this.recordStart();
        case 'record_stop': return this.stopPublishing('done_publishing_off', { publishing: false });
        case 'end_action': return this.stopPublishing('done_end_action', { publishing: false, ended: true });
        case 'snapshot': return await this.snapshot(order);
        case 'callback': return await this.callback(order);
        default: return refused('not_supported', order.type);
      }
    } catch (exc) {
      return refused(exc instanceof CameraError ? exc.key : 'not_supported', String(exc.detail || exc.message || exc));
    }
  }

  async recordStart() {
    const { camera, publisher } = this.ctx;
    if (!camera.isOpen) {
      try {
        await camera.open();
      } catch (exc) {
        return refused('no_camera', exc.detail || String(exc));
      }
    }
    publisher.publish();
    if (await publisher.waitLive(MEDIA_TIMEOUT_S * 1000)) {
      return done('done_publishing_on', { publishing: true });
    }
    const why = publisher.message && (publisher.message.detail || publisher.message.key);
    return refused('publish_did_not_start', why, { s: MEDIA_TIMEOUT_S });
  }

  stopPublishing(key, result) {
    this.ctx.publisher.unpublish({ key: 'msg_record_stopped' });
    return done(key, result);
  }

  async snapshot(order) {
    const { camera } = this.ctx;
    if (!camera.hasVideo) return refused('no_camera', 'no live video track');
    const takenAt = new Date().toISOString();
    const jpeg = await camera.jpeg();
    const { unitId, token } = this.ctx.credentials();
    const query = new URLSearchParams({ instruction: order.id, taken_at: takenAt });
    let response;
    try {
      response = await fetch(`/api/units/${encodeURIComponent(unitId)}/snapshots?${query}`, {
        method: 'POST',
        headers: { 'Content-Type': 'image/jpeg', Authorization: `Bearer ${token}` },
        body: jpeg,
      });
    } catch (exc) {
      return refused('snapshot_upload_failed', `cannot reach the server: ${exc.message || exc}`);
    }
    const body = await response.json().catch(() => ({}));
    if (response.status !== 201 && response.status !== 200) {
      const message = (body.error && body.error.message) || `HTTP ${response.status}`;
      return refused('snapshot_upload_failed', `${response.status} ${message}`);
    }
    const result = { snapshot_id: body.snapshot_id, sha256: body.sha256, bytes: body.bytes ?? jpeg.size };
    return done('done_snapshot', result, { kb: Math.max(1, Math.round((result.bytes || jpeg.size) / 1024)) });
  }

  async callback(order) {
    const { camera, publisher, link } = this.ctx;
    // Operators answer a call-back by listening to the unit's microphone: make sure it is on air.
    if (camera.isOpen && !publisher.running) publisher.publish();
    try {
      await link.call('callback', { instruction_id: order.id });
    } catch (exc) {
      return refused(exc instanceof LinkDown ? 'link_down' : 'callback_failed', exc.message);
    }
    return done('done_callback', { audio: camera.isOpen ? 'live' : 'none' });
  }
}

function done(key, result, params) {
  return { state: 'done', result, outcome: { key, params } };
}

function refused(key, detail, params) {
  const reason = detail ? `${wireText(key, params)}: ${detail}` : wireText(key, params);
  return { state: 'refused', reason, outcome: { key, params, detail } };
}
