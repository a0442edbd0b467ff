/**
 * The right-hand column's tabs: Units / Map / Actions / Instructions / Alerts / Recordings /
 * Requests. One panel shows at a time (the others are `display: none`), so the column never
 * grows wider than its place and a tab never scrolls the page.
 *
 * `data-panel` on the panels' container and `aria-selected` on the tabs say which panel shows;
 * the container fires `panelchange` (`detail.panel` = panel id) when another panel shows (the
 * map redraws itself for its size then). Tabs hidden for the person's role are skipped.
 */
export class SideTabs {
  /**
   * @param {HTMLElement} nav the tab bar: buttons with `data-panel` = panel id
   * @param {HTMLElement} strip the container of the panels
   */
  constructor(nav, strip) {
    this.strip = strip;
    /** @type {HTMLButtonElement[]} */
    this.tabs = [...nav.querySelectorAll('[data-panel]')];
    this.current = '';
    for (const tab of this.tabs) {
      tab.addEventListener('click', () => this.show(tab.dataset.panel));
    }
    nav.addEventListener('keydown', (event) => {
      const visible = this.tabs.filter((tab) => !tab.hidden);
      const index = visible.findIndex((tab) => tab.dataset.panel === this.current);
      const step = { ArrowRight: 1, ArrowLeft: -1 }[event.key];
      if (!step || index === -1) return;
      const next = visible[(index + step + visible.length) % visible.length];
      this.show(next.dataset.panel);
      next.focus();
    });
    this.show(this.tabs[0] ? this.tabs[0].dataset.panel : '');
  }

  /** @param {string} panelId */
  show(panelId) {
    const tab = this.tabs.find((b) => b.dataset.panel === panelId);
    if (!tab || tab.hidden) return;
    const changed = this.current !== panelId;
    this.current = panelId;
    for (const b of this.tabs) {
      const selected = b.dataset.panel === panelId;
      b.setAttribute('aria-selected', String(selected));
      b.tabIndex = selected ? 0 : -1;
      const panel = document.getElementById(b.dataset.panel);
      if (panel) panel.dataset.active = String(selected);
    }
    this.strip.dataset.panel = panelId;
    if (changed) this.strip.dispatchEvent(new CustomEvent('panelchange', { detail: { panel: panelId } }));
  }

  /** The person's permissions changed which tabs show: keep a visible one selected. */
  refresh() {
    const tab = this.tabs.find((b) => b.dataset.panel === this.current);
    if (!tab || tab.hidden) {
      const first = this.tabs.find((b) => !b.hidden);
      if (first) this.show(first.dataset.panel);
    }
  }
}
