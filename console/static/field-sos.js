/**
 * The field page's SOS button (一键求助): POST /api/units/{unit}/sos with the unit token and,
 * when the browser can tell within 3 s, the device position. The command room gets an alarm with
 * the unit's position and its live feed. `#sos-state[data-state]` is "sending" | "sent" | "error".
 */
const byId = (id) => /** @type {HTMLElement} */ (document.getElementById(id));

function position() {
  return new Promise((resolve) => {
    if (!navigator.geolocation) { resolve(null); return; }
    const timer = setTimeout(() => resolve(null), 3000);
    navigator.geolocation.getCurrentPosition(
      (p) => { clearTimeout(timer); resolve({ lat: p.coords.latitude, lon: p.coords.longitude, accuracy: p.coords.accuracy }); },
      () => { clearTimeout(timer); resolve(null); },
      { enableHighAccuracy: true, timeout: 3000, maximumAge: 10000 },
    );
  });
}

function show(state, text) {
  const el = byId('sos-state');
  el.dataset.state = state;
  el.textContent = text;
}

async function raiseSos() {
  const unit = /** @type {HTMLInputElement} */ (byId('unit-id')).value.trim();
  const token = /** @type {HTMLInputElement} */ (byId('unit-token')).value.trim();
  if (!unit || !token) { show('error', '请先填写设备编号和令牌 enter the unit id and token first'); return; }
  show('sending', '求助发送中… sending SOS');
  const body = (await position()) || {};
  try {
    const resp = await fetch(`/api/units/${encodeURIComponent(unit)}/sos`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${token}` },
      body: JSON.stringify(body),
    });
    const data = await resp.json().catch(() => ({}));
    if (!resp.ok) {
      show('error', `求助失败 SOS failed: ${(data.error && data.error.message) || resp.status}`);
      return;
    }
    show('sent', `已求助 SOS sent (${data.id}) ${new Date().toLocaleTimeString()}`);
  } catch (err) {
    show('error', `求助失败 SOS failed: ${err}`);
  }
}

/** Wire the SOS button; called once by field.js. */
export function initSos() {
  byId('sos-btn').addEventListener('click', raiseSos);
}
