/**
 * Stills (取证照片) from the units' cameras, as the instruction list shows them: a
 * thumbnail that opens the picture full size.
 *
 * The JPEG comes from `GET /api/snapshots/{id}` with the session's token; the
 * server writes a `viewed` entry to the evidence ledger before it answers. It
 * is fetched once per console and kept as a blob URL, so a row that is
 * rebuilt does not fetch (and ledger) it again.
 */
import { errorText, t } from './console-texts.js';
import { el } from './labels.js';

export class StillGallery {
  /** @param {{snapshotImage: (id: string) => Promise<Blob>}} api */
  constructor(api) {
    this.api = api;
    /** @type {Map<string, Promise<string>>} snapshot id -> blob URL */
    this.urls = new Map();
    /** @type {HTMLDialogElement | null} */
    this.dialog = null;
  }

  /** @returns {Promise<string>} a URL of the still, fetched on first use */
  url(snapshotId) {
    let url = this.urls.get(snapshotId);
    if (!url) {
      url = this.api.snapshotImage(snapshotId).then((blob) => URL.createObjectURL(blob));
      url.catch(() => this.urls.delete(snapshotId)); // fetch again next time
      this.urls.set(snapshotId, url);
    }
    return url;
  }

  /** A thumbnail button for a row; says so in place when the still cannot be loaded. */
  thumbnail(snapshotId, caption) {
    const button = el('button', 'still-thumb');
    button.type = 'button';
    button.dataset.snapshotId = snapshotId;
    button.title = t('still_enlarge', { id: snapshotId });
    const img = /** @type {HTMLImageElement} */ (el('img', 'still-thumb-img'));
    img.alt = t('still');
    button.append(img, el('span', 'still-thumb-label', t('still')));
    this.url(snapshotId).then(
      (url) => { img.src = url; },
      (error) => {
        button.classList.add('still-thumb--failed');
        button.title = `${t('still_failed')}: ${errorText(error)}`;
      },
    );
    button.addEventListener('click', () => this.open(snapshotId, caption));
    return button;
  }

  /** Show the still full size, over everything, until clicked or Esc. */
  async open(snapshotId, caption) {
    if (!this.dialog) {
      this.dialog = /** @type {HTMLDialogElement} */ (el('dialog', 'still-viewer'));
      this.dialog.addEventListener('click', () => this.dialog.close());
      document.body.append(this.dialog);
    }
    const img = /** @type {HTMLImageElement} */ (el('img', 'still-viewer-img'));
    img.alt = t('still');
    const text = el('div', 'still-viewer-caption', `${t('still')} ${caption} · ${snapshotId}`);
    this.dialog.dataset.snapshotId = snapshotId;
    this.dialog.replaceChildren(img, text);
    if (!this.dialog.open) this.dialog.showModal();
    try {
      img.src = await this.url(snapshotId);
    } catch (error) {
      text.textContent = `${t('still_failed')}: ${errorText(error)}`;
    }
  }

  /** Forget every still (logout). */
  clear() {
    if (this.dialog && this.dialog.open) this.dialog.close();
    for (const url of this.urls.values()) url.then((u) => URL.revokeObjectURL(u), () => {});
    this.urls.clear();
  }
}
