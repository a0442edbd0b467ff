/**
 * The SOS alarm tone, synthesised with WebAudio (no audio files: the console
 * loads nothing it does not serve itself).
 *
 * Browsers start an AudioContext only after a user gesture, so `unlock()` is
 * called from the first click or key press (the login button at the latest);
 * an alarm raised before that plays as soon as the context runs.
 */

/** Two tones, high then low, each this long (seconds). */
const TONE_S = 0.22;
const TONES_HZ = [1046, 784, 1046, 784];
/** The alarm repeats this often while it sounds (milliseconds). */
const REPEAT_MS = 2500;

export class AlarmSound {
  constructor() {
    /** @type {AudioContext | null} */
    this.context = null;
    this.timer = null;
    /** Whether the alarm is sounding (until silenced or stopped). */
    this.sounding = false;
    /** How many alarm phrases were actually played (read by tests). */
    this.beeps = 0;
  }

  /** Create or resume the AudioContext; call from a user gesture. */
  unlock() {
    try {
      if (!this.context) {
        const Context = window.AudioContext || window.webkitAudioContext;
        if (!Context) return;
        this.context = new Context();
      }
      if (this.context.state === 'suspended') this.context.resume().catch(() => {});
    } catch {
      // No audio output: the banner still shows the alarm.
    }
  }

  /** Sound now and then every REPEAT_MS until `stop()`. */
  start() {
    if (this.sounding) return;
    this.sounding = true;
    this.play();
    this.timer = setInterval(() => this.play(), REPEAT_MS);
  }

  stop() {
    this.sounding = false;
    clearInterval(this.timer);
    this.timer = null;
  }

  /** One alarm phrase: alternating tones with short fades (no clicks). */
  play() {
    this.unlock();
    const ctx = this.context;
    if (!ctx || ctx.state !== 'running') return;
    const gain = ctx.createGain();
    gain.connect(ctx.destination);
    let t = ctx.currentTime + 0.02;
    gain.gain.setValueAtTime(0, t);
    for (const hz of TONES_HZ) {
      const osc = ctx.createOscillator();
      osc.type = 'square';
      osc.frequency.setValueAtTime(hz, t);
      osc.connect(gain);
      gain.gain.setValueAtTime(0, t);
      gain.gain.linearRampToValueAtTime(0.18, t + 0.01);
      gain.gain.setValueAtTime(0.18, t + TONE_S - 0.02);
      gain.gain.linearRampToValueAtTime(0, t + TONE_S);
      osc.start(t);
      osc.stop(t + TONE_S);
      t += TONE_S;
    }
    setTimeout(() => gain.disconnect(), (t - ctx.currentTime + 0.2) * 1000);
    this.beeps += 1;
  }
}
