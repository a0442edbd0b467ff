/**
 * Entry point of the operator console (`/`): login, the Socket.IO link to the
 * `/console` namespace, and the wiring of roster, video wall, patrol,
 * talk-back and the dispatch panels (actions, instructions, alerts).
 *
 * Test hook (read by the Playwright tests):
 *   window.dispatchConsole = {
 *     tiles: Map(unitId -> VideoTile {pc, video, state, alarm, ...}),
 *     roster: Map(unitId -> unit),
 *     patrol: Patrol {current: unitId | null, active: boolean, paused: boolean, ...},
 *     async stats(unitId) -> {framesDecoded, bytesReceived, ...},
 *     connection: "idle" | "connecting" | "connected" | "disconnected" | "error",
 *     actions: Map(actionId -> action),
 *     instructions: Map(instructionId -> instruction),
 *     alerts: Map(alertId -> alert),
 *     talk: TalkBack {unitId, state: "idle" | "connecting" | "live" | "error", error, pc, location},
 *     alarm: AlarmSound {sounding: boolean, beeps: number},
 *     map: {leaflet: L.Map | null, markers: Map(unitId -> {marker, latlng: [lat, lon] as displayed,
 *       track: [[lat, lon], ...]}), areas: Map(actionId -> layer), dispatchAt(lat, lon), fit()},
 *     requests: {requests: Map(requestId -> footage request), open(id), refresh(), regions()},
 *     statistics: {data, charts: Map(view -> ECharts instance), load(), drill(figure, key)} (stats.js),
 *     playback: {open(recordingId), state() -> {recording, segment, time, gaps, position, ...}, seek(t), close()},
 *     admin: {show(tab), units(), users()},
 *     layout: the wall layout ("auto" | 1 | 4 | 9 | 16),
 *     permissions: Set of the person's permissions (GET /api/me),
 *     socket: the Socket.IO client of the /console link,
 *   }
 *
 * Language: every text comes from console-texts.js (Chinese, or English after the switch,
 * which reloads the page). Roles: the person's permissions decide what shows (`data-perm`,
 * `data-perm-any`); the server still checks every call.
 */
import { AdminView } from './admin.js';
import { AlarmSound } from './alarm-sound.js';
import { ApiClient, ApiError } from './api.js';
import { Backoff } from './backoff.js';
import { applyTexts, errorText, formatClock, language, setLanguage, setTimeZone, t } from './console-texts.js';
import { DispatchPanels } from './dispatch-panels.js';
import { UnitMap } from './map.js';
import { Patrol } from './patrol.js';
import { Playback } from './playback.js';
import { RequestsPanel } from './requests.js';
import { RosterTable, parseUnit } from './roster.js';
import { StatsPanel } from './stats.js';
import { TalkBack } from './talk-back.js';
import { VideoWall } from './video-wall.js';

/** Connect-time refusals after which the token is no good: back to the login form. */
const SESSION_ERRORS = new Set(['unauthorized', 'bad_token', 'session_expired']);
/** A link down this long before the console dims (a blip of a reconnect is not worth a banner). */
const LINK_DOWN_GRACE_MS = 1500;
/** The session is re-checked at least this often, so a revoked token ends an idle console too. */
const SESSION_CHECK_MS = 5 * 60 * 1000;
const LONGEST_TIMER_MS = 2 ** 31 - 1;

const byId = (id) => /** @type {HTMLElement} */ (document.getElementById(id));

class ConsoleApp {
  constructor() {
    applyTexts(document);
    this.api = new ApiClient((message) => this.showLogin(message));
    /** @type {Set<string>} */
    this.permissions = new Set();
    this.linkDownTimer = null;
    /** @type {{patrol_interval_s: number, ice_servers: RTCIceServer[], map?: object}} */
    this.config = { patrol_interval_s: 10, ice_servers: [] };
    this.socket = null;
    this.socketBackoff = new Backoff({ baseMs: 1000, capMs: 20000 });
    this.socketRetryTimer = null;
    this.connection = 'idle';
    this.ticker = null;
    this.expiryTimer = null;
    this.running = false;
    this.restarting = false;  // the server announced a planned restart (server_restarting)
    this.rosterTimer = null;
    this.dispatchRetryTimer = null;
    this.alarm = new AlarmSound();
    this.talk = new TalkBack({
      getToken: () => this.api.token,
      getIceServers: () => this.config.ice_servers,
      onUnauthorized: (message) => this.api.unauthorized(message),
    });

    this.roster = new RosterTable({
      body: /** @type {HTMLTableSectionElement} */ (byId('roster-body')),
      summary: byId('roster-summary'),
      filter: /** @type {HTMLInputElement} */ (byId('roster-filter')),
      empty: byId('roster-empty'),
    }, (unitId) => this.wall.focus(unitId));
    this.wall = new VideoWall({
      grid: byId('video-wall'),
      empty: byId('wall-empty'),
      count: byId('wall-count'),
    }, {
      getToken: () => this.api.token,
      getIceServers: () => this.config.ice_servers,
      onUnauthorized: (message) => this.api.unauthorized(message),
      units: this.roster.units,
      createTalkControl: (unitId) => this.talk.createControl(unitId),
      canWatch: () => this.can('live.watch'),
    });
    this.patrol = new Patrol({
      panel: byId('patrol-panel'),
      video: /** @type {HTMLVideoElement} */ (byId('patrol-video')),
      name: byId('patrol-name'),
      kind: byId('patrol-kind'),
      position: byId('patrol-position'),
      countdown: byId('patrol-countdown'),
      overlay: byId('patrol-overlay'),
      toggle: /** @type {HTMLButtonElement} */ (byId('patrol-toggle')),
      prev: /** @type {HTMLButtonElement} */ (byId('patrol-prev')),
      pause: /** @type {HTMLButtonElement} */ (byId('patrol-pause')),
      next: /** @type {HTMLButtonElement} */ (byId('patrol-next')),
    }, this.wall, this.roster.units);
    this.dispatch = new DispatchPanels({
      api: this.api,
      wall: this.wall,
      units: this.roster.units,
      alarm: this.alarm,
      canWrite: () => this.can('dispatch.write'),
    });

    this.map = new UnitMap({
      container: byId('map'),
      status: byId('map-status'),
      fit: /** @type {HTMLButtonElement} */ (byId('map-fit')),
      wide: /** @type {HTMLButtonElement} */ (byId('map-wide')),
    }, {
      api: this.api,
      openTile: (unitId) => this.wall.open(unitId),
      units: this.roster.units,
      canWrite: () => this.can('dispatch.write'),
    });
    this.playback = new Playback({ panel: byId('recordings-panel'), view: byId('playback-view') },
      { api: this.api, map: this.map });
    this.requests = new RequestsPanel(byId('requests-panel'), { api: this.api });
    this.statistics = new StatsPanel(byId('stats-panel'), { api: this.api });
    this.admin = new AdminView({ view: byId('admin-view'), body: byId('admin-body'), tabs: byId('admin-tabs') },
      { api: this.api, can: (p) => this.can(p), me: () => this.api.session?.username || '',
        config: () => this.config });
    byId('admin-toggle').addEventListener('click', () => this.toggleAdmin());
    byId('admin-back').addEventListener('click', () => this.toggleAdmin(false));
    for (const button of document.querySelectorAll('.lang-btn')) {
      button.addEventListener('click', () => {
        setLanguage(language() === 'zh' ? 'en' : 'zh');
        window.location.reload();
      });
    }
    byId('help-btn').addEventListener('click', () => this.showHelp());
    byId('side-toggle').addEventListener('click', () => this.toggleSide());
    this.dispatch.actions.addEventListener('change', () => this.map.setActions(this.dispatch.actions.actions));
    byId('side-panels').addEventListener('panelchange', (event) => {
      if (/** @type {CustomEvent} */ (event).detail.panel === 'map-panel') this.map.shown();
      if (/** @type {CustomEvent} */ (event).detail.panel === 'recordings-panel') this.playback.shown();
      if (/** @type {CustomEvent} */ (event).detail.panel === 'requests-panel') this.requests.refresh();
      if (/** @type {CustomEvent} */ (event).detail.panel === 'stats-panel') this.statistics.shown();
    });

    const app = this;
    window.dispatchConsole = {
      tiles: this.wall.tiles,
      roster: this.roster.units,
      patrol: this.patrol,
      stats: (unitId) => this.wall.stats(unitId),
      get connection() {
        return app.connection;
      },
      actions: this.dispatch.actions.actions,
      instructions: this.dispatch.instructions.instructions,
      alerts: this.dispatch.alerts.alerts,
      talk: this.talk,
      alarm: this.alarm,
      map: this.map.hook,
      playback: this.playback.hook,
      requests: this.requests.hook,
      statistics: this.statistics.hook,
      admin: this.admin.hook,
      get layout() {
        return app.wall.layout;
      },
      get permissions() {
        return app.permissions;
      },
      get socket() {
        return app.socket;
      },
    };

    byId('login-form').addEventListener('submit', (event) => {
      event.preventDefault();
      this.login();
    });
    byId('logout-btn').addEventListener('click', () => this.logout());
    byId('wall-clear').addEventListener('click', () => this.wall.removeOffline());
    window.addEventListener('pagehide', () => {
      this.talk.stop();
      this.wall.closeForUnload();
    });
    // Browsers start audio only after a user gesture: the SOS alarm is readied by the first one.
    for (const type of ['pointerdown', 'keydown']) {
      document.addEventListener(type, () => this.alarm.unlock(), { capture: true, passive: true });
    }
    // Back from the back/forward cache, the viewers closed at pagehide are gone: start afresh.
    window.addEventListener('pageshow', (event) => {
      if (event.persisted) window.location.reload();
    });
    document.addEventListener('keydown', (event) => this.onKey(event));
  }

  /** Resume a stored session if the server still accepts it, else show the login form. */
  async boot() {
    if (!this.api.session) {
      this.showLogin('');
      return;
    }
    try {
      const me = await this.api.me();
      Object.assign(this.api.session, me);
      await this.start();
    } catch (exc) {
      // A 401 has already brought up the login form with the server's message.
      if (!(exc instanceof ApiError && exc.status === 401)) this.showLogin(errorText(exc));
    }
  }

  async login() {
    const username = /** @type {HTMLInputElement} */ (byId('login-username')).value.trim();
    const password = /** @type {HTMLInputElement} */ (byId('login-password')).value;
    const submit = /** @type {HTMLButtonElement} */ (byId('login-submit'));
    submit.disabled = true;
    this.setLoginError('');
    try {
      await this.api.login(username, password);
      /** @type {HTMLInputElement} */ (byId('login-password')).value = '';
      await this.start();
    } catch (exc) {
      this.setLoginError(errorText(exc));
    } finally {
      submit.disabled = false;
    }
  }

  async logout() {
    this.stop();
    await this.api.logout();
    this.showLogin('');
  }

  async start() {
    this.config = { ...this.config, ...(await this.api.consoleConfig()) };
    if (!Array.isArray(this.config.ice_servers)) this.config.ice_servers = [];
    if (typeof this.config.time_zone === 'string') setTimeZone(this.config.time_zone);
    if (!Array.isArray(this.api.session.permissions)) Object.assign(this.api.session, await this.api.me());
    this.patrol.setInterval(this.config.patrol_interval_s);
    this.map.configure(this.config.map);
    const session = this.api.session;
    byId('user-name').textContent = session.username;
    byId('user-role').textContent = t(`role.${session.role}`);
    byId('user-role').dataset.role = session.role;
    this.applyPermissions(session.permissions);
    byId('login-view').hidden = true;
    byId('app').hidden = false;
    this.running = true;
    this.connectSocket();
    this.ticker = setInterval(() => this.tick(), 1000);
    this.tick();
    this.armExpiry();
  }

  /** Tear down everything that belongs to a logged-in session. Idempotent. */
  stop() {
    this.running = false;
    clearInterval(this.ticker);
    this.ticker = null;
    clearTimeout(this.expiryTimer);
    clearTimeout(this.socketRetryTimer);
    if (this.socket) {
      this.socket.removeAllListeners();
      this.socket.io.removeAllListeners();
      this.socket.disconnect();
      this.socket = null;
    }
    this.setConnection('idle', '');
    this.setLinkDown(false);
    this.toggleAdmin(false);
    clearTimeout(this.rosterTimer);
    this.rosterTimer = null;
    clearTimeout(this.dispatchRetryTimer);
    this.talk.stop();
    this.patrol.stop();
    this.dispatch.clear();
    this.alarm.stop();
    this.wall.clear();
    this.roster.clear();
    this.map.clear();
    this.playback.clear();
  }

  /** @param {string} message shown above the form (why the operator is here) */
  showLogin(message) {
    this.stop();
    byId('app').hidden = true;
    byId('login-view').hidden = false;
    this.setLoginError(message);
    /** @type {HTMLInputElement} */ (byId('login-username')).focus();
  }

  setLoginError(message) {
    const el = byId('login-error');
    el.textContent = message;
    el.hidden = !message;
  }

  connectSocket() {
    if (typeof window.io !== 'function') {
      this.setConnection('error', t('conn_no_client'));
      return;
    }
    const socket = window.io('/console', {
      auth: { token: this.api.token },
      transports: ['websocket'],
    });
    this.socket = socket;
    this.setConnection('connecting', '');

    let everConnected = false;
    socket.on('connect', () => {
      this.socketBackoff.reset();
      this.restarting = false;
      this.setConnection('connected', '');
      if (everConnected) this.wall.revalidate();
      everConnected = true;
      this.refreshDispatch();
    });
    socket.on('server_restarting', (notice) => {
      // A planned restart: say so instead of "reconnecting", and come back by ourselves.
      this.restarting = true;
      this.setConnection('restarting', (notice && notice.message) || '');
    });
    socket.on('disconnect', (reason) => {
      this.setConnection(this.restarting ? 'restarting' : 'disconnected', reason);
      // A server-side disconnect is not retried by the client library itself.
      if (reason === 'io server disconnect') this.retrySocket();
    });
    socket.on('connect_error', (error) => this.onConnectError(error));
    socket.io.on('reconnect_attempt', () => this.setConnection('connecting', ''));

    socket.on('roster', (payload) => {
      const raws = payload && Array.isArray(payload.units) ? payload.units : [];
      const units = raws.map(parseUnit).filter(Boolean);
      this.roster.replace(units);
      this.wall.replace(units);
      this.map.replace(units, raws);
      this.patrol.refresh();
      this.rosterChanged();
    });
    socket.on('unit_status', (payload) => {
      const unit = parseUnit(payload);
      if (!unit) return;
      this.roster.update(unit);
      this.wall.sync(unit);
      this.map.update(unit, payload);
      this.patrol.refresh();
      this.rosterChanged();
    });
    // Fixes arrive as one list of moved units every ~100 ms (docs/api.md, "Geo").
    socket.on('unit_positions', (payload) => this.onPositions(payload));
    socket.on('footage_request', (payload) => this.requests.update(payload));
    this.dispatch.listen(socket);
    socket.on('viewer_closed', (payload) => {
      if (payload && typeof payload.unit_id === 'string') this.wall.viewerClosed(payload);
    });
  }

  /** Load actions, instructions and open alerts (on every connect: events may have been missed). */
  async refreshDispatch() {
    clearTimeout(this.dispatchRetryTimer);
    try {
      await this.dispatch.refresh();
    } catch (exc) {
      // A 401 has already ended the session; anything else: the events still arrive, retry soon.
      if (this.running && !(exc instanceof ApiError && exc.status === 401)) {
        console.warn('dispatch lists could not be loaded:', exc.message || exc);
        this.dispatchRetryTimer = setTimeout(() => {
          if (this.running && this.connection === 'connected') this.refreshDispatch();
        }, 5000);
      }
    }
  }

  /**
   * A `unit_positions` event: each item carries the fields of a unit's view that a new fix
   * changes (position, last_seen, fix_age_s, stale); the rest stays as the roster knows it.
   * A unit not in the roster yet is skipped: its `unit_status` brings all of it.
   * @param {{units?: object[]}} payload
   */
  onPositions(payload) {
    const items = payload && Array.isArray(payload.units) ? payload.units : [];
    let changed = false;
    for (const item of items) {
      const known = item && typeof item.id === 'string' ? this.roster.units.get(item.id) : null;
      if (!known) continue;
      const raw = { ...known, ...item };
      const unit = parseUnit(raw);
      if (!unit) continue;
      this.roster.update(unit);
      this.wall.sync(unit);
      this.map.update(unit, raw, false);
      changed = true;
    }
    if (!changed) return;
    this.map.afterChange();
    this.patrol.refresh();
    this.rosterChanged();
  }

  /** The roster changed: the pickers and team chips follow, at most a few times a second. */
  rosterChanged() {
    if (this.rosterTimer) return;
    this.rosterTimer = setTimeout(() => {
      this.rosterTimer = null;
      if (this.running) this.dispatch.rosterChanged();
    }, 250);
  }

  /** @param {Error & {data?: {code?: string, message?: string}}} error */
  onConnectError(error) {
    const data = error && error.data && typeof error.data === 'object' ? error.data : {};
    const message = data.code ? errorText(data) : errorText(error);
    if (data.code && SESSION_ERRORS.has(data.code)) {
      this.api.unauthorized(message);
      return;
    }
    if (data.code === 'forbidden') {
      this.setConnection('error', message);
      return;
    }
    this.setConnection('disconnected', message);
    // The library retries transport failures itself; a refusal by the server it does not.
    if (this.socket && !this.socket.active) this.retrySocket();
  }

  retrySocket() {
    clearTimeout(this.socketRetryTimer);
    this.socketRetryTimer = setTimeout(() => {
      if (this.running && this.socket && !this.socket.connected) this.socket.connect();
    }, this.socketBackoff.next());
  }

  /** @param {'idle' | 'connecting' | 'connected' | 'disconnected' | 'restarting' | 'error'} state */
  setConnection(state, detail) {
    this.connection = state;
    const el = byId('conn-state');
    el.dataset.state = state;
    el.querySelector('.conn-label').textContent = t(`conn_${state}`);
    el.title = detail || '';
    byId('roster-area').dataset.stale = String(state !== 'connected');
    // The console's own link is down: say so once, for the whole console (not per tile).
    clearTimeout(this.linkDownTimer);
    if (state === 'connected' || state === 'idle') {
      this.setLinkDown(false);
    } else if (this.running) {
      this.linkDownTimer = setTimeout(() => this.setLinkDown(true), LINK_DOWN_GRACE_MS);
    }
  }

  /** @param {boolean} down whether the console cannot reach the server now */
  setLinkDown(down) {
    byId('app').dataset.link = down ? 'down' : 'up';
    const banner = byId('link-banner');
    banner.hidden = !down;
    // A planned restart (server_restarting) reads as such, not as a lost link.
    const restarting = this.connection === 'restarting';
    banner.dataset.reason = restarting ? 'restarting' : 'down';
    banner.querySelector('strong').textContent = t(restarting ? 'link_restarting_title' : 'link_down_title');
    banner.querySelector('span').textContent = t(restarting ? 'link_restarting_body' : 'link_down_body');
    this.wall.setLinkDown(down);
  }

  /** @param {string} permission @returns {boolean} */
  can(permission) {
    return this.permissions.has(permission);
  }

  /** Show only what the person may use: `data-perm="p"`, `data-perm-any="p q"`. */
  applyPermissions(list) {
    this.permissions = new Set(Array.isArray(list) ? list : []);
    for (const node of document.querySelectorAll('[data-perm]')) {
      node.hidden = !this.can(node.dataset.perm);
    }
    for (const node of document.querySelectorAll('[data-perm-any]')) {
      node.hidden = !node.dataset.permAny.split(/\s+/).some((p) => this.can(p));
    }
    byId('app').dataset.canWrite = String(this.can('dispatch.write'));
    byId('app').dataset.canReport = String(this.can('reports.read'));
    this.dispatch.tabs.refresh();
    this.admin.refreshTabs();
  }

  /** @param {boolean} [show] the administration screens instead of the dispatch workspace */
  toggleAdmin(show) {
    const open = show === undefined ? byId('admin-view').hidden : show;
    byId('admin-view').hidden = !open;
    byId('workspace').hidden = open;
    byId('admin-toggle').setAttribute('aria-pressed', String(open));
    if (open) this.admin.shown();
  }

  toggleSide() {
    const ws = byId('workspace');
    const collapsed = ws.dataset.side !== 'collapsed';
    ws.dataset.side = collapsed ? 'collapsed' : 'open';
    const button = byId('side-toggle');
    button.setAttribute('aria-pressed', String(collapsed));
    button.textContent = collapsed ? '⇤' : '⇥';
    button.title = t(collapsed ? 'side_expand' : 'side_collapse');
    this.wall.relayout();
  }

  showHelp() {
    const dialog = /** @type {HTMLDialogElement} */ (byId('help-dialog'));
    if (!dialog.open) dialog.showModal();
  }

  /** Keyboard shortcuts (listed in the help overlay). Not while typing in a field. */
  onKey(event) {
    const target = event.target;
    if (target instanceof HTMLInputElement || target instanceof HTMLTextAreaElement ||
      target instanceof HTMLSelectElement || event.ctrlKey || event.metaKey || event.altKey) return;
    if (!this.running || !byId('admin-view').hidden) return;
    const layouts = { 0: 'auto', 1: 1, 2: 4, 3: 9, 4: 16 };
    if (event.key in layouts) {
      this.wall.setLayout(layouts[event.key]);
    } else if (event.key === 'p' || event.key === 'P') {
      if (this.can('live.watch')) byId('patrol-toggle').click();
    } else if (event.key === 's' || event.key === 'S') {
      this.toggleSide();
    } else if (event.key === '?') {
      this.showHelp();
    } else if (this.patrol.active && event.key === 'ArrowRight') {
      this.patrol.next();
    } else if (this.patrol.active && event.key === 'ArrowLeft') {
      this.patrol.prev();
    } else if (this.patrol.active && event.key === ' ') {
      event.preventDefault();
      if (this.patrol.paused) this.patrol.resume();
      else this.patrol.pause();
    } else {
      return;
    }
  }

  /** Once a second: relative times, the wall's stats and the clock. */
  tick() {
    this.roster.tick();
    this.wall.tick();
    this.dispatch.tick();
    this.map.tick();
    byId('clock').textContent = formatClock(Date.now());
  }

  /**
   * Check the session when it is due to expire (and every SESSION_CHECK_MS), so an idle
   * console whose session expired or was revoked returns to the login form.
   */
  armExpiry() {
    clearTimeout(this.expiryTimer);
    const expires = Date.parse(this.api.session?.expires_at || '');
    const untilExpiry = Number.isNaN(expires) ? LONGEST_TIMER_MS : expires - Date.now() + 1000;
    const delay = Math.min(SESSION_CHECK_MS, Math.max(1000, untilExpiry));
    this.expiryTimer = setTimeout(async () => {
      try {
        const me = await this.api.me();
        if (this.api.session) Object.assign(this.api.session, me);
        this.armExpiry();
      } catch (exc) {
        // A 401 has already ended the session; anything else: ask again later.
        if (this.running) this.expiryTimer = setTimeout(() => this.armExpiry(), 30000);
      }
    }, delay);
  }
}

new ConsoleApp().boot();
