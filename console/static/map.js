/**
 * The map panel (地图): every unit with a position as a marker coloured by its
 * status, a short track tail per unit, the areas of running enforcement
 * actions, and "dispatch here" (派往此处) — the nearest available units to a
 * point, and a `goto` instruction to the one the operator picks.
 *
 * Drawn with Leaflet (`window.L`, the UMD build at /vendor/leaflet/leaflet.js,
 * loaded by a classic script before the modules). Base tiles come only from
 * `map.tile_url` of `GET /api/console-config`; without one there is no tile
 * layer at all (a plain dark background and a coordinate grid) and the map
 * requests nothing. With `map.tile_crs` = "gcj02" every WGS-84 coordinate is
 * shifted to GCJ-02 for display (gcj02.js), and a point picked on the map is
 * shifted back before it is sent: the server speaks WGS-84 only.
 *
 * Test hook `dispatchConsole.map = {leaflet: L.Map | null, markers: Map(unitId ->
 * {marker, latlng: [lat, lon] as displayed, track: [[lat, lon], ...] as displayed,
 * status, ...}), areas: Map(actionId -> layer), dispatchAt(lat, lon), fit()}`.
 * Marker elements: `.map-unit[data-unit-id][data-status]` with `data-status` =
 * `publishing` | `online` | `offline` | `stale`.
 */
import { datum } from './gcj02.js';
import { errorText, formatAgo, t } from './console-texts.js';
import { el, formatClock, labelElement } from './labels.js';
import { kindLabel, unitStatus } from './roster.js';

/** Positions kept per unit for its track tail. */
export const TRACK_POINTS = 60;
/** A fix older than this is stale (the server's default `geo.stale_after_s`) unless the server says so first. */
const STALE_AFTER_S = 30;  // used until /api/console-config says otherwise (map.stale_after_s)
const NEAREST_K = 5;
const DEFAULT_VIEW = { center: [35.0, 105.0], zoom: 4 };
const MAX_ZOOM = 19;
/** Fitting to the units never zooms in closer than this (one unit would fill the screen). */
const FIT_MAX_ZOOM = 16;
const EARTH_RADIUS_M = 6371008.8;

export const MAP_STATUS = {
  publishing: t('status.publishing'),
  online: t('status.online'),
  offline: t('status.offline'),
  stale: t('status.stale'),
};
const COLORS = { publishing: '#2ecc71', online: '#3b8eea', offline: '#7d8a9c', stale: '#f0ad3c' };
const Z_ORDER = { publishing: 300, online: 200, stale: 100, offline: 0 };
const AREA_COLOR = '#e58e26';
/** Grid spacings in degrees, for the plain background without tiles. */
const GRID_STEPS = [20, 10, 5, 2, 1, 0.5, 0.2, 0.1, 0.05, 0.02, 0.01, 0.005, 0.002, 0.001, 0.0005, 0.0002, 0.0001];

/**
 * The status a unit's marker shows: stale when it is on line but its last fix is old.
 * @param {import('./roster.js').Unit} unit @param {boolean} stale
 * @returns {'publishing' | 'online' | 'offline' | 'stale'}
 */
export function markerStatus(unit, stale) {
  const status = unitStatus(unit);
  return status !== 'offline' && stale ? 'stale' : status;
}

/** Great-circle distance in metres (haversine, WGS-84 mean radius, as the server's geo.distance). */
export function distanceM(lat1, lon1, lat2, lon2) {
  const rad = Math.PI / 180;
  const sLat = Math.sin(((lat2 - lat1) * rad) / 2);
  const sLon = Math.sin(((lon2 - lon1) * rad) / 2);
  const a = Math.min(1, Math.max(0, sLat * sLat + Math.cos(lat1 * rad) * Math.cos(lat2 * rad) * sLon * sLon));
  return 2 * EARTH_RADIUS_M * Math.atan2(Math.sqrt(a), Math.sqrt(1 - a));
}

/** "850 m", "1.24 km", "36 km" */
export function formatDistance(metres) {
  if (!Number.isFinite(metres)) return '—';
  if (metres < 1000) return t('map_distance_m', { n: Math.round(metres) });
  return t('map_distance_km', { n: metres < 10000 ? (metres / 1000).toFixed(2) : Math.round(metres / 1000) });
}

/** "12 秒前" for an age in seconds. */
function ageText(seconds) {
  return Number.isFinite(seconds) ? formatAgo(Date.now() - seconds * 1000) : '—';
}

/** Epoch ms of a fix time (ISO text or epoch seconds), NaN when unknown. */
function fixTimeMs(ts) {
  if (typeof ts === 'number') return ts * 1000;
  if (typeof ts === 'string') return Date.parse(ts);
  return NaN;
}

function fixIso(ts) {
  const ms = fixTimeMs(ts);
  return Number.isNaN(ms) ? null : new Date(ms).toISOString();
}

const latLonText = (lat, lon) => `${lat.toFixed(5)}, ${lon.toFixed(5)}`;

/**
 * The map's configuration from `GET /api/console-config` (`map`), checked.
 * @returns {{tileUrl: string, crs: 'wgs84' | 'gcj02', center: [number, number] | null, zoom: number | null,
 *   attribution: string, staleAfterS: number}}
 */
export function parseMapConfig(raw) {
  const m = raw && typeof raw === 'object' ? raw : {};
  const center = Array.isArray(m.center) && m.center.length === 2 && m.center.every(Number.isFinite) &&
    Math.abs(m.center[0]) <= 90 && Math.abs(m.center[1]) <= 180 ? [m.center[0], m.center[1]] : null;
  return {
    tileUrl: typeof m.tile_url === 'string' ? m.tile_url.trim() : '',
    crs: m.tile_crs === 'gcj02' ? 'gcj02' : 'wgs84',
    center,
    zoom: Number.isFinite(m.zoom) ? Math.min(MAX_ZOOM, Math.max(0, m.zoom)) : null,
    attribution: typeof m.attribution === 'string' ? m.attribution : '',
    staleAfterS: Number.isFinite(m.stale_after_s) && m.stale_after_s > 0 ? m.stale_after_s : STALE_AFTER_S,
  };
}

export class UnitMap {
  /**
   * @param {{container: HTMLElement, status: HTMLElement, fit: HTMLButtonElement, wide: HTMLButtonElement}} elements
   * @param {{api: import('./api.js').ApiClient, openTile: (unitId: string) => void,
   *   units: Map<string, import('./roster.js').Unit>, canWrite: () => boolean}} ctx
   */
  constructor(elements, ctx) {
    this.el = elements;
    this.ctx = ctx;
    this.config = parseMapConfig(null);
    this.datum = datum(this.config.crs);
    /**
     * @type {Map<string, {id: string, marker: any, line: any, body: HTMLElement, latlng: [number, number],
     *   track: [number, number][], wgs: [number, number][], key: string, status: string, unit: object,
     *   fixAgeS: number | null, fixAgeAt: number, serverStale: boolean, tipText: string,
     *   popupBox: HTMLElement | null}>}
     */
    this.markers = new Map();
    /** @type {Map<string, any>} actionId -> area layer */
    this.areas = new Map();
    /** @type {Map<string, object>} running actions with an area, as last given */
    this.actions = new Map();
    /** Follow the units with the view until the operator moves the map himself. */
    this.autoFit = true;
    this.fitted = false;
    this.pendingFit = false;
    this.tiles = null;
    this.popupOpen = false;
    this.clickClosesPopup = false;

    this.L = window.L;
    this.map = null;
    if (!this.L || typeof this.L.map !== 'function') {
      this.setStatus(t('map_missing'), 'error');
    } else {
      this.createMap();
    }
    const self = this;
    /** The test hook `dispatchConsole.map`. */
    this.hook = {
      get leaflet() { return self.map; },
      markers: this.markers,
      areas: this.areas,
      get crs() { return self.config.crs; },
      dispatchAt: (lat, lon) => self.openDispatch(self.toDisplay(lat, lon), true),
      fit: () => self.fitAll(true),
    };
    this.el.fit.addEventListener('click', () => this.fitAll(true));
    // Wide: the side column takes half the screen, the wall the rest (the ResizeObserver redraws).
    this.el.wide.addEventListener('click', () => {
      const workspace = this.el.container.closest('.workspace');
      const wide = workspace ? workspace.classList.toggle('workspace--wide-map') : false;
      this.el.wide.setAttribute('aria-pressed', String(wide));
    });
  }

  createMap() {
    const { L } = this;
    const map = L.map(this.el.container, {
      center: DEFAULT_VIEW.center,
      zoom: DEFAULT_VIEW.zoom,
      minZoom: 2,
      maxZoom: MAX_ZOOM,
      attributionControl: false,
      worldCopyJump: true,
      preferCanvas: false,
    });
    this.map = map;
    L.control.scale({ imperial: false, position: 'bottomleft' }).addTo(map);
    this.gridLayer = L.layerGroup().addTo(map);
    this.areaLayer = L.layerGroup().addTo(map);
    this.trackLayer = L.layerGroup().addTo(map);
    this.unitLayer = L.layerGroup().addTo(map);
    map.on('moveend', () => this.drawGrid());
    map.on('contextmenu', (e) => this.openDispatch([e.latlng.lat, e.latlng.lng], true));
    // A click on the map closes an open popup; only a click on the bare map offers "dispatch here".
    map.on('popupopen', () => { this.popupOpen = true; });
    map.on('popupclose', () => { this.popupOpen = false; });
    map.on('preclick', () => { this.clickClosesPopup = this.popupOpen; });
    map.on('click', (e) => {
      if (!this.clickClosesPopup) this.openDispatch([e.latlng.lat, e.latlng.lng], false);
    });
    // The operator pans or zooms: stop following the units (the fit button follows again).
    const container = this.el.container;
    for (const type of ['mousedown', 'wheel', 'touchstart', 'keydown']) {
      container.addEventListener(type, () => { this.autoFit = false; }, { passive: true });
    }
    // The panel starts inside the hidden app, and the column can be widened: keep Leaflet's size current.
    new ResizeObserver(() => this.resized()).observe(container);
    this.drawGrid();
  }

  // ---------- configuration ----------

  /** Apply `map` of the console configuration (after every login). */
  configure(raw) {
    const config = parseMapConfig(raw);
    const crsChanged = config.crs !== this.config.crs;
    this.config = config;
    this.datum = datum(config.crs);
    if (!this.map) return;
    const { L } = this;
    if (this.tiles) {
      this.tiles.remove();
      this.tiles = null;
    }
    if (this.attribution) {
      this.attribution.remove();
      this.attribution = null;
    }
    if (config.tileUrl) {
      this.tiles = L.tileLayer(config.tileUrl, { maxZoom: MAX_ZOOM, maxNativeZoom: 18 }).addTo(this.map);
      if (config.attribution) {
        this.attribution = L.control.attribution({ prefix: false }).addAttribution(config.attribution).addTo(this.map);
      }
    }
    this.el.container.dataset.tiles = config.tileUrl ? 'true' : 'false';
    this.el.container.dataset.crs = config.crs;
    if (crsChanged) this.reproject();
    this.drawGrid();
    if (config.center) this.map.setView(this.toDisplay(...config.center), config.zoom ?? 13);
    else if (config.zoom !== null) this.map.setZoom(config.zoom);
    // With a base map and a configured view, the operator's view stays; otherwise follow the units.
    this.autoFit = !(config.tileUrl && config.center);
    this.fitted = false;
    if (this.autoFit) this.fitAll(false);
    this.renderStatus();
  }

  /** @returns {[number, number]} displayed [lat, lon] of a WGS-84 position */
  toDisplay(lat, lon) {
    return this.datum.toDisplay(lat, lon);
  }

  /** @returns {[number, number]} WGS-84 [lat, lon] of a displayed position */
  fromDisplay(lat, lon) {
    return this.datum.fromDisplay(lat, lon);
  }

  /** The datum changed: move everything drawn from WGS-84. */
  reproject() {
    for (const entry of this.markers.values()) {
      entry.track = entry.wgs.map(([lat, lon]) => this.toDisplay(lat, lon));
      entry.latlng = entry.track[entry.track.length - 1];
      entry.marker.setLatLng(entry.latlng);
      entry.line.setLatLngs(entry.track);
    }
    this.drawAreas();
  }

  // ---------- units ----------

  /**
   * The `roster` event: units absent from it lose their marker.
   * @param {import('./roster.js').Unit[]} units @param {object[]} raws the payload's objects
   */
  replace(units, raws) {
    const rawById = new Map(raws.filter((r) => r && typeof r.id === 'string').map((r) => [r.id, r]));
    const keep = new Set(units.map((u) => u.id));
    for (const id of [...this.markers.keys()]) if (!keep.has(id)) this.remove(id);
    for (const unit of units) this.update(unit, rawById.get(unit.id), false);
    this.afterChange();
  }

  /**
   * One unit (a `unit_status` event, an item of `unit_positions` merged into the unit, or one of the roster).
   * @param {import('./roster.js').Unit} unit parsed by roster.parseUnit
   * @param {object} [raw] the server's object, for `stale` and `fix_age_s` (parseUnit keeps neither)
   */
  update(unit, raw = {}, single = true) {
    if (!this.map) return;
    const pos = unit.position;
    let entry = this.markers.get(unit.id);
    if (!pos) {
      // No fix ever (or forgotten): nothing to draw; a known marker keeps its last place but follows the status.
      if (entry) {
        entry.unit = unit;
        this.paint(entry);
      }
      return;
    }
    if (!entry) {
      entry = this.createEntry(unit.id);
      this.markers.set(unit.id, entry);
    }
    entry.unit = unit;
    const key = `${pos.lat},${pos.lon},${pos.ts ?? ''}`;
    if (key !== entry.key) {
      entry.key = key;
      entry.wgs.push([pos.lat, pos.lon]);
      if (entry.wgs.length > TRACK_POINTS) entry.wgs.splice(0, entry.wgs.length - TRACK_POINTS);
      const shown = this.toDisplay(pos.lat, pos.lon);
      entry.track.push(shown);
      if (entry.track.length > TRACK_POINTS) entry.track.splice(0, entry.track.length - TRACK_POINTS);
      entry.latlng = shown;
      entry.marker.setLatLng(shown);
      entry.line.setLatLngs(entry.track);
    }
    const r = raw && typeof raw === 'object' ? raw : {};
    entry.fixAgeS = Number.isFinite(r.fix_age_s) ? r.fix_age_s : null;
    entry.fixAgeAt = Date.now();
    entry.serverStale = r.stale === true;
    this.paint(entry);
    if (single) this.afterChange();
  }

  createEntry(unitId) {
    const { L } = this;
    const body = el('div', 'map-unit');
    body.dataset.unitId = unitId;
    body.append(el('span', 'map-unit-dot'), el('span', 'map-unit-label', unitId));
    const marker = L.marker([0, 0], {
      icon: L.divIcon({ className: 'map-unit-icon', html: body, iconSize: [14, 14], iconAnchor: [7, 7] }),
      keyboard: true,
      title: '',
      riseOnHover: true,
    });
    marker.bindTooltip('', { direction: 'top', offset: [0, -8], className: 'map-tip' });
    marker.bindPopup(() => this.unitPopup(unitId), { className: 'map-popup', minWidth: 200, autoPanPadding: [20, 20] });
    marker.on('click', () => this.ctx.openTile(unitId));
    marker.on('popupopen', () => marker.closeTooltip());
    const line = L.polyline([], { interactive: false, weight: 2, opacity: 0.55, className: 'map-track' });
    line.addTo(this.trackLayer);
    marker.addTo(this.unitLayer);
    return {
      id: unitId, marker, line, body, latlng: /** @type {[number, number]} */ ([0, 0]), track: [], wgs: [],
      key: '', status: '', unit: null, fixAgeS: null, fixAgeAt: 0, serverStale: false, tipText: '',
      popupBox: /** @type {HTMLElement | null} */ (null),
    };
  }

  remove(unitId) {
    const entry = this.markers.get(unitId);
    if (!entry) return;
    entry.marker.remove();
    entry.line.remove();
    this.markers.delete(unitId);
  }

  /** Seconds since the unit's last fix: the server's `fix_age_s` aged locally, else from the fix's own time. */
  fixAge(entry, now = Date.now()) {
    if (entry.fixAgeS !== null) return entry.fixAgeS + (now - entry.fixAgeAt) / 1000;
    const ms = fixTimeMs(entry.unit && entry.unit.position ? entry.unit.position.ts : null);
    return Number.isNaN(ms) ? NaN : Math.max(0, (now - ms) / 1000);
  }

  isStale(entry, now = Date.now()) {
    const age = this.fixAge(entry, now);
    return entry.serverStale || (Number.isFinite(age) && age > this.config.staleAfterS);
  }

  /** Status colour, stacking order and tooltip of one marker. */
  paint(entry, now = Date.now()) {
    const unit = entry.unit;
    if (!unit) return;
    const status = markerStatus(unit, this.isStale(entry, now));
    if (status !== entry.status) {
      entry.status = status;
      entry.body.dataset.status = status;
      entry.marker.setZIndexOffset(Z_ORDER[status]);
      entry.line.setStyle({ color: COLORS[status] });
    }
    entry.body.dataset.action = unit.action_id ? 'true' : 'false';
    const lines = [`${unit.id} · ${MAP_STATUS[status]}`, t('map_last_fix', { ago: ageText(this.fixAge(entry, now)) })];
    if (unit.case_number) lines.push(t('roster_action', { case: unit.case_number }));
    const text = lines.join('\n');
    if (text !== entry.tipText) {
      entry.tipText = text;
      entry.marker.setTooltipContent(el('div', 'map-tip-text', text));
    }
    if (entry.popupBox && entry.marker.isPopupOpen()) this.fillUnitPopup(entry);
  }

  /** The popup of a clicked unit: id, status, last fix, position, action. */
  unitPopup(unitId) {
    const box = el('div', 'map-pop');
    box.dataset.unitId = unitId;
    box.append(el('div', 'map-pop-title', unitId), el('div', 'map-pop-status'), el('div', 'map-pop-fix'),
      el('div', 'map-pop-pos'), el('div', 'map-pop-case'));
    const view = labelElement('button', 'btn btn--small map-pop-view', t('map_view'));
    view.type = 'button';
    view.addEventListener('click', () => this.ctx.openTile(unitId));
    box.append(view);
    const entry = this.markers.get(unitId);
    if (entry) {
      entry.popupBox = box;
      this.fillUnitPopup(entry);
    }
    return box;
  }

  fillUnitPopup(entry) {
    const box = entry.popupBox;
    if (!box || !entry.unit) return;
    const unit = entry.unit;
    box.querySelector('.map-pop-title').textContent = `${unit.id} · ${kindLabel(unit.kind)}`;
    const status = box.querySelector('.map-pop-status');
    status.textContent = MAP_STATUS[entry.status] || MAP_STATUS.offline;
    status.dataset.status = entry.status;
    const iso = unit.position ? fixIso(unit.position.ts) : null;
    const age = this.fixAge(entry);
    box.querySelector('.map-pop-fix').textContent =
      t('map_last_fix_at', { t: iso ? formatClock(iso) : '—', ago: ageText(age) });
    const [lat, lon] = entry.wgs[entry.wgs.length - 1] || [NaN, NaN];
    box.querySelector('.map-pop-pos').textContent = Number.isFinite(lat) ? `WGS-84 ${latLonText(lat, lon)}` : '';
    const kase = box.querySelector('.map-pop-case');
    kase.textContent = unit.case_number ? t('roster_action', { case: unit.case_number }) : '';
    kase.hidden = !unit.case_number;
  }

  // ---------- action areas ----------

  /** @param {Map<string, object>} actions every known action (`dispatchConsole.actions`) */
  setActions(actions) {
    this.actions = new Map([...actions].filter(([, a]) => a && a.state === 'running' && a.area));
    this.drawAreas();
  }

  drawAreas() {
    if (!this.map) return;
    this.areaLayer.clearLayers();
    this.areas.clear();
    for (const [id, action] of this.actions) {
      const layer = this.areaShape(action.area);
      if (!layer) continue;
      const label = [action.case_number, action.title].filter(Boolean).join(' · ');
      layer.bindTooltip(label || id, {
        permanent: true, direction: 'center', className: 'map-area-label', interactive: false,
      });
      layer.addTo(this.areaLayer);
      this.areas.set(id, layer);
    }
  }

  /** A Leaflet circle or polygon for an action's area, or null when it is malformed. */
  areaShape(area) {
    const { L } = this;
    const style = {
      color: AREA_COLOR, weight: 2, opacity: 0.9, fillColor: AREA_COLOR, fillOpacity: 0.08, dashArray: '6 4',
      interactive: false, className: 'map-area',
    };
    if (area.type === 'circle' && [area.lat, area.lon, area.radius_m].every(Number.isFinite)) {
      return L.circle(this.toDisplay(area.lat, area.lon), { ...style, radius: area.radius_m });
    }
    if (area.type === 'polygon' && Array.isArray(area.points)) {
      const points = area.points
        .filter((p) => Array.isArray(p) && p.length >= 2 && Number.isFinite(p[0]) && Number.isFinite(p[1]))
        .map(([lat, lon]) => this.toDisplay(lat, lon));
      return points.length >= 3 ? L.polygon(points, style) : null;
    }
    return null;
  }

  // ---------- view ----------

  /** After units changed: follow them while the operator has not taken over the view. */
  afterChange() {
    if (this.autoFit) this.fitAll(false);
    this.renderStatus();
  }

  /**
   * Fit the view to every unit and running action area.
   * @param {boolean} byOperator the fit button: follow the units again from now on
   */
  fitAll(byOperator) {
    if (!this.map) return;
    if (byOperator) this.autoFit = true;
    const { L } = this;
    const bounds = L.latLngBounds([]);
    for (const entry of this.markers.values()) bounds.extend(entry.latlng);
    for (const layer of this.areas.values()) bounds.extend(layer.getBounds());
    if (!bounds.isValid()) return;
    const size = this.map.getSize();
    if (!size.x || !size.y) {
      this.pendingFit = true; // hidden: fit once the panel has a size
      return;
    }
    this.pendingFit = false;
    // Following the units: move only when one leaves the view, so that the map does not creep every second.
    if (!byOperator && this.fitted && this.map.getBounds().pad(-0.05).contains(bounds)) return;
    const zoom = Math.min(this.map.getBoundsZoom(bounds.pad(0.15), false), FIT_MAX_ZOOM);
    this.map.setView(bounds.getCenter(), zoom, { animate: false });
    this.fitted = true;
  }

  resized() {
    if (!this.map) return;
    this.map.invalidateSize();
    if (this.pendingFit) this.fitAll(false);
  }

  /** The panel was brought into view (its tab). */
  shown() {
    this.resized();
  }

  /** A coordinate grid on the plain background (no tiles), so that movement and scale read. */
  drawGrid() {
    if (!this.map || !this.gridLayer) return;
    const { L } = this;
    this.gridLayer.clearLayers();
    if (this.config.tileUrl) return;
    const size = this.map.getSize();
    if (!size.x || !size.y) return;
    const b = this.map.getBounds();
    const south = Math.max(-85, b.getSouth());
    const north = Math.min(85, b.getNorth());
    const west = b.getWest();
    const east = b.getEast();
    const span = Math.max(east - west, north - south);
    const step = [...GRID_STEPS].reverse().find((s) => span / s <= 10) || GRID_STEPS[0];
    const style = { interactive: false, weight: 1, opacity: 1, color: '#1d2a3a', className: 'map-grid' };
    for (let lon = Math.ceil(west / step) * step; lon <= east; lon += step) {
      L.polyline([[south, lon], [north, lon]], style).addTo(this.gridLayer);
    }
    for (let lat = Math.ceil(south / step) * step; lat <= north; lat += step) {
      L.polyline([[lat, west], [lat, east]], style).addTo(this.gridLayer);
    }
  }

  // ---------- dispatch here (派往此处) ----------

  /**
   * A popup at a point of the map: its WGS-84 position and, for people who may
   * send instructions, the nearest available units, each with a button that
   * sends it there (`goto`).
   * @param {[number, number]} shown displayed [lat, lon]
   * @param {boolean} search look the units up at once (right click); else on the button
   */
  openDispatch(shown, search) {
    if (!this.map) return;
    const { L } = this;
    const [lat, lon] = this.fromDisplay(shown[0], shown[1]);
    const box = el('div', 'map-dispatch');
    box.dataset.lat = String(lat);
    box.dataset.lon = String(lon);
    box.dataset.state = 'idle';
    box.append(labelElement('div', 'map-pop-title', t('map_dispatch_here')));
    box.append(el('div', 'map-pop-pos', `WGS-84 ${latLonText(lat, lon)}`));
    const list = el('ol', 'map-near');
    const message = el('div', 'map-dispatch-msg');
    message.setAttribute('role', 'status');
    if (!this.ctx.canWrite()) {
      box.append(el('div', 'map-dispatch-msg muted', t('map_read_only')));
    } else {
      const find = labelElement('button', 'btn btn--small btn--primary map-near-find', t('map_find_near'));
      find.type = 'button';
      find.addEventListener('click', () => {
        find.hidden = true;
        this.findNearest(box, list, message, lat, lon);
      });
      box.append(find, list, message);
      if (search) {
        find.hidden = true;
        this.findNearest(box, list, message, lat, lon);
      }
    }
    this.dispatchPopup = L.popup({ className: 'map-popup', minWidth: 240, maxWidth: 320, autoPanPadding: [20, 20] })
      .setLatLng(shown)
      .setContent(box)
      .openOn(this.map);
  }

  /** Ask the server for the nearest available units; without that route, work it out from the roster. */
  async findNearest(box, list, message, lat, lon) {
    box.dataset.state = 'searching';
    message.textContent = t('map_searching');
    message.className = 'map-dispatch-msg';
    list.replaceChildren();
    let units;
    let note = '';
    try {
      const q = `lat=${lat.toFixed(7)}&lon=${lon.toFixed(7)}&k=${NEAREST_K}&available=true`;
      const body = await this.ctx.api.request('GET', `/api/units/nearest?${q}`);
      units = Array.isArray(body && body.units) ? body.units : [];
    } catch (exc) {
      if (exc && (exc.status === 404 || exc.status === 405)) {
        // An older server: the same answer from the positions this console holds.
        units = this.localNearest(lat, lon);
        note = t('map_near_local');
      } else {
        box.dataset.state = 'error';
        message.textContent = t('map_search_failed', { e: errorText(exc) });
        message.className = 'map-dispatch-msg form-error';
        return;
      }
    }
    box.dataset.state = 'listed';
    const rows = units.filter((u) => u && typeof u.id === 'string').map((u) => this.nearRow(u, message, lat, lon));
    list.replaceChildren(...rows);
    const none = rows.length ? '' : t('map_none_near');
    message.textContent = [note, none].filter(Boolean).join(' · ');
    message.className = note ? 'map-dispatch-msg muted' : 'map-dispatch-msg';
    this.dispatchPopup?.update();
  }

  /** @returns {{id: string, distance_m: number, position: object, publishing: boolean, action_id: string | null}[]} */
  localNearest(lat, lon) {
    const found = [];
    for (const unit of this.ctx.units.values()) {
      if (!unit.position || unit.action_id) continue;
      found.push({
        id: unit.id,
        distance_m: distanceM(lat, lon, unit.position.lat, unit.position.lon),
        position: unit.position,
        publishing: unit.publishing,
        action_id: unit.action_id,
      });
    }
    return found.sort((a, b) => a.distance_m - b.distance_m).slice(0, NEAREST_K);
  }

  nearRow(near, message, lat, lon) {
    const li = el('li', 'map-near-row');
    li.dataset.unitId = near.id;
    const unit = this.ctx.units.get(near.id);
    const status = unit ? unitStatus(unit) : (near.publishing ? 'publishing' : 'offline');
    const pick = el('button', 'btn btn--small map-near-pick', near.id);
    pick.type = 'button';
    pick.title = t('map_send_here_title', { unit: near.id });
    pick.addEventListener('click', () => this.sendGoto(li, message, near.id, lat, lon));
    const dist = el('span', 'map-near-dist', formatDistance(Number(near.distance_m)));
    const badge = el('span', `map-near-status map-near-status--${status}`, MAP_STATUS[status]);
    li.append(pick, dist, badge);
    return li;
  }

  async sendGoto(li, message, unitId, lat, lon) {
    const buttons = li.parentElement ? [...li.parentElement.querySelectorAll('button')] : [];
    for (const b of buttons) b.disabled = true;
    message.textContent = t('map_sending', { unit: unitId });
    message.className = 'map-dispatch-msg';
    try {
      const created = await this.ctx.api.sendInstruction({
        unit: unitId, type: 'goto', lat: Number(lat.toFixed(7)), lon: Number(lon.toFixed(7)), note: t('map_goto_note'),
      });
      li.dataset.sent = 'true';
      li.closest('.map-dispatch').dataset.state = 'sent';
      const offline = created && Array.isArray(created.online) && !created.online.includes(unitId);
      message.textContent = t(offline ? 'map_sent_offline' : 'map_sent', { unit: unitId, id: created && created.id ? created.id : '' });
      message.className = 'map-dispatch-msg form-ok';
    } catch (exc) {
      li.closest('.map-dispatch').dataset.state = 'error';
      message.textContent = t('map_not_sent', { e: errorText(exc) });
      message.className = 'map-dispatch-msg form-error';
      for (const b of buttons) b.disabled = false;
    }
  }

  // ---------- housekeeping ----------

  renderStatus() {
    if (!this.map) return;
    const located = this.markers.size;
    const base = this.config.tileUrl ? t(this.config.crs === 'gcj02' ? 'map_base_gcj' : 'map_base_wgs') : t('map_base_none');
    this.setStatus(t('map_located', { n: located, base }), '');
  }

  setStatus(text, level) {
    if (this.el.status.textContent !== text) this.el.status.textContent = text;
    this.el.status.dataset.level = level;
  }

  /** Once a second: staleness and "last fix N s ago" move on without events. */
  tick() {
    const now = Date.now();
    for (const entry of this.markers.values()) this.paint(entry, now);
  }

  /** Forget every unit and area (logout). The Leaflet map itself stays for the next session. */
  clear() {
    for (const id of [...this.markers.keys()]) this.remove(id);
    this.actions.clear();
    this.drawAreas();
    this.map?.closePopup();
    this.autoFit = true;
    this.fitted = false;
    this.renderStatus();
  }
}

