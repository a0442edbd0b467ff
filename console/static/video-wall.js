/**
 * The video wall: one VideoTile per unit that publishes (or published while
 * this console watched, was dragged onto the wall, or was opened by an alarm),
 * grouped by running action (see wall-groups.js) and kept in unit-id order,
 * with full-screen viewing (double-click).
 *
 * Layout (分屏): 1, 4, 9 or 16 tiles to a screen (1x1 ... 4x4), or automatic (the
 * largest tiles that fit every tile on the wall), chosen by the operator and
 * remembered in localStorage. Tiles are sized to fill the wall at the video's
 * aspect ratio, with their labels in a bar under the picture, never over it.
 *
 * Dispatches `tilechange` (detail: {unitId}) whenever a tile's state or
 * stream changes, which the patrol view listens to.
 */
import { VideoTile } from './video-tile.js';
import { WallGroups } from './wall-groups.js';

/** How many WHEP negotiations may run at once, so a full roster does not open 80 at the same moment. */
const MAX_CONCURRENT_OPENS = 4;
const STORE_LAYOUT = 'dispatch.console.wall-layout';
export const LAYOUTS = ['auto', 1, 4, 9, 16];
/** Height of a tile's label bar and the gap between tiles, in CSS pixels (console.css). */
const BAR_PX = 26;
const GAP_PX = 6;
const GROUP_GAP_PX = 10;

function loadLayout() {
  try {
    const saved = localStorage.getItem(STORE_LAYOUT);
    return LAYOUTS.find((l) => String(l) === saved) ?? 'auto';
  } catch {
    return 'auto';
  }
}

export class VideoWall extends EventTarget {
  /**
   * @param {{grid: HTMLElement, empty: HTMLElement, count: HTMLElement}} elements
   * @param {{getToken: () => string | null, getIceServers: () => RTCIceServer[],
   *   onUnauthorized: (message: string) => void, units: Map<string, import('./roster.js').Unit>,
   *   createTalkControl: (unitId: string) => HTMLElement}} context
   */
  constructor(elements, context) {
    super();
    this.el = elements;
    this.ctx = context;
    /** @type {Map<string, VideoTile>} the test hook `dispatchConsole.tiles` */
    this.tiles = new Map();
    /** @type {VideoTile | null} */
    this.fullTile = null;
    this.openSlots = MAX_CONCURRENT_OPENS;
    /** @type {Array<() => void>} */
    this.slotWaiters = [];
    this.groups = new WallGroups(elements.grid, context.units, (unitId) => this.open(unitId));
    /** @type {'auto' | 1 | 4 | 9 | 16} */
    this.layout = loadLayout();
    this.linkDown = false;
    this.layoutButtons = [...document.querySelectorAll('#wall-layouts [data-layout]')];
    for (const button of this.layoutButtons) {
      button.addEventListener('click', () => this.setLayout(button.dataset.layout === 'auto' ? 'auto'
        : Number(button.dataset.layout)));
    }
    new ResizeObserver(() => this.relayout()).observe(elements.grid);
    // A unit dragged from the roster onto the wall (a tile or the empty wall) is watched there.
    for (const target of [elements.grid, elements.empty]) {
      target.addEventListener('dragover', (event) => {
        if (!event.dataTransfer.types.includes('text/x-unit-id')) return;
        event.preventDefault();
        event.dataTransfer.dropEffect = 'copy';
      });
      target.addEventListener('drop', (event) => {
        const unitId = event.dataTransfer.getData('text/x-unit-id');
        if (!unitId) return;
        event.preventDefault();
        this.open(unitId);
      });
    }
    document.addEventListener('fullscreenchange', () => {
      if (!document.fullscreenElement && this.fullTile) this.exitFull();
    });
    // Escape leaves real full screen by itself; this covers the CSS-only fallback.
    document.addEventListener('keydown', (event) => {
      if (event.key === 'Escape' && this.fullTile) this.exitFull();
    });
    this.markLayout();
    this.render();
  }

  /** @param {'auto' | 1 | 4 | 9 | 16} layout chosen by the operator; remembered */
  setLayout(layout) {
    if (!LAYOUTS.includes(layout)) return;
    this.layout = layout;
    try {
      localStorage.setItem(STORE_LAYOUT, String(layout));
    } catch {
      // Private mode: the choice lasts for this page only.
    }
    this.markLayout();
    this.relayout();
  }

  markLayout() {
    this.el.grid.dataset.layout = String(this.layout);
    for (const button of this.layoutButtons) {
      button.setAttribute('aria-pressed', String(button.dataset.layout === String(this.layout)));
    }
  }

  /** @param {boolean} down the console's own link to the server is down: tiles stop saying anything */
  setLinkDown(down) {
    if (this.linkDown === down) return;
    this.linkDown = down;
    for (const tile of this.tiles.values()) tile.render();
  }

  /**
   * Size the tiles to fill the wall: `--cols` columns of `--tile-w` pixels, the picture at
   * the video's aspect ratio (`--tile-aspect`) and the label bar under it.
   */
  relayout() {
    const grid = this.el.grid;
    const n = this.tiles.size;
    if (!n || !grid.clientWidth || !grid.clientHeight) return;
    const live = [...this.tiles.values()].find((tile) => tile.video.videoWidth > 0);
    const aspect = live ? live.aspect : 4 / 3;
    const sections = [...grid.querySelectorAll('.wall-group')].filter((g) => Number(g.dataset.count) > 0);
    let overhead = Math.max(0, sections.length - 1) * GROUP_GAP_PX;
    let padX = 0;
    for (const section of sections) {
      const head = section.querySelector('.wall-group-head');
      if (section.dataset.grouped === 'true') {
        overhead += (head ? head.offsetHeight : 0) + 14;
        padX = 14;
      }
    }
    const width = grid.clientWidth - padX;
    const height = grid.clientHeight - overhead;
    const fit = (cols, rows) => {
      const byWidth = (width - (cols - 1) * GAP_PX) / cols;
      const byHeight = ((height - (rows - 1) * GAP_PX) / rows - BAR_PX) * aspect;
      return Math.floor(Math.max(120, Math.min(byWidth, byHeight)));
    };
    let cols;
    let tileWidth;
    if (this.layout === 'auto') {
      const counts = sections.length ? sections.map((g) => Number(g.dataset.count)) : [n];
      cols = 1;
      tileWidth = 0;
      for (let c = 1; c <= n; c += 1) {
        const rows = counts.reduce((sum, k) => sum + Math.ceil(k / c), 0);
        const w = fit(c, rows);
        if (w > tileWidth) {
          tileWidth = w;
          cols = c;
        }
      }
    } else {
      cols = Math.round(Math.sqrt(this.layout));
      tileWidth = fit(cols, cols);
    }
    grid.style.setProperty('--cols', String(cols));
    grid.style.setProperty('--tile-w', `${tileWidth}px`);
    grid.style.setProperty('--tile-aspect', String(aspect));
  }

  /** Apply a whole `roster`: tiles for publishing units; known tiles take the new unit state. */
  replace(units) {
    const seen = new Set();
    for (const unit of units) {
      seen.add(unit.id);
      this.sync(unit);
    }
    // A unit missing from a fresh roster is no longer publishing anywhere.
    for (const [id, tile] of this.tiles) {
      if (!seen.has(id) && tile.publishing) tile.setUnit({ ...tile.unit, publishing: false, online: false });
    }
  }

  /** Apply one unit update: creates the tile when the unit starts publishing. */
  sync(unit) {
    let tile = this.tiles.get(unit.id);
    if (!tile) {
      if (!unit.publishing || (this.ctx.canWatch && !this.ctx.canWatch())) return;
      tile = new VideoTile(unit, this.tileContext());
      this.tiles.set(unit.id, tile);
    } else {
      tile.setUnit(unit);
    }
    this.render();
    this.changed(tile);
  }

  /** A `viewer_closed` event: the tile that held that session reopens by itself. */
  viewerClosed({ session_id: sessionId, unit_id: unitId, reason }) {
    const tile = this.tiles.get(unitId);
    if (tile && (!sessionId || tile.sessionId === sessionId)) tile.serverClosed(reason);
  }

  /** The Socket.IO link came back (maybe to a restarted server): check every viewer. */
  revalidate() {
    for (const tile of this.tiles.values()) tile.revalidate();
  }

  /**
   * Make sure a unit has a tile, even when it does not publish (an SOS): the
   * tile then shows it offline and starts viewing as soon as it publishes.
   * Scrolls it into view and flashes it.
   * @returns {VideoTile}
   */
  open(unitId) {
    let tile = this.tiles.get(unitId);
    if (!tile) {
      const unit = this.ctx.units.get(unitId) || {
        id: unitId, kind: 'body', online: false, publishing: false, last_seen: null, video_codec: null,
        audio_codec: null, position: null, action_id: null, case_number: null,
      };
      tile = new VideoTile(unit, this.tileContext());
      this.tiles.set(unitId, tile);
      this.render();
      this.changed(tile);
    }
    this.focus(unitId);
    return tile;
  }

  /** Mark (or unmark) a unit's tile as the subject of an open alarm. */
  setAlarm(unitId, alarm) {
    const tile = this.tiles.get(unitId);
    if (tile) tile.setAlarm(alarm);
  }

  /** A running action's compliance with the rules of procedure (流程预警): its badge on the wall. */
  setCompliance(compliance) {
    this.groups.setCompliance(compliance);
    this.render();
  }

  /** @param {Map<string, object>} actions all known actions; regroups the wall */
  setActions(actions) {
    this.groups.setActions(actions);
    this.render();
  }

  /** Remove the tiles of units that are not publishing (toolbar button); alarmed tiles stay. */
  removeOffline() {
    for (const [id, tile] of [...this.tiles]) {
      if (!tile.publishing && !tile.alarm) {
        if (this.fullTile === tile) this.exitFull();
        tile.close();
        this.tiles.delete(id);
        this.changed(tile);
      }
    }
    this.render();
  }

  /** Close every viewer (logout, page unload). */
  clear() {
    if (this.fullTile) this.exitFull();
    for (const tile of this.tiles.values()) tile.close();
    this.tiles.clear();
    this.groups.clear();
    this.render();
  }

  /** Scroll a unit's tile into view and flash it (roster row click). */
  focus(unitId) {
    const tile = this.tiles.get(unitId);
    if (!tile) return;
    // Scroll the wall only: scrollIntoView could scroll the whole page sideways.
    const grid = this.el.grid;
    const top = tile.element.getBoundingClientRect().top - grid.getBoundingClientRect().top + grid.scrollTop;
    grid.scrollTo({ top: Math.max(0, top - GAP_PX), behavior: 'smooth' });
    tile.element.classList.remove('tile--flash');
    void tile.element.offsetWidth; // restart the CSS animation
    tile.element.classList.add('tile--flash');
  }

  /** @param {VideoTile} tile */
  async enterFull(tile) {
    if (this.fullTile === tile) return;
    if (this.fullTile) this.exitFull();
    this.fullTile = tile;
    // The CSS class alone already fills the window; the Fullscreen API, when
    // the browser grants it, also hides the browser's own chrome.
    tile.element.classList.add('tile--full');
    try {
      await tile.element.requestFullscreen({ navigationUI: 'hide' });
    } catch {
      // Refused (no user gesture, iframe policy): the CSS overlay stays.
    }
  }

  exitFull() {
    const tile = this.fullTile;
    this.fullTile = null;
    if (tile) tile.element.classList.remove('tile--full');
    if (document.fullscreenElement) document.exitFullscreen().catch(() => {});
  }

  /** @returns {Promise<{framesDecoded: number, bytesReceived: number}>} */
  async stats(unitId) {
    const tile = this.tiles.get(unitId);
    if (!tile) return { framesDecoded: 0, bytesReceived: 0 };
    return tile.stats();
  }

  /** Once a second: rates, live/stall detection, retry countdowns. */
  tick() {
    for (const tile of this.tiles.values()) tile.poll().catch(() => {});
  }

  /** Close viewers with keepalive DELETEs when the page goes away. */
  closeForUnload() {
    for (const tile of this.tiles.values()) tile.close();
  }

  tileContext() {
    return {
      getToken: this.ctx.getToken,
      getIceServers: this.ctx.getIceServers,
      onUnauthorized: this.ctx.onUnauthorized,
      acquireSlot: () => this.acquireSlot(),
      onChange: (tile) => this.changed(tile),
      onActivate: (tile) => this.enterFull(tile),
      onCloseFull: () => this.exitFull(),
      createTalkControl: (unitId) => this.ctx.createTalkControl(unitId),
      linkDown: () => this.linkDown,
      onDropUnit: (unitId) => this.open(unitId),
    };
  }

  /** @returns {Promise<() => void>} resolves when a negotiation slot is free; call the result to free it */
  acquireSlot() {
    return new Promise((resolve) => {
      let released = false;
      const release = () => {
        if (released) return;
        released = true;
        const next = this.slotWaiters.shift();
        if (next) next();
        else this.openSlots += 1;
      };
      const grant = () => resolve(release);
      if (this.openSlots > 0) {
        this.openSlots -= 1;
        grant();
      } else {
        this.slotWaiters.push(grant);
      }
    });
  }

  /** @param {VideoTile} tile */
  changed(tile) {
    this.render();
    this.dispatchEvent(new CustomEvent('tilechange', { detail: { unitId: tile.unitId } }));
  }

  render() {
    this.groups.layout(this.tiles);
    let live = 0;
    for (const tile of this.tiles.values()) if (tile.state === 'live') live += 1;
    this.el.count.textContent = `${live} / ${this.tiles.size}`;
    this.el.empty.hidden = this.tiles.size > 0;
    this.el.grid.dataset.count = String(this.tiles.size);
    this.relayout();
  }
}
