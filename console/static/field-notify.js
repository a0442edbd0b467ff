/**
 * A new instruction is announced with a short beep (WebAudio, no audio file) and a vibration,
 * where the browser allows them: browsers run an AudioContext only after a user gesture, so
 * `unlock()` is called from the tap on 开始; a kiosk started with `autostart=1` may stay silent
 * until the first tap. Urgent instructions beep and vibrate twice.
 */

const BEEP_HZ = 880;
const BEEP_S = 0.15;

export class Notifier {
  constructor() {
    /** @type {AudioContext | null} */
    this.context = null;
    /** Beeps played and vibrations asked for (read by tests). */
    this.beeps = 0;
    this.vibrations = 0;
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
      // No audio output: the card still shows the instruction.
    }
  }

  /** @param {boolean} urgent */
  announce(urgent) {
    this.beep(urgent ? 2 : 1);
    if (typeof navigator.vibrate === 'function') {
      try {
        if (navigator.vibrate(urgent ? [300, 150, 300] : [200])) this.vibrations += 1;
      } catch {
        // Not allowed without a gesture in some browsers: the beep and the card remain.
      }
    }
  }

  beep(times) {
    const ctx = this.context;
    if (!ctx || ctx.state === 'closed') return;
    if (ctx.state !== 'running') {
      // Still starting (or waiting for a gesture): beep once it runs, not never.
      ctx.resume().then(() => this.beep(times), () => {});
      return;
    }
    for (let i = 0; i < times; i += 1) {
      const start = ctx.currentTime + i * (BEEP_S + 0.1);
      const osc = ctx.createOscillator();
      const gain = ctx.createGain();
      osc.frequency.value = BEEP_HZ;
      gain.gain.setValueAtTime(0.0001, start);
      gain.gain.exponentialRampToValueAtTime(0.3, start + 0.01);
      gain.gain.exponentialRampToValueAtTime(0.0001, start + BEEP_S);
      osc.connect(gain).connect(ctx.destination);
      osc.start(start);
      osc.stop(start + BEEP_S + 0.02);
    }
    this.beeps += 1;
  }
}
