/**
 * Instructions from the command room, shown once each (the page's side of field_client/inbox.py
 * and of "Delivery protocol on `/unit`" in docs/api.md).
 *
 * On every connect, and whenever the server says `instructions_pending`, the inbox takes what is
 * new — from the push itself when it follows on from the last `seq`, else with `sync` after the
 * last `seq` — asks the server to mark it `received`, and hands on only the ids the server
 * confirms as delivered (an instruction whose TTL ran out first is never shown). The first sync of
 * a page starts from 0: instructions delivered to an earlier page but not answered yet are still
 * open on the server and come back. Pulls run one at a time, in order.
 */
import { LinkDown } from './field-link.js';

export class InstructionInbox {
  /**
   * @param {import('./field-link.js').UnitLink} link
   * @param {(item: object, receivedAt: number) => void} onDelivered called once per instruction id
   */
  constructor(link, onDelivered) {
    this.link = link;
    this.onDelivered = onDelivered;
    this.lastSeq = 0;
    this.fromStart = true;
    /** @type {Set<string>} ids already handed on by this page */
    this.seen = new Set();
    this.chain = Promise.resolve();
    link.on('instructions_pending', (data) => this.serial(() => this.pending(data)));
    link.addEventListener('connected', () => this.serial(() => this.pull()));
  }

  /** Start again for another unit (the officer changed the unit id). */
  reset() {
    this.lastSeq = 0;
    this.fromStart = true;
    this.seen.clear();
  }

  serial(task) {
    this.chain = this.chain.then(task).catch((exc) => {
      // The link dropped mid-way: the next connect pulls again from the last seq.
      if (!(exc instanceof LinkDown)) console.warn('instructions not processed now:', exc.message || exc);
    });
    return this.chain;
  }

  async pending(data) {
    const items = data && Array.isArray(data.instructions) ? data.instructions : [];
    if (!this.fromStart && items.length && items[0].seq === this.lastSeq + 1) {
      await this.process(items);
    } else {
      await this.pull();
    }
  }

  async pull() {
    for (;;) {
      const got = await this.link.call('sync', { after_seq: this.fromStart ? 0 : this.lastSeq });
      this.fromStart = false;
      const items = Array.isArray(got.instructions) ? got.instructions : [];
      if (!items.length) return;
      const before = this.lastSeq;
      await this.process(items);
      if (this.lastSeq === before) return;
    }
  }

  async process(items) {
    const sorted = items.filter((i) => i && typeof i.id === 'string').sort((a, b) => a.seq - b.seq);
    if (!sorted.length) return;
    const ack = await this.link.call('received', { ids: sorted.map((i) => i.id) });
    const delivered = new Set(Array.isArray(ack.delivered) ? ack.delivered : []);
    const receivedAt = Date.now();
    for (const item of sorted) {
      if (delivered.has(item.id) && !this.seen.has(item.id)) {
        this.seen.add(item.id);
        try {
          this.onDelivered(item, receivedAt);
        } catch (exc) {
          // A card that cannot be drawn must not hold up the instructions after it.
          console.error(`instruction ${item.id} could not be shown:`, exc);
        }
      }
      this.lastSeq = Math.max(this.lastSeq, Number(item.seq) || 0);
    }
  }
}
