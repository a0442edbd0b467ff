/**
 * Every text the field page shows, in Simplified Chinese (the default) and English.
 *
 * One language per screen: the page shows `t(key)` in the chosen language only, and the
 * choice is remembered in localStorage. Texts that the server or the officer wrote (an
 * instruction's text, a refusal's reason, a username) are shown as they are. The server's own
 * error messages are English: in Chinese the page shows the text for the error's code and keeps
 * the server's sentence in the element's `title`; in English it appends it.
 *
 * Reasons that the page itself sends to the command room with a refusal (a machine order it
 * could not carry out) are written in both languages, as the Python field client does:
 * `wireText(key)`.
 */

const STORE_LANG = 'dispatch.field.lang';

/** @type {Record<'zh' | 'en', Record<string, string>>} */
export const TEXTS = {
  zh: {
    page_title: '现场执法终端',
    heading: '现场执法终端',
    lang_switch: '英文',
    lang_switch_label: '切换为英文界面',
    unit_id: '设备编号',
    unit_token: '设备令牌',
    start: '开始',
    stop: '停止',
    unit_line: '设备 {unit}',
    // chips
    chip_video: '视频',
    chip_link: '链路',
    chip_gps: '定位',
    chip_talk: '对讲',
    live_badge: '● 直播中',
    // publish states
    pub_idle: '未推流',
    pub_connecting: '连接中…',
    pub_live: '直播中',
    pub_error: '推流出错',
    // link states
    link_offline: '离线',
    link_connecting: '连接中…',
    link_online: '在线',
    link_reconnecting: '重连中…',
    link_refused: '被拒绝',
    // GPS states
    gps_off: '未开启',
    gps_waiting: '定位中',
    gps_fix: '精度 {m} 米',
    gps_denied: '无定位权限',
    gps_unavailable: '无法定位',
    // talk
    talk_idle: '无',
    talk_connecting: '接通中…',
    talk_live: '对讲中（{from}）',
    talk_error: '对讲接通失败',
    // status messages
    msg_need_credentials: '请填写设备编号和令牌',
    msg_opening_camera: '正在打开摄像头',
    msg_camera_failed: '无法打开摄像头',
    msg_negotiating: '正在协商媒体参数',
    msg_connecting_media: '正在建立媒体连接',
    msg_publishing: '正在向指挥中心推流',
    msg_stopped: '已停止',
    msg_record_stopped: '已按指挥中心指令停止录像',
    msg_timeout: '连接超时',
    msg_lost: '连接中断',
    msg_media_lost: '指挥中心媒体服务中断，正在重新推流',
    msg_failed: '连接失败',
    msg_camera_ended: '摄像头已断开',
    msg_microphone_ended: '麦克风已断开',
    msg_retry: '{s} 秒后重试',
    msg_webrtc: '浏览器媒体连接出错',
    // server refusals, by error code
    err_bad_token: '令牌错误',
    err_unauthorized: '未提供设备令牌',
    err_unknown_unit: '设备编号不存在',
    err_unit_disabled: '本设备已被停用',
    err_bad_unit_id: '设备编号格式不正确',
    err_unit_mismatch: '令牌与设备编号不符',
    err_already_publishing: '本设备正在别处推流',
    err_bad_sdp: '服务器拒绝了媒体参数',
    err_network_error: '无法连接服务器',
    err_server: '服务器拒绝了请求',
    // instructions
    orders_heading: '指令',
    orders_empty: '暂无指令',
    type_text: '文字指令',
    type_goto: '前往指定地点',
    type_record_start: '开始录像',
    type_record_stop: '停止录像',
    type_snapshot: '拍照取证',
    type_callback: '回呼指挥中心',
    type_end_action: '结束本单位行动',
    type_other: '其他指令',
    priority: '优先级：{p}',
    prio_low: '低',
    prio_normal: '普通',
    prio_high: '高',
    prio_urgent: '紧急',
    case_number: '案号：{c}',
    received_at: '接收时间：{t}',
    target: '目标：{lat}，{lon}',
    way: '距离 {d}，方位 {dir}（{deg}°）',
    way_no_fix: '本机暂无定位，无法计算距离',
    open_map: '在地图中打开',
    metres: '{n} 米',
    kilometres: '{n} 公里',
    dir_0: '北',
    dir_1: '东北',
    dir_2: '东',
    dir_3: '东南',
    dir_4: '南',
    dir_5: '西南',
    dir_6: '西',
    dir_7: '西北',
    state_delivered: '待确认',
    state_acknowledged: '已确认',
    state_done: '已完成',
    state_refused: '已拒绝',
    state_running: '执行中…',
    reason: '原因：{r}',
    sending: '发送中…',
    queued_offline: '离线，联网后发送',
    answer_rejected: '服务器未接受此回复',
    btn_ack: '确认',
    btn_done: '完成',
    btn_refuse: '拒绝',
    refuse_placeholder: '请填写拒绝原因',
    btn_send_refusal: '发送拒绝',
    btn_cancel: '取消',
    reason_required: '拒绝必须填写原因',
    // machine orders: outcomes shown on the card and, in both languages, sent as reasons
    done_publishing_on: '已开始推流',
    done_publishing_off: '已停止推流',
    done_snapshot: '照片已上传（{kb} KB）',
    done_callback: '已通知指挥中心回呼',
    done_end_action: '本单位行动已结束，已停止推流',
    no_camera: '本机没有可用的摄像头',
    publish_did_not_start: '推流未能在 {s} 秒内开始',
    snapshot_failed: '拍照取证失败',
    snapshot_upload_failed: '照片上传失败',
    callback_failed: '回呼失败',
    not_supported: '本机不支持此指令',
    link_down: '与服务器的链路中断',
    // SOS
    sos_button: '一键求助',
    sos_need_credentials: '请先填写设备编号和令牌',
    sos_sending: '求助发送中…',
    sos_sent: '已求助 {t}',
    sos_failed: '求助失败',
    // the spoken notice (流程预警)
    notice_button: '已告知',
    notice_hint: '已口头告知：为保护您的合法权益，本次执行全程录音录像',
    notice_sending: '正在标记告知…',
    notice_sent: '已标记告知 {t}',
    notice_failed: '标记告知失败',
    notice_not_in_action: '本设备不在进行中的行动中，无需标记告知',
    notice_need_link: '未连接服务器，请开始后再标记告知',
  },
  en: {
    page_title: 'Field unit',
    heading: 'Field unit',
    lang_switch: 'Chinese',
    lang_switch_label: 'Switch to the Chinese interface',
    unit_id: 'Unit id',
    unit_token: 'Unit token',
    start: 'Start',
    stop: 'Stop',
    unit_line: 'Unit {unit}',
    chip_video: 'Video',
    chip_link: 'Link',
    chip_gps: 'GPS',
    chip_talk: 'Talk',
    live_badge: '● LIVE',
    pub_idle: 'not publishing',
    pub_connecting: 'connecting…',
    pub_live: 'live',
    pub_error: 'error',
    link_offline: 'offline',
    link_connecting: 'connecting…',
    link_online: 'online',
    link_reconnecting: 'reconnecting…',
    link_refused: 'refused',
    gps_off: 'off',
    gps_waiting: 'locating',
    gps_fix: 'accuracy {m} m',
    gps_denied: 'no location permission',
    gps_unavailable: 'no position',
    talk_idle: 'none',
    talk_connecting: 'connecting…',
    talk_live: 'talking ({from})',
    talk_error: 'talk-back failed',
    msg_need_credentials: 'Enter the unit id and token',
    msg_opening_camera: 'Opening the camera',
    msg_camera_failed: 'Cannot open the camera',
    msg_negotiating: 'Negotiating media',
    msg_connecting_media: 'Connecting media',
    msg_publishing: 'Publishing to the command centre',
    msg_stopped: 'Stopped',
    msg_record_stopped: 'Recording stopped by the command centre',
    msg_timeout: 'Connection timed out',
    msg_lost: 'Connection lost',
    msg_media_lost: 'The command centre lost our video; publishing again',
    msg_failed: 'Connection failed',
    msg_camera_ended: 'The camera was disconnected',
    msg_microphone_ended: 'The microphone was disconnected',
    msg_retry: 'retrying in {s} s',
    msg_webrtc: 'Browser media error',
    err_bad_token: 'Wrong token',
    err_unauthorized: 'No unit token given',
    err_unknown_unit: 'Unknown unit id',
    err_unit_disabled: 'This unit is disabled',
    err_bad_unit_id: 'The unit id is not valid',
    err_unit_mismatch: 'The token is for another unit',
    err_already_publishing: 'This unit is publishing elsewhere',
    err_bad_sdp: 'The server refused the media offer',
    err_network_error: 'Cannot reach the server',
    err_server: 'The server refused the request',
    orders_heading: 'Instructions',
    orders_empty: 'No instructions',
    type_text: 'Text instruction',
    type_goto: 'Go to a place',
    type_record_start: 'Start recording',
    type_record_stop: 'Stop recording',
    type_snapshot: 'Take a snapshot',
    type_callback: 'Call the command centre back',
    type_end_action: 'End this unit\'s action',
    type_other: 'Other instruction',
    priority: 'Priority: {p}',
    prio_low: 'low',
    prio_normal: 'normal',
    prio_high: 'high',
    prio_urgent: 'urgent',
    case_number: 'Case: {c}',
    received_at: 'Received: {t}',
    target: 'Target: {lat}, {lon}',
    way: '{d} to the {dir} ({deg}°)',
    way_no_fix: 'No GPS fix here: distance unknown',
    open_map: 'Open in maps',
    metres: '{n} m',
    kilometres: '{n} km',
    dir_0: 'north',
    dir_1: 'north-east',
    dir_2: 'east',
    dir_3: 'south-east',
    dir_4: 'south',
    dir_5: 'south-west',
    dir_6: 'west',
    dir_7: 'north-west',
    state_delivered: 'to acknowledge',
    state_acknowledged: 'acknowledged',
    state_done: 'done',
    state_refused: 'refused',
    state_running: 'carrying out…',
    reason: 'Reason: {r}',
    sending: 'sending…',
    queued_offline: 'offline: sent when the link is back',
    answer_rejected: 'The server did not accept this answer',
    btn_ack: 'Acknowledge',
    btn_done: 'Done',
    btn_refuse: 'Refuse',
    refuse_placeholder: 'Reason for refusing',
    btn_send_refusal: 'Send refusal',
    btn_cancel: 'Cancel',
    reason_required: 'A refusal needs a reason',
    done_publishing_on: 'publishing started',
    done_publishing_off: 'publishing stopped',
    done_snapshot: 'snapshot uploaded ({kb} KB)',
    done_callback: 'the command centre was asked to call back',
    done_end_action: 'this unit\'s action ended; publishing stopped',
    no_camera: 'no usable camera on this unit',
    publish_did_not_start: 'publishing did not start within {s} s',
    snapshot_failed: 'the snapshot could not be taken',
    snapshot_upload_failed: 'the snapshot upload failed',
    callback_failed: 'the call-back failed',
    not_supported: 'this unit cannot carry out this instruction',
    link_down: 'the link to the server is down',
    sos_button: 'SOS',
    sos_need_credentials: 'Enter the unit id and token first',
    sos_sending: 'Sending SOS…',
    sos_sent: 'SOS sent {t}',
    sos_failed: 'SOS failed',
    notice_button: 'Notice given',
    notice_hint: 'Told those present: for your rights, this enforcement is recorded in full',
    notice_sending: 'Marking the notice…',
    notice_sent: 'Notice marked {t}',
    notice_failed: 'Notice not marked',
    notice_not_in_action: 'This unit is in no running action: no notice to mark',
    notice_need_link: 'Not connected: start first, then mark the notice',
  },
};

let current = loadLanguage();

function loadLanguage() {
  try {
    const saved = localStorage.getItem(STORE_LANG);
    return saved === 'en' ? 'en' : 'zh';
  } catch {
    return 'zh';
  }
}

/** @returns {'zh' | 'en'} */
export function language() {
  return current;
}

/** @param {'zh' | 'en'} lang */
export function setLanguage(lang) {
  current = lang === 'en' ? 'en' : 'zh';
  try {
    localStorage.setItem(STORE_LANG, current);
  } catch {
    // Private mode: the choice lasts for this page only.
  }
}

function fill(template, params) {
  return template.replace(/\{(\w+)\}/g, (_, name) => (params && name in params ? String(params[name]) : `{${name}}`));
}

/**
 * The text for `key` in the current language, with `{name}` placeholders filled from `params`.
 * @param {string} key @param {Record<string, unknown>} [params] @param {'zh' | 'en'} [lang]
 */
export function t(key, params, lang = current) {
  const template = TEXTS[lang][key] ?? TEXTS.zh[key] ?? key;
  return fill(template, params);
}

/** A reason for the command room, in both languages: `本机没有可用的摄像头 no usable camera on this unit`. */
export function wireText(key, params) {
  return `${t(key, params, 'zh')} ${t(key, params, 'en')}`;
}

/**
 * A status message: `{key, params?, detail?, retryS?}` where `detail` is the server's (English)
 * sentence. Returns the text to show and the detail for the element's title.
 * @param {{key: string, params?: object, detail?: string, retryS?: number} | null} message
 */
export function messageText(message) {
  if (!message) return '';
  let text = t(message.key, message.params);
  if (message.detail && current === 'en') text += `: ${message.detail}`;
  if (message.retryS) text += `${current === 'zh' ? '，' : '; '}${t('msg_retry', { s: message.retryS })}`;
  return text;
}

/** The catalogue key for a server error code (`err_bad_token`), or the generic one. */
export function errorKey(code) {
  const key = `err_${code}`;
  return key in TEXTS.zh ? key : 'err_server';
}

/**
 * Put the current language's texts into every element under `root` that names a key:
 * `data-text` (content), `data-text-placeholder`, `data-text-label` (aria-label and title).
 * @param {ParentNode} root
 */
export function applyTexts(root) {
  for (const el of root.querySelectorAll('[data-text]')) el.textContent = t(el.dataset.text);
  for (const el of root.querySelectorAll('[data-text-placeholder]')) {
    /** @type {HTMLInputElement} */ (el).placeholder = t(el.dataset.textPlaceholder);
  }
  for (const el of root.querySelectorAll('[data-text-label]')) {
    el.setAttribute('aria-label', t(el.dataset.textLabel));
    el.setAttribute('title', t(el.dataset.textLabel));
  }
  document.documentElement.lang = current === 'zh' ? 'zh-CN' : 'en';
  document.title = t('page_title');
}
