/**
 * The field page's camera and microphone: one getUserMedia stream for the whole session, shown
 * in the preview, published over WHIP while publishing is on, and the source of snapshots
 * (the preview's current picture drawn on a canvas, encoded as JPEG).
 *
 * The stream stays open while publishing is switched off by a `record_stop` order, so that the
 * officer keeps the preview and a `snapshot` order can still be carried out.
 */

/** What the page asks for: 640x480 is enough for evidence and gentle on 4G uplinks. */
const CONSTRAINTS = { video: { width: 640, height: 480 }, audio: true };
const JPEG_QUALITY = 0.9;
const FIRST_FRAME_TIMEOUT_MS = 5000;

export class CameraError extends Error {
  /** @param {string} key catalogue key @param {string} detail the browser's message */
  constructor(key, detail) {
    super(detail);
    this.key = key;
    this.detail = detail;
  }
}

export class FieldCamera {
  /**
   * @param {HTMLVideoElement} preview
   * @param {(kind: string) => void} onEnded a track ended by itself (device unplugged, revoked)
   */
  constructor(preview, onEnded) {
    this.preview = preview;
    this.onEnded = onEnded;
    /** @type {MediaStream | null} */
    this.stream = null;
  }

  /** Whether the stream has a live video track (snapshots and video publishing need one). */
  get hasVideo() {
    return Boolean(this.stream && this.stream.getVideoTracks().some((track) => track.readyState === 'live'));
  }

  get isOpen() {
    return Boolean(this.stream && this.stream.getTracks().some((track) => track.readyState === 'live'));
  }

  /** Open camera and microphone (once per session). @throws {CameraError} */
  async open() {
    if (this.isOpen) return this.stream;
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      throw new CameraError('msg_camera_failed', 'getUserMedia is not available (the page needs HTTPS)');
    }
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia(CONSTRAINTS);
    } catch (exc) {
      throw new CameraError('msg_camera_failed', `${exc.name || 'Error'}: ${exc.message || exc}`);
    }
    for (const track of stream.getTracks()) {
      track.addEventListener('ended', () => {
        if (this.stream === stream) this.onEnded(track.kind);
      });
    }
    this.stream = stream;
    this.preview.srcObject = stream;
    this.preview.play().catch(() => {});
    return stream;
  }

  close() {
    if (this.stream) {
      for (const track of this.stream.getTracks()) track.stop();
    }
    this.stream = null;
    this.preview.srcObject = null;
  }

  /**
   * The camera's current picture as a JPEG blob.
   * @returns {Promise<Blob>} @throws {CameraError}
   */
  async jpeg() {
    if (!this.hasVideo) throw new CameraError('no_camera', 'no live video track');
    const video = this.preview;
    if (!video.videoWidth) await firstFrame(video);
    const canvas = document.createElement('canvas');
    canvas.width = video.videoWidth;
    canvas.height = video.videoHeight;
    const context = canvas.getContext('2d');
    if (!context) throw new CameraError('snapshot_failed', 'no 2D canvas');
    context.drawImage(video, 0, 0, canvas.width, canvas.height);
    const blob = await new Promise((resolve) => canvas.toBlob(resolve, 'image/jpeg', JPEG_QUALITY));
    if (!blob) throw new CameraError('snapshot_failed', 'the browser could not encode a JPEG');
    return blob;
  }
}

/** @param {HTMLVideoElement} video */
function firstFrame(video) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      video.removeEventListener('loadeddata', done);
      reject(new CameraError('snapshot_failed', 'the camera produced no picture'));
    }, FIRST_FRAME_TIMEOUT_MS);
    function done() {
      clearTimeout(timer);
      resolve();
    }
    video.addEventListener('loadeddata', done, { once: true });
  });
}
