/**
 * Display labels of the dispatch objects (actions, instructions, alerts) as
 * [Chinese, English] pairs, and the clock formats the panels share.
 */

export const ACTION_TYPES = {
  seizure: ['查封扣押', 'seizure'],
  search: ['搜查', 'search'],
  eviction: ['强制腾退', 'eviction'],
  service: ['送达', 'service'],
  other: ['其他', 'other'],
};

export const ACTION_STATES = {
  planned: ['计划中', 'planned'],
  running: ['进行中', 'running'],
  ended: ['已结束', 'ended'],
};

export const INSTRUCTION_TYPES = {
  text: ['文字指令', 'text'],
  goto: ['前往位置', 'go to'],
  record_start: ['开始录像', 'start recording'],
  record_stop: ['停止录像', 'stop recording'],
  snapshot: ['拍照', 'snapshot'],
  callback: ['回电', 'call back'],
  end_action: ['结束行动', 'end action'],
};

/** In the order of the protocol; `at` names the timestamp field of each state. */
export const INSTRUCTION_STATES = {
  queued: { label: ['待送达', 'queued'], at: 'created_at' },
  delivered: { label: ['已送达', 'delivered'], at: 'delivered_at' },
  acknowledged: { label: ['已确认', 'acknowledged'], at: 'acknowledged_at' },
  done: { label: ['已完成', 'done'], at: 'done_at' },
  refused: { label: ['已拒绝', 'refused'], at: 'refused_at' },
  expired: { label: ['已过期', 'expired'], at: 'expired_at' },
};

/** How far along an instruction is; a lower rank never replaces a higher one. */
export const INSTRUCTION_RANK = { queued: 0, delivered: 1, acknowledged: 2, done: 3, refused: 3, expired: 3 };

export const PRIORITIES = {
  low: ['低', 'low'],
  normal: ['普通', 'normal'],
  high: ['高', 'high'],
  urgent: ['紧急', 'urgent'],
};

export const ALERT_KINDS = {
  sos: ['紧急求助', 'SOS'],
  unit_offline: ['单位离线', 'unit offline'],
  stopped_publishing: ['视频中断', 'stopped publishing'],
  ack_overdue: ['指令超时未确认', 'ack overdue'],
  escalated: ['已升级', 'escalated'],
};

/** @param {Record<string, string[]>} table @param {string} key */
export function labelOf(table, key) {
  return table[key] || [key || '?', key || 'unknown'];
}

/** "19:05:07" in local time, "—" when absent. @param {string | null | undefined} iso */
export function formatClock(iso) {
  const t = Date.parse(iso || '');
  if (Number.isNaN(t)) return '—';
  return new Date(t).toLocaleTimeString('zh-CN', { hour12: false });
}

/** "11-27 19:05" in local time; today's times print without the date. @param {string | null | undefined} iso */
export function formatDateTime(iso, now = new Date()) {
  const t = Date.parse(iso || '');
  if (Number.isNaN(t)) return '—';
  const d = new Date(t);
  const hm = d.toLocaleTimeString('zh-CN', { hour12: false, hour: '2-digit', minute: '2-digit' });
  if (d.toDateString() === now.toDateString()) return hm;
  return `${String(d.getMonth() + 1).padStart(2, '0')}-${String(d.getDate()).padStart(2, '0')} ${hm}`;
}

/** `<input type="datetime-local">` value (local time) for an ISO time. */
export function toLocalInput(iso) {
  const t = Date.parse(iso || '');
  if (Number.isNaN(t)) return '';
  const d = new Date(t);
  const pad = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

/** ISO 8601 UTC time of a `datetime-local` value (read as local time); null when empty. */
export function fromLocalInput(value) {
  if (!value) return null;
  const t = new Date(value).getTime();
  return Number.isNaN(t) ? null : new Date(t).toISOString();
}

/**
 * A small element with the Chinese label and the English one in small type.
 * @param {string} tag @param {string} className @param {string[]} pair
 */
export function labelElement(tag, className, [zh, en]) {
  const el = document.createElement(tag);
  if (className) el.className = className;
  el.textContent = zh;
  const small = document.createElement('small');
  small.textContent = en;
  el.append(' ', small);
  return el;
}

/** Shorthand for document.createElement with a class and text. */
export function el(tag, className = '', text = '') {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text) node.textContent = text;
  return node;
}
