/**
 * The right-hand column's tabs: Units / Actions / Instructions / Alerts.
 *
 * The panels sit side by side in one horizontally scrolling strip (CSS scroll
 * snap), and a tab scrolls its panel into place. Panels that are not shown stay
 * laid out, so they keep their size and scroll position; and anything that
 * scrolls an element of another panel into view (focus, Tab key, a search)
 * brings its panel in, and the tab bar follows the strip.
 *
 * `data-panel` on the strip and `aria-selected` on the tabs say which panel shows;
 * the strip fires `panelchange` (`detail.panel` = panel id) when another panel
 * comes into view (the map redraws itself for its size then).
 */
export class SideTabs {
  /**
   * @param {HTMLElement} nav the tab bar: buttons with `data-panel` = panel id
   * @param {HTMLElement} strip the scrolling container of the panels (positioned, so that a
   *   panel's offsetLeft is its place in the strip)
   */
  constructor(nav, strip) {
    this.strip = strip;
    /** @type {HTMLButtonElement[]} */
    this.tabs = [...nav.querySelectorAll('[data-panel]')];
    this.current = this.tabs[0] ? this.tabs[0].dataset.panel : '';
    for (const tab of this.tabs) {
      tab.addEventListener('click', () => this.show(tab.dataset.panel));
    }
    nav.addEventListener('keydown', (event) => {
      const index = this.tabs.findIndex((tab) => tab.dataset.panel === this.current);
      const step = { ArrowRight: 1, ArrowLeft: -1 }[event.key];
      if (!step || index === -1) return;
      const next = this.tabs[(index + step + this.tabs.length) % this.tabs.length];
      this.show(next.dataset.panel);
      next.focus();
    });
    strip.addEventListener('scroll', () => this.follow(), { passive: true });
    // Keep the shown panel in place when the column changes width.
    new ResizeObserver(() => this.align()).observe(strip);
    this.mark();
  }

  /** @param {string} panelId */
  show(panelId) {
    const panel = document.getElementById(panelId);
    if (!panel) return;
    this.current = panelId;
    this.strip.scrollTo({ left: panel.offsetLeft, behavior: 'instant' });
    this.mark();
  }

  align() {
    const panel = document.getElementById(this.current);
    if (panel) this.strip.scrollLeft = panel.offsetLeft;
  }

  /** The strip scrolled (a tab, or an element brought into view): select the panel now showing. */
  follow() {
    const width = this.strip.clientWidth || 1;
    const index = Math.round(this.strip.scrollLeft / width);
    const panel = this.strip.children[index];
    if (panel && panel.id && panel.id !== this.current) {
      this.current = panel.id;
      this.mark();
    }
  }

  mark() {
    const changed = this.strip.dataset.panel !== this.current;
    this.strip.dataset.panel = this.current;
    if (changed) this.strip.dispatchEvent(new CustomEvent('panelchange', { detail: { panel: this.current } }));
    for (const tab of this.tabs) {
      const selected = tab.dataset.panel === this.current;
      tab.setAttribute('aria-selected', String(selected));
      tab.tabIndex = selected ? 0 : -1;
    }
  }
}
