/* media._assembly: media.assembly.FrameAssembler in C, and the frame object both hand to taps.

The recorder's frames are assembled from the stream's packets on the event loop, once per stream
(media/assembly.py says why there and not in a thread). This is the same state machine, rule for
rule, with the pending packets in an open-addressing table keyed by sequence number instead of a
dict, and the depayloading (aiortc's vp8_depayload and h264_depayload, errors and messages
included) and keyframe tests (media/keyframes.py) done in place: a frame costs one bytes object
and one Frame, not a bytes object per packet, a join, an av.Packet and a copy of it.

tests/media/test_assembly.py holds both implementations to the same frames, losses, errors and
state after every packet of long random scenarios; the Python class stays the reference. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_PENDING 1024      /* FrameAssembler.MAX_PENDING */
#define AUDIO_MAX_PENDING 32  /* FrameAssembler.AUDIO_MAX_PENDING */
#define FIRST_CAPACITY 64     /* slots; doubles while more than half are used */

#include "_codec_rules.h"

static long seq_delta(long a, long b) { return ((a - b + 0x8000) & 0xFFFF) - 0x8000; }

/* Frame ----------------------------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    PyObject *data; /* bytes */
    long long pts;
} Frame;

static PyTypeObject FrameType;

static PyObject *frame_make(PyObject *data, long long pts) {
    Frame *f = PyObject_New(Frame, &FrameType);
    if (f == NULL)
        return NULL;
    Py_INCREF(data);
    f->data = data;
    f->pts = pts;
    return (PyObject *)f;
}

static PyObject *frame_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    static char *names[] = {"data", "pts", NULL};
    PyObject *data;
    long long pts;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "SL:Frame", names, &data, &pts))
        return NULL;
    if (!PyBytes_CheckExact(data)) {
        PyErr_SetString(PyExc_TypeError, "Frame: data must be bytes");
        return NULL;
    }
    return frame_make(data, pts);
}

static void frame_dealloc(Frame *self) {
    Py_DECREF(self->data);
    PyObject_Free(self);
}

static PyObject *frame_bytes(Frame *self, PyObject *unused) { return Py_NewRef(self->data); }

static PyObject *frame_repr(Frame *self) {
    return PyUnicode_FromFormat("<Frame pts=%lld, %zd bytes>", self->pts, PyBytes_GET_SIZE(self->data));
}

static PyMethodDef frame_methods[] = {
    {"__bytes__", (PyCFunction)frame_bytes, METH_NOARGS, "the encoded frame"},
    {NULL}};

static PyMemberDef frame_members[] = {
    {"pts", T_LONGLONG, offsetof(Frame, pts), READONLY, "media timestamp (90 kHz video, the codec's clock)"},
    {"data", T_OBJECT, offsetof(Frame, data), READONLY, "the encoded frame"},
    {NULL}};

static PyTypeObject FrameType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "media._assembly.Frame",
    .tp_basicsize = sizeof(Frame),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Frame(data, pts): one encoded frame as taps get it (recordings.source.EncodedFrame)",
    .tp_new = frame_new,
    .tp_dealloc = (destructor)frame_dealloc,
    .tp_repr = (reprfunc)frame_repr,
    .tp_methods = frame_methods,
    .tp_members = frame_members,
};

/* keyframes and depayloading ------------------------------------------------------------- */

/* media.keyframes.payload_starts_keyframe */
static int starts_keyframe(int kind, PyObject *payload) {
    const unsigned char *p = (const unsigned char *)PyBytes_AS_STRING(payload);
    Py_ssize_t n = PyBytes_GET_SIZE(payload);
    if (kind == KIND_VP8)
        return vp8_starts_keyframe(p, n);
    if (kind == KIND_H264)
        return h264_starts_keyframe(p, n);
    return 1;
}

/* media.keyframes.is_keyframe, on a depayloaded frame */
static int is_keyframe(int kind, const unsigned char *d, Py_ssize_t n) {
    if (kind == KIND_VP8)
        return n > 0 && (d[0] & 0x01) == 0;
    if (kind == KIND_H264) { /* the type after each start code 00 00 01 */
        const unsigned char *at = d, *end = d + n;
        while ((at = memmem(at, end - at, "\0\0\1", 3)) != NULL && at + 3 < end) {
            int t = at[3] & 0x1F;
            if (t == 5 || t == 7)
                return 1;
            at += 3;
        }
        return 0;
    }
    return 1;
}

/* aiortc.codecs.vpx.VpxPayloadDescriptor.parse: the descriptor's length, or -1 with ValueError */
static Py_ssize_t vp8_descriptor(const unsigned char *p, Py_ssize_t n) {
    if (n < 1) {
        PyErr_SetString(PyExc_ValueError, "VPX descriptor is too short");
        return -1;
    }
    Py_ssize_t pos = 1;
    if (p[0] >> 7) {
        if (n < pos + 1) {
            PyErr_SetString(PyExc_ValueError, "VPX descriptor has truncated extended bits");
            return -1;
        }
        unsigned char x = p[pos];
        pos += 1;
        if ((x >> 7) & 1) {
            if (n < pos + 1) {
                PyErr_SetString(PyExc_ValueError, "VPX descriptor has truncated PictureID");
                return -1;
            }
            if (p[pos] & 0x80) {
                if (n < pos + 2) {
                    PyErr_SetString(PyExc_ValueError, "VPX descriptor has truncated long PictureID");
                    return -1;
                }
                pos += 2;
            } else {
                pos += 1;
            }
        }
        if ((x >> 6) & 1) {
            if (n < pos + 1) {
                PyErr_SetString(PyExc_ValueError, "VPX descriptor has truncated TL0PICIDX");
                return -1;
            }
            pos += 1;
        }
        if (((x >> 5) & 1) || ((x >> 4) & 1)) {
            if (n < pos + 1) {
                PyErr_SetString(PyExc_ValueError, "VPX descriptor has truncated T/K");
                return -1;
            }
            pos += 1;
        }
    }
    return pos;
}

static const unsigned char START_CODE[4] = {0, 0, 0, 1};

/* aiortc.codecs.h264.H264PayloadDescriptor.parse: writes the Annex-B output to ``out`` if not
   NULL; its length, or -1 with ValueError */
static Py_ssize_t h264_depayload(const unsigned char *p, Py_ssize_t n, unsigned char *out) {
    if (n < 2) {
        PyErr_SetString(PyExc_ValueError, "NAL unit is too short");
        return -1;
    }
    int nal = p[0] & 0x1F;
    if (nal >= 1 && nal < 24) {
        if (out != NULL) {
            memcpy(out, START_CODE, 4);
            memcpy(out + 4, p, n);
        }
        return 4 + n;
    }
    if (nal == 28) {
        int first = p[1] & 0x80;
        Py_ssize_t len = 0;
        if (first) {
            if (out != NULL) {
                memcpy(out, START_CODE, 4);
                out[4] = (unsigned char)((p[0] & 0xE0) | (p[1] & 0x1F));
            }
            len = 5;
        }
        if (out != NULL)
            memcpy(out + len, p + 2, n - 2);
        return len + n - 2;
    }
    if (nal == 24) {
        Py_ssize_t pos = 1, len = 0;
        while (pos < n) {
            if (n < pos + 2) {
                PyErr_SetString(PyExc_ValueError, "STAP-A length field is truncated");
                return -1;
            }
            Py_ssize_t size = (Py_ssize_t)p[pos] << 8 | p[pos + 1];
            pos += 2;
            if (n < pos + size) {
                PyErr_SetString(PyExc_ValueError, "STAP-A data is truncated");
                return -1;
            }
            if (out != NULL) {
                memcpy(out + len, START_CODE, 4);
                memcpy(out + len + 4, p + pos, size);
            }
            len += 4 + size;
            pos += size;
        }
        return len;
    }
    PyErr_Format(PyExc_ValueError, "NAL unit type %d is not supported", nal);
    return -1;
}

/* aiortc.codecs.depayload of one packet: its output's length (writing it to ``out`` if not NULL),
   or -1 with ValueError */
static Py_ssize_t depayload(int kind, PyObject *payload, unsigned char *out) {
    const unsigned char *p = (const unsigned char *)PyBytes_AS_STRING(payload);
    Py_ssize_t n = PyBytes_GET_SIZE(payload);
    if (kind == KIND_VP8) {
        Py_ssize_t skip = vp8_descriptor(p, n);
        if (skip < 0)
            return -1;
        if (out != NULL)
            memcpy(out, p + skip, n - skip);
        return n - skip;
    }
    if (kind == KIND_H264)
        return h264_depayload(p, n, out);
    if (out != NULL)
        memcpy(out, p, n);
    return n;
}

/* the pending packets: open addressing on the sequence number, linear probing ------------ */

typedef struct {
    PyObject *payload; /* NULL: free */
    uint32_t ts;
    uint16_t seq;
    uint8_t marker;
} slot_t;

typedef struct {
    PyObject_HEAD
    PyObject *emit, *on_loss, *codec_key;
    slot_t *slots;
    Py_ssize_t mask; /* capacity - 1 */
    Py_ssize_t count;
    int kind;
    double wait_s, audio_wait_s;
    long next; /* first sequence number of the next frame; -1: None */
    int stalled;
    double stalled_since;
    int need_keyframe;
    int has_last_ts;
    uint32_t last_ts;
    long long pts;
    long long frames, dropped;
} Assembler;

static slot_t *table_find(Assembler *a, long seq) {
    Py_ssize_t i = seq & a->mask;
    for (;;) {
        slot_t *s = &a->slots[i];
        if (s->payload == NULL)
            return NULL;
        if (s->seq == seq)
            return s;
        i = (i + 1) & a->mask;
    }
}

static void table_place(slot_t *slots, Py_ssize_t mask, slot_t entry) {
    Py_ssize_t i = entry.seq & mask;
    while (slots[i].payload != NULL)
        i = (i + 1) & mask;
    slots[i] = entry;
}

static int table_put(Assembler *a, long seq, uint32_t ts, int marker, PyObject *payload) {
    slot_t *s = table_find(a, seq);
    if (s != NULL) {
        Py_INCREF(payload);
        Py_SETREF(s->payload, payload);
        s->ts = ts;
        s->marker = (uint8_t)marker;
        return 0;
    }
    if ((a->count + 1) * 2 > a->mask + 1) {
        Py_ssize_t capacity = (a->mask + 1) * 2;
        slot_t *slots = PyMem_Calloc(capacity, sizeof(slot_t));
        if (slots == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        for (Py_ssize_t i = 0; i <= a->mask; i++)
            if (a->slots[i].payload != NULL)
                table_place(slots, capacity - 1, a->slots[i]);
        PyMem_Free(a->slots);
        a->slots = slots;
        a->mask = capacity - 1;
    }
    Py_INCREF(payload);
    slot_t entry = {payload, ts, (uint16_t)seq, (uint8_t)marker};
    table_place(a->slots, a->mask, entry);
    a->count += 1;
    return 0;
}

/* Removes the entry at ``s`` and hands its payload reference to the caller. */
static PyObject *table_take(Assembler *a, slot_t *s) {
    PyObject *payload = s->payload;
    Py_ssize_t mask = a->mask, i = s - a->slots, j = i;
    a->slots[i].payload = NULL;
    for (;;) { /* backward-shift deletion: no tombstones */
        j = (j + 1) & mask;
        if (a->slots[j].payload == NULL)
            break;
        Py_ssize_t home = a->slots[j].seq & mask;
        /* the entry at j stays if its home lies cyclically in (i, j] */
        int stays = (i <= j) ? (i < home && home <= j) : (i < home || home <= j);
        if (!stays) {
            a->slots[i] = a->slots[j];
            a->slots[j].payload = NULL;
            i = j;
        }
    }
    a->count -= 1;
    return payload;
}

static void table_remove(Assembler *a, long seq) {
    slot_t *s = table_find(a, seq);
    if (s != NULL)
        Py_DECREF(table_take(a, s));
}

static void table_clear(Assembler *a) {
    for (Py_ssize_t i = 0; i <= a->mask; i++)
        Py_CLEAR(a->slots[i].payload);
    a->count = 0;
}

/* the pending sequence numbers, in a new array (PyMem_Free it); NULL with MemoryError */
static long *table_keys(Assembler *a) {
    long *keys = PyMem_Malloc((a->count + 1) * sizeof(long));
    if (keys == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    Py_ssize_t k = 0;
    for (Py_ssize_t i = 0; i <= a->mask; i++)
        if (a->slots[i].payload != NULL)
            keys[k++] = a->slots[i].seq;
    return keys;
}

static long sort_origin;
static int by_delta(const void *x, const void *y) {
    long a = seq_delta(*(const long *)x, sort_origin), b = seq_delta(*(const long *)y, sort_origin);
    return (a > b) - (a < b);
}

/* the state machine ------------------------------------------------------------------------ */

static int lost(Assembler *a) {
    a->dropped += 1;
    a->need_keyframe = 1;
    PyObject *r = PyObject_CallNoArgs(a->on_loss);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
}

/* FrameAssembler._frame; takes the references in ``parts`` */
static int emit_frame(Assembler *a, uint32_t ts, PyObject **parts, Py_ssize_t n) {
    int video = a->kind != KIND_AUDIO, keyframe = 1, rc = -1;
    PyObject *data = NULL, *frame = NULL;
    if (video) {
        Py_ssize_t total = 0;
        for (Py_ssize_t k = 0; k < n; k++) {
            Py_ssize_t len = depayload(a->kind, parts[k], NULL);
            if (len < 0)
                goto done;
            total += len;
        }
        data = PyBytes_FromStringAndSize(NULL, total);
        if (data == NULL)
            goto done;
        unsigned char *out = (unsigned char *)PyBytes_AS_STRING(data);
        for (Py_ssize_t k = 0; k < n; k++)
            out += depayload(a->kind, parts[k], out);
        keyframe = is_keyframe(a->kind, (const unsigned char *)PyBytes_AS_STRING(data), total);
        if (a->need_keyframe && !keyframe) {
            rc = 0;
            goto done;
        }
    } else {
        data = Py_NewRef(parts[0]);
    }
    a->need_keyframe = 0;
    if (a->has_last_ts)
        a->pts += (uint32_t)(ts - a->last_ts);
    a->last_ts = ts;
    a->has_last_ts = 1;
    frame = frame_make(data, a->pts);
    if (frame == NULL)
        goto done;
    a->frames += 1;
    PyObject *r = PyObject_CallFunctionObjArgs(a->emit, frame, keyframe ? Py_True : Py_False, NULL);
    if (r == NULL)
        goto done;
    Py_DECREF(r);
    rc = 0;
done:
    Py_XDECREF(frame);
    Py_XDECREF(data);
    for (Py_ssize_t k = 0; k < n; k++)
        Py_DECREF(parts[k]);
    return rc;
}

/* FrameAssembler._skip_gap */
static int skip_gap(Assembler *a) {
    long *keys = table_keys(a);
    if (keys == NULL)
        return -1;
    Py_ssize_t n = a->count;
    sort_origin = a->next;
    qsort(keys, n, sizeof(long), by_delta);
    long resume = -1;
    for (Py_ssize_t k = 0; k < n; k++) {
        long s = keys[k];
        if (s == a->next)
            continue;
        slot_t *prev = table_find(a, (s - 1) & 0xFFFF);
        if ((prev != NULL && prev->marker) || starts_keyframe(a->kind, table_find(a, s)->payload)) {
            resume = s;
            break;
        }
    }
    if (resume < 0) {
        table_clear(a);
        a->next = -1;
    } else {
        for (Py_ssize_t k = 0; k < n && keys[k] != resume; k++)
            table_remove(a, keys[k]);
        a->next = resume;
    }
    PyMem_Free(keys);
    return lost(a);
}

/* FrameAssembler._drain (its recursion after a skipped gap is the outer loop) */
static int drain(Assembler *a, double now) {
    for (;;) {
        while (a->next >= 0) {
            long start = a->next, seq = start;
            slot_t *first = table_find(a, seq);
            if (first == NULL)
                break;
            uint32_t ts = first->ts;
            Py_ssize_t n = 0;
            int complete = 0;
            slot_t *entry;
            for (;;) {
                entry = table_find(a, seq);
                if (entry == NULL || entry->ts != ts)
                    break;
                n += 1;
                if (entry->marker) {
                    complete = 1;
                    break;
                }
                seq = (seq + 1) & 0xFFFF;
            }
            if (complete) {
                PyObject *small[64], **parts = small;
                if (n > 64 && (parts = PyMem_Malloc(n * sizeof(PyObject *))) == NULL) {
                    PyErr_NoMemory();
                    return -1;
                }
                for (Py_ssize_t k = 0; k < n; k++)
                    parts[k] = table_take(a, table_find(a, (start + k) & 0xFFFF));
                a->next = (seq + 1) & 0xFFFF;
                a->stalled = 0;
                int rc = emit_frame(a, ts, parts, n);
                if (parts != small)
                    PyMem_Free(parts);
                if (rc < 0)
                    return -1;
                continue;
            }
            if (entry != NULL) { /* FrameAssembler._drop: the frame lost its end */
                for (long s = start; s != seq; s = (s + 1) & 0xFFFF)
                    table_remove(a, s);
                a->next = seq;
                if (lost(a) < 0)
                    return -1;
                continue;
            }
            break;
        }
        if (a->count == 0) {
            a->stalled = 0;
            return 0;
        }
        if (!a->stalled) {
            a->stalled = 1;
            a->stalled_since = now;
            return 0;
        }
        if (now - a->stalled_since > a->wait_s || a->count > MAX_PENDING) {
            if (skip_gap(a) < 0)
                return -1;
            a->stalled = 0;
            continue;
        }
        return 0;
    }
}

/* FrameAssembler._push_audio */
static int push_audio(Assembler *a, long seq, uint32_t ts, PyObject *payload, double now) {
    if (a->next < 0)
        a->next = seq;
    else if (seq_delta(seq, a->next) < 0)
        return 0;
    if (table_put(a, seq, ts, 1, payload) < 0)
        return -1;
    while (a->next >= 0) {
        slot_t *entry = table_find(a, a->next);
        if (entry != NULL) {
            uint32_t its = entry->ts;
            PyObject *part = table_take(a, entry);
            if (emit_frame(a, its, &part, 1) < 0)
                return -1;
            a->next = (a->next + 1) & 0xFFFF;
            a->stalled = 0;
            continue;
        }
        if (a->count == 0)
            break;
        if (!a->stalled) {
            a->stalled = 1;
            a->stalled_since = now;
        }
        if (now - a->stalled_since <= a->audio_wait_s && a->count <= AUDIO_MAX_PENDING)
            break;
        long *keys = table_keys(a);
        if (keys == NULL)
            return -1;
        long resume = keys[0];
        for (Py_ssize_t k = 1; k < a->count; k++)
            if (seq_delta(keys[k], a->next) < seq_delta(resume, a->next))
                resume = keys[k];
        PyMem_Free(keys);
        a->dropped += seq_delta(resume, a->next);
        a->next = resume;
        a->stalled = 0;
    }
    return 0;
}

/* FrameAssembler.push */
static PyObject *assembler_push(Assembler *a, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 5) {
        PyErr_Format(PyExc_TypeError, "push() takes 5 arguments (%zd given)", nargs);
        return NULL;
    }
    long seq = PyLong_AsLong(args[0]);
    unsigned long ts = PyLong_AsUnsignedLong(args[1]);
    int marker = PyObject_IsTrue(args[2]);
    double now = PyFloat_AsDouble(args[4]);
    if (PyErr_Occurred() || marker < 0)
        return NULL;
    PyObject *payload = args[3];
    if (!PyBytes_Check(payload)) {
        PyErr_SetString(PyExc_TypeError, "push(): payload must be bytes");
        return NULL;
    }
    if (seq < 0 || seq > 0xFFFF || ts > 0xFFFFFFFFUL) {
        PyErr_SetString(PyExc_ValueError, "push(): sequence number or timestamp out of range");
        return NULL;
    }
    int kept = 0; /* the packet is in the table already */
    if (a->kind == KIND_AUDIO) {
        if (push_audio(a, seq, (uint32_t)ts, payload, now) < 0)
            return NULL;
        Py_RETURN_NONE;
    }
    if (a->next < 0) {
        /* waiting for the first packet of a keyframe; keep what arrives meanwhile */
        if (a->count >= MAX_PENDING)
            table_clear(a);
        if (table_put(a, seq, (uint32_t)ts, marker, payload) < 0)
            return NULL;
        kept = 1;
        if (!starts_keyframe(a->kind, payload))
            Py_RETURN_NONE;
        a->next = seq;
        long *keys = table_keys(a);
        if (keys == NULL)
            return NULL;
        Py_ssize_t n = a->count;
        for (Py_ssize_t k = 0; k < n; k++)
            if (seq_delta(keys[k], seq) < 0)
                table_remove(a, keys[k]);
        PyMem_Free(keys);
    } else if (seq_delta(seq, a->next) < 0) {
        slot_t *first = table_find(a, a->next);
        if (!(first != NULL && first->ts == ts && starts_keyframe(a->kind, payload)))
            Py_RETURN_NONE; /* its frame was emitted or dropped already */
        a->next = seq;       /* an earlier start of the same keyframe */
    }
    if ((!kept && table_put(a, seq, (uint32_t)ts, marker, payload) < 0) || drain(a, now) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *assembler_restart(Assembler *a, PyObject *unused) {
    table_clear(a);
    a->next = -1;
    a->stalled = 0;
    a->need_keyframe = 1;
    Py_RETURN_NONE;
}

/* (next or None, stalled_since or None, need_keyframe, ((seq, ts, marker, payload), ...) sorted) */
static PyObject *assembler_state(Assembler *a, PyObject *unused) {
    long *keys = table_keys(a);
    if (keys == NULL)
        return NULL;
    Py_ssize_t n = a->count;
    for (Py_ssize_t k = 1; k < n; k++) { /* plain numeric order, as sorted() gives */
        long key = keys[k];
        Py_ssize_t j = k;
        for (; j > 0 && keys[j - 1] > key; j--)
            keys[j] = keys[j - 1];
        keys[j] = key;
    }
    PyObject *pending = PyTuple_New(n);
    if (pending == NULL) {
        PyMem_Free(keys);
        return NULL;
    }
    for (Py_ssize_t k = 0; k < n; k++) {
        slot_t *s = table_find(a, keys[k]);
        PyObject *item = Py_BuildValue("(lkOO)", (long)s->seq, (unsigned long)s->ts, s->marker ? Py_True : Py_False,
                                       s->payload);
        if (item == NULL) {
            Py_DECREF(pending);
            PyMem_Free(keys);
            return NULL;
        }
        PyTuple_SET_ITEM(pending, k, item);
    }
    PyMem_Free(keys);
    PyObject *r = NULL, *next = a->next < 0 ? Py_NewRef(Py_None) : PyLong_FromLong(a->next);
    PyObject *since = a->stalled ? PyFloat_FromDouble(a->stalled_since) : Py_NewRef(Py_None);
    if (next != NULL && since != NULL)
        r = Py_BuildValue("(OOOO)", next, since, a->need_keyframe ? Py_True : Py_False, pending);
    Py_XDECREF(next);
    Py_XDECREF(since);
    Py_DECREF(pending);
    return r;
}

static int assembler_traverse(Assembler *a, visitproc visit, void *arg) {
    Py_VISIT(a->emit);
    Py_VISIT(a->on_loss);
    Py_VISIT(a->codec_key);
    return 0;
}

static int assembler_clear(Assembler *a) {
    Py_CLEAR(a->emit);
    Py_CLEAR(a->on_loss);
    Py_CLEAR(a->codec_key);
    return 0;
}

static void assembler_dealloc(Assembler *a) {
    PyObject_GC_UnTrack(a);
    assembler_clear(a);
    if (a->slots != NULL) {
        table_clear(a);
        PyMem_Free(a->slots);
    }
    Py_TYPE(a)->tp_free((PyObject *)a);
}

static int assembler_init(Assembler *a, PyObject *args, PyObject *kwds) {
    static char *names[] = {"kind", "codec_key", "emit", "on_loss", "wait_s", "audio_wait_s", NULL};
    int kind;
    PyObject *codec_key, *emit, *on_loss;
    double wait_s = 1.0, audio_wait_s = 0.15;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "iOOO|dd:Assembler", names, &kind, &codec_key, &emit, &on_loss,
                                     &wait_s, &audio_wait_s))
        return -1;
    if (kind < KIND_AUDIO || kind > KIND_VIDEO) {
        PyErr_Format(PyExc_ValueError, "Assembler: unknown kind %d", kind);
        return -1;
    }
    if (!PyCallable_Check(emit) || !PyCallable_Check(on_loss)) {
        PyErr_SetString(PyExc_TypeError, "Assembler: emit and on_loss must be callable");
        return -1;
    }
    if (a->slots == NULL) {
        a->slots = PyMem_Calloc(FIRST_CAPACITY, sizeof(slot_t));
        if (a->slots == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        a->mask = FIRST_CAPACITY - 1;
    } else {
        table_clear(a);
    }
    Py_XSETREF(a->emit, Py_NewRef(emit));
    Py_XSETREF(a->on_loss, Py_NewRef(on_loss));
    Py_XSETREF(a->codec_key, Py_NewRef(codec_key));
    a->kind = kind;
    a->wait_s = wait_s;
    a->audio_wait_s = audio_wait_s;
    a->next = -1;
    a->stalled = 0;
    a->need_keyframe = 1;
    a->has_last_ts = 0;
    a->pts = 0;
    a->frames = a->dropped = 0;
    return 0;
}

static PyMethodDef assembler_methods[] = {
    {"push", (PyCFunction)(void (*)(void))assembler_push, METH_FASTCALL,
     "push(seq, ts, marker, payload, now): one packet of the stream, in its forwarded numbering"},
    {"restart", (PyCFunction)assembler_restart, METH_NOARGS, "forget partial frames; the next one is a keyframe"},
    {"state", (PyCFunction)assembler_state, METH_NOARGS, "(next, stalled_since, need_keyframe, pending), for tests"},
    {NULL}};

static PyMemberDef assembler_members[] = {
    {"codec_key", T_OBJECT, offsetof(Assembler, codec_key), READONLY, "(mime type, clock rate)"},
    {"frames", T_LONGLONG, offsetof(Assembler, frames), READONLY, "frames handed on"},
    {"dropped", T_LONGLONG, offsetof(Assembler, dropped), READONLY, "frames (video) or packets (audio) lost"},
    {NULL}};

static PyTypeObject AssemblerType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "media._assembly.Assembler",
    .tp_basicsize = sizeof(Assembler),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "Assembler(kind, codec_key, emit, on_loss, wait_s=1.0, audio_wait_s=0.15): media.assembly.FrameAssembler",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)assembler_init,
    .tp_dealloc = (destructor)assembler_dealloc,
    .tp_traverse = (traverseproc)assembler_traverse,
    .tp_clear = (inquiry)assembler_clear,
    .tp_methods = assembler_methods,
    .tp_members = assembler_members,
};

/* the codec rules alone, for tests to hold to media.keyframes and aiortc.codecs.depayload */

static int kind_and_bytes(PyObject *const *args, Py_ssize_t nargs, const char *name, int *kind) {
    if (nargs != 2 || !PyBytes_Check(args[1])) {
        PyErr_Format(PyExc_TypeError, "%s(kind, data: bytes)", name);
        return -1;
    }
    *kind = PyLong_AsLong(args[0]);
    if (*kind == -1 && PyErr_Occurred())
        return -1;
    if (*kind < KIND_AUDIO || *kind > KIND_VIDEO) {
        PyErr_Format(PyExc_ValueError, "%s: unknown kind %d", name, *kind);
        return -1;
    }
    return 0;
}

static PyObject *module_starts_keyframe(PyObject *m, PyObject *const *args, Py_ssize_t nargs) {
    int kind;
    if (kind_and_bytes(args, nargs, "payload_starts_keyframe", &kind) < 0)
        return NULL;
    return PyBool_FromLong(kind == KIND_AUDIO || starts_keyframe(kind, args[1]));
}

static PyObject *module_is_keyframe(PyObject *m, PyObject *const *args, Py_ssize_t nargs) {
    int kind;
    if (kind_and_bytes(args, nargs, "is_keyframe", &kind) < 0)
        return NULL;
    return PyBool_FromLong(is_keyframe(kind, (const unsigned char *)PyBytes_AS_STRING(args[1]),
                                       PyBytes_GET_SIZE(args[1])));
}

static PyObject *module_depayload(PyObject *m, PyObject *const *args, Py_ssize_t nargs) {
    int kind;
    if (kind_and_bytes(args, nargs, "depayload", &kind) < 0)
        return NULL;
    if (kind == KIND_AUDIO)
        return Py_NewRef(args[1]);
    Py_ssize_t len = depayload(kind, args[1], NULL);
    if (len < 0)
        return NULL;
    PyObject *out = PyBytes_FromStringAndSize(NULL, len);
    if (out != NULL)
        depayload(kind, args[1], (unsigned char *)PyBytes_AS_STRING(out));
    return out;
}

static PyMethodDef module_functions[] = {
    {"payload_starts_keyframe", (PyCFunction)(void (*)(void))module_starts_keyframe, METH_FASTCALL,
     "payload_starts_keyframe(kind, payload): media.keyframes.payload_starts_keyframe"},
    {"is_keyframe", (PyCFunction)(void (*)(void))module_is_keyframe, METH_FASTCALL,
     "is_keyframe(kind, frame): media.keyframes.is_keyframe"},
    {"depayload", (PyCFunction)(void (*)(void))module_depayload, METH_FASTCALL,
     "depayload(kind, payload): aiortc.codecs.depayload, ValueError included"},
    {NULL}};

static struct PyModuleDef assembly_module = {
    PyModuleDef_HEAD_INIT, "media._assembly",
    "media.assembly.FrameAssembler in C (media/_assembly.c), and the frames both hand to taps.", -1,
    module_functions};

PyMODINIT_FUNC PyInit__assembly(void) {
    if (PyType_Ready(&FrameType) < 0 || PyType_Ready(&AssemblerType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&assembly_module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddObjectRef(m, "Frame", (PyObject *)&FrameType) < 0 ||
        PyModule_AddObjectRef(m, "Assembler", (PyObject *)&AssemblerType) < 0 ||
        PyModule_AddIntConstant(m, "KIND_AUDIO", KIND_AUDIO) < 0 || PyModule_AddIntConstant(m, "KIND_VP8", KIND_VP8) < 0 ||
        PyModule_AddIntConstant(m, "KIND_H264", KIND_H264) < 0 ||
        PyModule_AddIntConstant(m, "KIND_VIDEO", KIND_VIDEO) < 0 ||
        PyModule_AddIntConstant(m, "MAX_PENDING", MAX_PENDING) < 0 ||
        PyModule_AddIntConstant(m, "AUDIO_MAX_PENDING", AUDIO_MAX_PENDING) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
