/* The codec rules of media/keyframes.py that both media._assembly and media._dataplane apply to
 * RTP payloads (tests/media/test_assembly.py holds them to the Python, payload by payload). */
#ifndef MEDIA_CODEC_RULES_H
#define MEDIA_CODEC_RULES_H

#include <Python.h>

enum { KIND_AUDIO = 0, KIND_VP8 = 1, KIND_H264 = 2, KIND_VIDEO = 3 /* another video codec */ };

/* media.keyframes.vp8_payload_starts_keyframe */
static inline int vp8_starts_keyframe(const unsigned char *p, Py_ssize_t n) {
    if (n < 2)
        return 0;
    unsigned char b0 = p[0];
    if (!(b0 & 0x10) || (b0 & 0x07))
        return 0;
    Py_ssize_t i = 1;
    if (b0 & 0x80) {
        unsigned char x = p[1];
        i = 2;
        if (x & 0x80) {
            if (i >= n)
                return 0;
            i += (p[i] & 0x80) ? 2 : 1;
        }
        if (x & 0x40)
            i += 1;
        if (x & 0x30)
            i += 1;
    }
    return i < n && (p[i] & 0x01) == 0;
}

/* media.keyframes._h264_payload_holds with types (5, 7) or (7,) */
static inline int h264_holds(const unsigned char *p, Py_ssize_t n, int idr_too) {
    int nal = p[0] & 0x1F;
    if (nal == 7 || (idr_too && nal == 5))
        return 1;
    if (nal == 24) {
        Py_ssize_t i = 1;
        while (i + 2 < n) {
            int t = p[i + 2] & 0x1F;
            if (t == 7 || (idr_too && t == 5))
                return 1;
            i += 2 + ((Py_ssize_t)p[i] << 8 | p[i + 1]);
        }
    }
    return 0;
}

/* media.keyframes.h264_payload_starts_keyframe */
static inline int h264_starts_keyframe(const unsigned char *p, Py_ssize_t n) {
    if (n == 0)
        return 0;
    if ((p[0] & 0x1F) == 28)
        return n > 1 && (p[1] & 0x80) && ((p[1] & 0x1F) == 5 || (p[1] & 0x1F) == 7);
    return h264_holds(p, n, 1);
}

/* media.keyframes.h264_payload_has_sps */
static inline int h264_has_sps(const unsigned char *p, Py_ssize_t n) { return n > 0 && h264_holds(p, n, 0); }

#endif
