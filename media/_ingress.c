/* media._dataplane, continued: a publisher's RTP from the unprotected datagram to the fan-out.
 *
 * The state of media.ingress.PublisherIngress, its routes, media.packets.PacketStream and
 * media.loss.NackTracker lives in the C fields of their base classes here (IngressCore, RouteCore,
 * StreamCore, NackCore), which Python sees as attributes; the Python methods stay the reference
 * (PublisherIngress._on_rtp, _Route.count, PacketStream.on_packet, NackTracker.seen) and run on
 * the same fields. PacketCache is media.loss.PacketCache with its slots in a C array.
 *
 * On the native data plane the Inbound hook hands each unprotected packet straight to
 * ingress_rtp(): parse, route, reception counts, renumbering, the NACK tracker's bookkeeping,
 * keyframe detection, the cache, the fan-out and the recorder's assembler, without a Python frame.
 * What is rare goes back to Python by name, as the reference does it: a new source
 * (_source_changed), the NACK tracker's due work (_tend), a pending PLI (send_pli), the receiver
 * reports (_send_reports), a waiter for recovery (_check_recovered), a keyframe's arrival
 * (Fanout.keyframe_arrived, keyframe_overdue), and the assembler's own calls.
 *
 * tests/media/test_ingress_native.py feeds both the same rough streams and compares everything
 * after every packet.
 */
#include <math.h>

#include "_codec_rules.h"
#include "_dataplane.h"

#define NACK_MAX_GAP 256       /* media.loss.NackTracker.MAX_GAP */
#define REPORT_INTERVAL_S 1.0 /* media.ingress.REPORT_INTERVAL_S */

static PyObject *s_keyframe_arrived, *s_keyframe_overdue, *s_keyframe_awaited, *s_last_packet_at, *s_bytes_in,
    *s_frames_in, *s_taps, *s_restart, *s_push, *s_source_changed, *s_tend, *s_send_pli, *s_kind, *s_send_reports,
    *s_check_recovered;
static PyObject *cached_packet_type; /* media.loss.CachedPacket, once loss.py registered it */

#define VISIT_DICT_AND(type, ...)                                                                                \
    static int type##_traverse(type *self, visitproc visit, void *arg) {                                         \
        Py_VISIT(Py_TYPE(self));                                                                                 \
        Py_VISIT(self->dict);                                                                                    \
        PyObject *objs[] = {__VA_ARGS__};                                                                        \
        for (size_t i = 0; i < sizeof(objs) / sizeof(objs[0]); i++) Py_VISIT(objs[i]);                          \
        return 0;                                                                                                \
    }

static PyObject *get_double_or_none(double value, char has) {
    if (!has) Py_RETURN_NONE;
    return PyFloat_FromDouble(value);
}

static int set_double_or_none(double *slot, char *has, PyObject *value, const char *name) {
    if (value == NULL) {
        PyErr_Format(PyExc_AttributeError, "%s cannot be deleted", name);
        return -1;
    }
    if (value == Py_None) {
        *has = 0;
        return 0;
    }
    double v = PyFloat_AsDouble(value);
    if (v == -1.0 && PyErr_Occurred()) return -1;
    *slot = v;
    *has = 1;
    return 0;
}

static int call_method(PyObject *obj, PyObject *name, PyObject *arg1, PyObject *arg2) {
    PyObject *args[3] = {obj, arg1, arg2};
    size_t n = arg1 == NULL ? 1 : arg2 == NULL ? 2 : 3;
    PyObject *r = PyObject_VectorcallMethod(name, args, n | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    if (r == NULL) return -1;
    Py_DECREF(r);
    return 0;
}

static int call_method_now(PyObject *obj, PyObject *name, PyObject *arg, double now) {
    PyObject *t = PyFloat_FromDouble(now);
    if (t == NULL) return -1;
    int rc = arg == NULL ? call_method(obj, name, t, NULL) : call_method(obj, name, arg, t);
    Py_DECREF(t);
    return rc;
}

/* ---------------------------------------------------------------------------------------------
 * NackCore: the fields of media.loss.NackTracker; nack_seen() is NackTracker.seen.
 */
typedef struct {
    PyObject_HEAD
    PyObject *dict, *weakrefs;
    PyObject *missing; /* seq -> [first missed at, last NACKed at, tries] */
    PyObject *lost;    /* given up since the last take_lost() */
    long long highest; /* -1: None */
    double due_at;
    long long nacked, recovered, given_up;
    char active;
} NackCore;

VISIT_DICT_AND(NackCore, self->missing, self->lost)

static int NackCore_clear(NackCore *self) {
    Py_CLEAR(self->dict);
    Py_CLEAR(self->missing);
    Py_CLEAR(self->lost);
    return 0;
}

static void NackCore_dealloc(NackCore *self) {
    PyObject_GC_UnTrack(self);
    if (self->weakrefs != NULL) PyObject_ClearWeakRefs((PyObject *)self);
    NackCore_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *NackCore_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    NackCore *self = (NackCore *)type->tp_alloc(type, 0);
    if (self == NULL) return NULL;
    self->missing = PyDict_New();
    self->lost = PyList_New(0);
    if (self->missing == NULL || self->lost == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    self->highest = -1;
    self->due_at = INFINITY;
    self->active = 1;
    return (PyObject *)self;
}

static PyObject *nack_get_highest(NackCore *self, void *c) { return dp_get_optional(self->highest); }
static int nack_set_highest(NackCore *self, PyObject *v, void *c) {
    return dp_set_optional(&self->highest, v, "_highest", 0xFFFF);
}
static PyObject *nack_get_active(NackCore *self, void *c) { return PyBool_FromLong(self->active); }
static int nack_set_active(NackCore *self, PyObject *v, void *c) { return dp_set_flag(&self->active, v, "active"); }

static PyGetSetDef nack_getset[] = {
    {"_highest", (getter)nack_get_highest, (setter)nack_set_highest, "the highest sequence number seen", NULL},
    {"active", (getter)nack_get_active, (setter)nack_set_active, "NACK negotiated", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMemberDef nack_members[] = {
    {"_missing", T_OBJECT_EX, offsetof(NackCore, missing), 0, "seq -> [first missed at, last NACKed at, tries]"},
    {"_lost", T_OBJECT_EX, offsetof(NackCore, lost), 0, "given up since the last take_lost()"},
    {"_due_at", T_DOUBLE, offsetof(NackCore, due_at), 0, "no entry is due before this"},
    {"nacked", T_LONGLONG, offsetof(NackCore, nacked), 0, "sequence numbers sent in NACKs"},
    {"recovered", T_LONGLONG, offsetof(NackCore, recovered), 0, "missing ones that arrived"},
    {"given_up", T_LONGLONG, offsetof(NackCore, given_up), 0, "lost for good"},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject NackCoreType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "media._dataplane.NackCore",
    .tp_basicsize = sizeof(NackCore),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_BASETYPE,
    .tp_doc = "The fields of media.loss.NackTracker (its base class)",
    .tp_new = NackCore_new,
    .tp_dealloc = (destructor)NackCore_dealloc,
    .tp_traverse = (traverseproc)NackCore_traverse,
    .tp_clear = (inquiry)NackCore_clear,
    .tp_members = nack_members,
    .tp_getset = nack_getset,
    .tp_dictoffset = offsetof(NackCore, dict),
    .tp_weaklistoffset = offsetof(NackCore, weakrefs),
};

static int nack_checked(NackCore *t) {
    if (t->missing == NULL || !PyDict_CheckExact(t->missing) || t->lost == NULL || !PyList_CheckExact(t->lost)) {
        PyErr_SetString(PyExc_TypeError, "NackTracker._missing must be a dict and _lost a list");
        return -1;
    }
    return 0;
}

/* NackTracker.seen */
static int nack_seen(NackCore *t, long seq, double now) {
    if (!t->active) return 0;
    if (nack_checked(t) < 0) return -1;
    if (t->highest < 0) {
        t->highest = seq;
        return 0;
    }
    long d = dp_seq_delta(seq, (long)t->highest);
    if (d > 0) {
        if (1 < d && d <= NACK_MAX_GAP) {
            for (long k = 1; k < d; k++) {
                PyObject *key = PyLong_FromLong((long)((t->highest + k) & 0xFFFF));
                PyObject *state = Py_BuildValue("[ddd]", now, -INFINITY, 0.0);
                int rc = key == NULL || state == NULL ? -1 : PyDict_SetItem(t->missing, key, state);
                Py_XDECREF(key);
                Py_XDECREF(state);
                if (rc < 0) return -1;
            }
            if (now < t->due_at) t->due_at = now;
        } else if (d > NACK_MAX_GAP) {
            PyDict_Clear(t->missing);
        }
        t->highest = seq;
    } else if (d < 0 && PyDict_GET_SIZE(t->missing)) {
        PyObject *key = PyLong_FromLong(seq);
        if (key == NULL) return -1;
        int found = PyDict_Contains(t->missing, key);
        if (found > 0) found = PyDict_DelItem(t->missing, key) < 0 ? -1 : 1;
        Py_DECREF(key);
        if (found < 0) return -1;
        if (found) t->recovered += 1;
    }
    return 0;
}

static int nack_waiting(NackCore *t) { return PyDict_GET_SIZE(t->missing) > 0 || PyList_GET_SIZE(t->lost) > 0; }

/* NackTracker.has_work */
static int nack_has_work(NackCore *t, double now) {
    return PyList_GET_SIZE(t->lost) > 0 || (PyDict_GET_SIZE(t->missing) > 0 && now >= t->due_at);
}

/* ---------------------------------------------------------------------------------------------
 * PacketCache: media.loss.PacketCache with its slots and its record of puts in C arrays.
 */
typedef struct {
    long long seq; /* -1: empty */
    long long ts;
    PyObject *payload;
    char marker;
} cache_slot;

typedef struct {
    double at;
    long long seq;
} cache_put;

typedef struct {
    PyObject_HEAD
    cache_slot *slots;
    Py_ssize_t size;
    double max_age;
    char has_max_age;
    cache_put *puts; /* a ring, oldest at head */
    Py_ssize_t puts_cap, puts_head, puts_len;
} PacketCache;

static void cache_empty(PacketCache *self) {
    for (Py_ssize_t i = 0; i < self->size; i++) {
        Py_CLEAR(self->slots[i].payload);
        self->slots[i].seq = -1;
    }
    self->puts_head = self->puts_len = 0;
}

static void cache_dealloc(PacketCache *self) {
    if (self->slots != NULL) cache_empty(self);
    PyMem_Free(self->slots);
    PyMem_Free(self->puts);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int cache_init(PacketCache *self, PyObject *args, PyObject *kwds) {
    static char *names[] = {"size", "max_age_s", NULL};
    Py_ssize_t size = 512;
    PyObject *max_age = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|nO:PacketCache", names, &size, &max_age)) return -1;
    if (size < 1 || size > 1 << 20) {
        PyErr_SetString(PyExc_ValueError, "size must be in 1..2**20");
        return -1;
    }
    if (self->slots != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "PacketCache is already initialised");
        return -1;
    }
    self->has_max_age = max_age != Py_None;
    if (self->has_max_age) {
        self->max_age = PyFloat_AsDouble(max_age);
        if (self->max_age == -1.0 && PyErr_Occurred()) return -1;
    }
    self->slots = PyMem_Calloc(size, sizeof(cache_slot));
    self->puts_cap = 64;
    self->puts = PyMem_Malloc(self->puts_cap * sizeof(cache_put));
    if (self->slots == NULL || self->puts == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    self->size = size;
    for (Py_ssize_t i = 0; i < size; i++) self->slots[i].seq = -1;
    return 0;
}

static int cache_ready(PacketCache *self) {
    if (self->slots == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "PacketCache.__init__ was not called");
        return -1;
    }
    return 0;
}

static Py_ssize_t cache_index(PacketCache *self, long long seq) {
    long long i = seq % self->size;
    return (Py_ssize_t)(i < 0 ? i + self->size : i);
}

/* PacketCache.put: takes a new reference to payload */
static int cache_store(PacketCache *self, long long seq, long long ts, int marker, PyObject *payload, double now,
                       int has_now) {
    cache_slot *slot = &self->slots[cache_index(self, seq)];
    Py_INCREF(payload);
    PyObject *old = slot->payload;
    slot->seq = seq;
    slot->ts = ts;
    slot->marker = (char)marker;
    slot->payload = payload;
    Py_XDECREF(old);
    if (!self->has_max_age || !has_now) return 0;
    if (self->puts_len == self->puts_cap) { /* grow the ring, oldest first */
        Py_ssize_t cap = self->puts_cap * 2;
        cache_put *puts = PyMem_Malloc(cap * sizeof(cache_put));
        if (puts == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        for (Py_ssize_t i = 0; i < self->puts_len; i++) puts[i] = self->puts[(self->puts_head + i) % self->puts_cap];
        PyMem_Free(self->puts);
        self->puts = puts;
        self->puts_cap = cap;
        self->puts_head = 0;
    }
    self->puts[(self->puts_head + self->puts_len) % self->puts_cap] = (cache_put){now, seq};
    self->puts_len++;
    double oldest = now - self->max_age;
    while (self->puts[self->puts_head].at < oldest) {
        long long gone = self->puts[self->puts_head].seq;
        self->puts_head = (self->puts_head + 1) % self->puts_cap;
        self->puts_len--;
        cache_slot *s = &self->slots[cache_index(self, gone)];
        if (s->payload != NULL && s->seq == gone) {
            s->seq = -1;
            Py_CLEAR(s->payload);
        }
    }
    return 0;
}

static cache_slot *cache_find(PacketCache *self, long long seq) {
    cache_slot *slot = &self->slots[cache_index(self, seq)];
    return slot->payload != NULL && slot->seq == seq ? slot : NULL;
}

/* put(packet, now=None) */
static PyObject *cache_put_method(PacketCache *self, PyObject *args, PyObject *kwds) {
    static char *names[] = {"packet", "now", NULL};
    PyObject *packet, *now_obj = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|O:put", names, &packet, &now_obj) || cache_ready(self) < 0)
        return NULL;
    if (!PyTuple_Check(packet) || PyTuple_GET_SIZE(packet) != 4) {
        PyErr_SetString(PyExc_TypeError, "put() takes a CachedPacket");
        return NULL;
    }
    long long seq = PyLong_AsLongLong(PyTuple_GET_ITEM(packet, 0));
    if (seq == -1 && PyErr_Occurred()) return NULL;
    long long ts = PyLong_AsLongLong(PyTuple_GET_ITEM(packet, 1));
    if (ts == -1 && PyErr_Occurred()) return NULL;
    int marker = PyObject_IsTrue(PyTuple_GET_ITEM(packet, 2));
    if (marker < 0) return NULL;
    if (seq < 0) {
        PyErr_SetString(PyExc_ValueError, "sequence number must not be negative");
        return NULL;
    }
    double now = 0.0;
    if (now_obj != Py_None) {
        now = PyFloat_AsDouble(now_obj);
        if (now == -1.0 && PyErr_Occurred()) return NULL;
    }
    if (cache_store(self, seq, ts, marker, PyTuple_GET_ITEM(packet, 3), now, now_obj != Py_None) < 0) return NULL;
    Py_RETURN_NONE;
}

/* get(sequence_number): a CachedPacket or None */
static PyObject *cache_get_method(PacketCache *self, PyObject *arg) {
    if (cache_ready(self) < 0) return NULL;
    long long seq = PyLong_AsLongLong(arg);
    if (seq == -1 && PyErr_Occurred()) return NULL;
    cache_slot *slot = seq < 0 ? NULL : cache_find(self, seq);
    if (slot == NULL) Py_RETURN_NONE;
    PyObject *fields = Py_BuildValue("(LLOO)", slot->seq, slot->ts, slot->marker ? Py_True : Py_False, slot->payload);
    if (fields == NULL || cached_packet_type == NULL) return fields;
    PyObject *packet = PyObject_Call(cached_packet_type, fields, NULL);
    Py_DECREF(fields);
    return packet;
}

static PyObject *cache_clear_method(PacketCache *self, PyObject *unused) {
    if (cache_ready(self) < 0) return NULL;
    cache_empty(self);
    Py_RETURN_NONE;
}

static PyMethodDef cache_methods[] = {
    {"put", (PyCFunction)(void (*)(void))cache_put_method, METH_VARARGS | METH_KEYWORDS,
     "put(packet, now=None): cache a CachedPacket; now lets those older than max_age_s go"},
    {"get", (PyCFunction)cache_get_method, METH_O, "get(sequence_number): the CachedPacket, or None"},
    {"clear", (PyCFunction)cache_clear_method, METH_NOARGS, "forget every packet"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject PacketCacheType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "media._dataplane.PacketCache",
    .tp_basicsize = sizeof(PacketCache),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "PacketCache(size=512, max_age_s=None): media.loss.PacketCache in C",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)cache_init,
    .tp_dealloc = (destructor)cache_dealloc,
    .tp_methods = cache_methods,
};

/* ---------------------------------------------------------------------------------------------
 * StreamCore: the fields of media.packets.PacketStream; stream_packet() is PacketStream.on_packet.
 */
typedef struct {
    PyObject_HEAD
    PyObject *dict, *weakrefs;
    PyObject *fanout, *cache, *nacks, *assembler, *fan, *mime;
    long long seq_off, ts_off, clock_rate;
    long long last_seq, last_ts, keyframe_ts, audio_level_id; /* -1: None */
    double last_at;
    char has_last_at, fresh, video, sps_in_band, assembling;
    int kind; /* KIND_*, of mime */
} StreamCore;

VISIT_DICT_AND(StreamCore, self->fanout, self->cache, self->nacks, self->assembler, self->fan, self->mime)

static int StreamCore_clear(StreamCore *self) {
    Py_CLEAR(self->dict);
    Py_CLEAR(self->fanout);
    Py_CLEAR(self->cache);
    Py_CLEAR(self->nacks);
    Py_CLEAR(self->assembler);
    Py_CLEAR(self->fan);
    Py_CLEAR(self->mime);
    return 0;
}

static void StreamCore_dealloc(StreamCore *self) {
    PyObject_GC_UnTrack(self);
    if (self->weakrefs != NULL) PyObject_ClearWeakRefs((PyObject *)self);
    StreamCore_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *StreamCore_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    StreamCore *self = (StreamCore *)type->tp_alloc(type, 0);
    if (self == NULL) return NULL;
    self->fanout = Py_NewRef(Py_None);
    self->cache = Py_NewRef(Py_None);
    self->nacks = Py_NewRef(Py_None);
    self->assembler = Py_NewRef(Py_None);
    self->fan = PyTuple_New(0);
    self->mime = PyUnicode_FromString("");
    if (self->fan == NULL || self->mime == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    self->clock_rate = 90000;
    self->last_seq = self->last_ts = self->keyframe_ts = self->audio_level_id = -1;
    self->fresh = 1;
    return (PyObject *)self;
}

#define OPTIONAL(type, field, name, max)                                                                         \
    static PyObject *type##_get_##field(type *self, void *c) { return dp_get_optional(self->field); }            \
    static int type##_set_##field(type *self, PyObject *v, void *c) {                                           \
        return dp_set_optional(&self->field, v, name, max);                                                      \
    }
#define FLAG(type, field, name)                                                                                  \
    static PyObject *type##_get_##field(type *self, void *c) { return PyBool_FromLong(self->field); }            \
    static int type##_set_##field(type *self, PyObject *v, void *c) { return dp_set_flag(&self->field, v, name); }
#define GETSET(type, field, name, doc) {name, (getter)type##_get_##field, (setter)type##_set_##field, doc, NULL}

OPTIONAL(StreamCore, last_seq, "last_seq", 0xFFFF)
OPTIONAL(StreamCore, last_ts, "last_ts", 0xFFFFFFFFLL)
OPTIONAL(StreamCore, keyframe_ts, "_keyframe_ts", 0xFFFFFFFFLL)
OPTIONAL(StreamCore, audio_level_id, "_audio_level_id", 255)
FLAG(StreamCore, fresh, "_fresh")
FLAG(StreamCore, video, "_video")
static PyObject *StreamCore_get_h264(StreamCore *self, void *c) { return PyBool_FromLong(self->kind == KIND_H264); }
FLAG(StreamCore, sps_in_band, "_sps_in_band")
FLAG(StreamCore, assembling, "_assembling")

static PyObject *StreamCore_get_last_at(StreamCore *self, void *c) {
    return get_double_or_none(self->last_at, self->has_last_at);
}
static int StreamCore_set_last_at(StreamCore *self, PyObject *v, void *c) {
    return set_double_or_none(&self->last_at, &self->has_last_at, v, "last_at");
}

static PyObject *StreamCore_get_mime(StreamCore *self, void *c) { return Py_NewRef(self->mime); }
static int StreamCore_set_mime(StreamCore *self, PyObject *v, void *c) {
    if (v == NULL || !PyUnicode_Check(v)) {
        PyErr_SetString(PyExc_TypeError, "_mime must be a str");
        return -1;
    }
    /* media.keyframes.payload_starts_keyframe's choice (the stream keeps its mime lower-case) */
    self->kind = PyUnicode_CompareWithASCIIString(v, "video/vp8") == 0    ? KIND_VP8
                 : PyUnicode_CompareWithASCIIString(v, "video/h264") == 0 ? KIND_H264
                                                                          : KIND_VIDEO;
    Py_INCREF(v);
    Py_XSETREF(self->mime, v);
    return 0;
}

static PyGetSetDef stream_getset[] = {
    GETSET(StreamCore, last_seq, "last_seq", "highest forwarded sequence number"),
    GETSET(StreamCore, last_ts, "last_ts", "its timestamp"),
    GETSET(StreamCore, last_at, "last_at", "when the last packet was forwarded"),
    GETSET(StreamCore, keyframe_ts, "_keyframe_ts", "timestamp of the last frame a keyframe start was seen in"),
    GETSET(StreamCore, audio_level_id, "_audio_level_id", "the publisher's ssrc-audio-level id"),
    GETSET(StreamCore, fresh, "_fresh", "the next packet is a new source's first"),
    GETSET(StreamCore, video, "_video", "a video stream"),
    {"_h264", (getter)StreamCore_get_h264, NULL, "an H.264 stream (of _mime)", NULL},
    GETSET(StreamCore, sps_in_band, "_sps_in_band", "the publisher's keyframes open with their SPS"),
    GETSET(StreamCore, assembling, "_assembling", "the assembler has been fed since it restarted"),
    GETSET(StreamCore, mime, "_mime", "the source codec's mime type, lower-case"),
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMemberDef stream_members[] = {
    {"fanout", T_OBJECT, offsetof(StreamCore, fanout), 0, "the Fanout"},
    {"cache", T_OBJECT, offsetof(StreamCore, cache), 0, "the PacketCache"},
    {"nacks", T_OBJECT, offsetof(StreamCore, nacks), 0, "the NackTracker"},
    {"assembler", T_OBJECT, offsetof(StreamCore, assembler), 0, "the recorder's Assembler, or None"},
    {"_fan", T_OBJECT, offsetof(StreamCore, fan), 0, "the viewers, a tuple"},
    {"_seq_off", T_LONGLONG, offsetof(StreamCore, seq_off), 0, "forwarded - publisher sequence number"},
    {"_ts_off", T_LONGLONG, offsetof(StreamCore, ts_off), 0, "forwarded - publisher timestamp"},
    {"_clock_rate", T_LONGLONG, offsetof(StreamCore, clock_rate), 0, "the codec's clock rate"},
    {NULL, 0, 0, 0, NULL},
};

/* media.rtpext.find_extension: the value of element ext_id, or NULL for None */
static PyObject *find_extension(int profile, const unsigned char *data, Py_ssize_t n, long ext_id) {
    Py_ssize_t pos = 0;
    if (profile == 0xBEDE) {
        while (pos < n) {
            unsigned char b = data[pos];
            if (b == 0) {
                pos += 1;
                continue;
            }
            long x_id = b >> 4;
            Py_ssize_t length = (b & 0x0F) + 1;
            if (x_id == 15) return NULL;
            if (x_id == ext_id)
                return pos + 1 + length <= n ? PyBytes_FromStringAndSize((const char *)data + pos + 1, length) : NULL;
            pos += 1 + length;
        }
    } else if ((profile & 0xFFF0) == 0x1000) {
        while (pos + 1 < n) {
            long x_id = data[pos];
            if (x_id == 0) {
                pos += 1;
                continue;
            }
            Py_ssize_t length = data[pos + 1];
            if (x_id == ext_id)
                return pos + 2 + length <= n ? PyBytes_FromStringAndSize((const char *)data + pos + 2, length) : NULL;
            pos += 2 + length;
        }
    }
    return NULL;
}

static int stream_checked(StreamCore *s) {
    if (!Py_IS_TYPE(s->cache, &PacketCacheType) || ((PacketCache *)s->cache)->slots == NULL ||
        !PyObject_TypeCheck(s->nacks, &NackCoreType) || !PyTuple_Check(s->fan)) {
        PyErr_SetString(PyExc_TypeError, "the native PacketStream needs a media._dataplane.PacketCache, a "
                                         "NackTracker and a tuple of viewers");
        return -1;
    }
    return 0;
}

/* PacketStream.on_packet; ext: the extension block's elements (ext_len bytes), valid throughout */
static int stream_packet(StreamCore *s, long seq, unsigned long ts, int marker, PyObject *payload, double now,
                         int ext_profile, const unsigned char *ext, Py_ssize_t ext_len) {
    if (stream_checked(s) < 0) return -1;
    if (s->fresh) {
        s->fresh = 0;
        if (s->last_seq < 0 || s->last_ts < 0 || !s->has_last_at) {
            s->seq_off = s->ts_off = 0;
        } else {
            long long gap = (long long)((now - s->last_at) * (double)s->clock_rate);
            if (gap < 1) gap = 1;
            s->seq_off = (s->last_seq + 1 - seq) & 0xFFFF;
            s->ts_off = (s->last_ts + gap - (long long)ts) & 0xFFFFFFFFLL;
        }
        s->last_seq = -1;
    }
    if (nack_seen((NackCore *)s->nacks, seq, now) < 0) return -1;
    long out_seq = (long)((seq + s->seq_off) & 0xFFFF);
    unsigned long out_ts = (unsigned long)(((long long)ts + s->ts_off) & 0xFFFFFFFFLL);
    if (s->last_seq >= 0) {
        long d = dp_seq_delta(out_seq, (long)s->last_seq);
        if (d <= 0 && (d <= -LATE_LIMIT || cache_find((PacketCache *)s->cache, out_seq) != NULL)) return 0;
    }
    if (s->last_seq < 0 || dp_seq_delta(out_seq, (long)s->last_seq) > 0) {
        s->last_seq = out_seq;
        s->last_ts = out_ts;
    }
    s->last_at = now;
    s->has_last_at = 1;
    PyObject *fanout = Py_NewRef(s->fanout);
    int rc = -1, starts = 1;
    PyObject *t = PyFloat_FromDouble(now);
    if (t == NULL) goto done;
    int failed = PyObject_SetAttr(fanout, s_last_packet_at, t) < 0 ||
                 dp_add_to_counter(fanout, s_bytes_in, PyBytes_GET_SIZE(payload)) < 0;
    Py_DECREF(t);
    if (failed) goto done;
    if (s->video) {
        const unsigned char *p = (const unsigned char *)PyBytes_AS_STRING(payload);
        Py_ssize_t n = PyBytes_GET_SIZE(payload);
        starts = (s->keyframe_ts < 0 || (long long)out_ts != s->keyframe_ts) &&
                 (s->kind == KIND_VP8 ? vp8_starts_keyframe(p, n) : s->kind == KIND_H264 ? h264_starts_keyframe(p, n) : 1);
        if (starts && s->kind == KIND_H264) {
            if (h264_has_sps(p, n))
                s->sps_in_band = 1;
            else if (s->sps_in_band)
                starts = 0;
        }
        if (starts) s->keyframe_ts = out_ts;
        if (marker && dp_add_to_counter(fanout, s_frames_in, 1) < 0) goto done;
        if (starts) {
            if (call_method(fanout, s_keyframe_arrived, NULL, NULL) < 0) goto done;
        } else {
            PyObject *awaited = PyObject_GetAttr(fanout, s_keyframe_awaited);
            int truth = awaited == NULL ? -1 : PyObject_IsTrue(awaited);
            Py_XDECREF(awaited);
            if (truth < 0 || (truth && call_method_now(fanout, s_keyframe_overdue, NULL, now) < 0)) goto done;
        }
    } else if (dp_add_to_counter(fanout, s_frames_in, 1) < 0) {
        goto done;
    }
    if (stream_checked(s) < 0 || cache_store((PacketCache *)s->cache, out_seq, out_ts, marker, payload, now, 1) < 0)
        goto done;
    if (PyTuple_GET_SIZE(s->fan)) {
        PyObject *level = NULL;
        if (ext_len && s->audio_level_id >= 0) {
            level = find_extension(ext_profile, ext, ext_len, (long)s->audio_level_id);
            if (level == NULL && PyErr_Occurred()) goto done;
        }
        PyObject *fan = Py_NewRef(s->fan);
        int sent = dp_fan_out(fan, out_seq, out_ts, marker, payload, starts, level == NULL ? Py_None : level, NULL);
        Py_DECREF(fan);
        Py_XDECREF(level);
        if (sent < 0) goto done;
    }
    PyObject *taps = PyObject_GetAttr(fanout, s_taps);
    int tapped = taps == NULL ? -1 : PyObject_IsTrue(taps);
    Py_XDECREF(taps);
    if (tapped < 0) goto done;
    if (tapped && s->assembler != Py_None) {
        PyObject *assembler = Py_NewRef(s->assembler);
        int pushed = 0;
        if (!s->assembling) {
            s->assembling = 1;
            pushed = call_method(assembler, s_restart, NULL, NULL);
        }
        if (pushed == 0) {
            PyObject *sq = PyLong_FromLong(out_seq), *ts_obj = PyLong_FromUnsignedLong(out_ts),
                     *t_obj = PyFloat_FromDouble(now);
            if (sq == NULL || ts_obj == NULL || t_obj == NULL) {
                pushed = -1;
            } else {
                PyObject *args[6] = {assembler, sq, ts_obj, marker ? Py_True : Py_False, payload, t_obj};
                PyObject *r = PyObject_VectorcallMethod(s_push, args, 6 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
                if (r == NULL) pushed = -1;
                Py_XDECREF(r);
            }
            Py_XDECREF(sq);
            Py_XDECREF(ts_obj);
            Py_XDECREF(t_obj);
        }
        Py_DECREF(assembler);
        if (pushed < 0) goto done;
    } else {
        s->assembling = 0;
    }
    rc = 0;
done:
    Py_DECREF(fanout);
    return rc;
}

/* _on_packet_native(seq, ts, marker, payload, now, ext_profile=0, ext=b"") */
static PyObject *stream_on_packet_method(StreamCore *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs < 5 || nargs > 7) {
        PyErr_SetString(PyExc_TypeError, "on_packet() takes 5 to 7 arguments");
        return NULL;
    }
    long seq = PyLong_AsLong(args[0]);
    if (seq == -1 && PyErr_Occurred()) return NULL;
    unsigned long ts = PyLong_AsUnsignedLongMask(args[1]);
    if (ts == (unsigned long)-1 && PyErr_Occurred()) return NULL;
    int marker = PyObject_IsTrue(args[2]);
    if (marker < 0) return NULL;
    double now = PyFloat_AsDouble(args[4]);
    if (now == -1.0 && PyErr_Occurred()) return NULL;
    long profile = nargs > 5 ? PyLong_AsLong(args[5]) : 0;
    if (profile == -1 && PyErr_Occurred()) return NULL;
    PyObject *ext = nargs > 6 ? args[6] : NULL;
    if (!PyBytes_Check(args[3]) || (ext != NULL && !PyBytes_Check(ext))) {
        PyErr_SetString(PyExc_TypeError, "payload and ext must be bytes");
        return NULL;
    }
    if (seq < 0 || seq > 0xFFFF) {
        PyErr_SetString(PyExc_ValueError, "sequence number out of range");
        return NULL;
    }
    if (ext != NULL) Py_INCREF(ext);
    int rc = stream_packet(self, seq, ts & 0xFFFFFFFFUL, marker, args[3], now, (int)profile,
                           ext == NULL ? NULL : (const unsigned char *)PyBytes_AS_STRING(ext),
                           ext == NULL ? 0 : PyBytes_GET_SIZE(ext));
    Py_XDECREF(ext);
    if (rc < 0) return NULL;
    Py_RETURN_NONE;
}

static PyMethodDef stream_methods[] = {
    {"_on_packet_native", (PyCFunction)(void (*)(void))stream_on_packet_method, METH_FASTCALL,
     "on_packet in C (PacketStream.on_packet is the reference)"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject StreamCoreType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "media._dataplane.StreamCore",
    .tp_basicsize = sizeof(StreamCore),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_BASETYPE,
    .tp_doc = "The fields of media.packets.PacketStream (its base class)",
    .tp_new = StreamCore_new,
    .tp_dealloc = (destructor)StreamCore_dealloc,
    .tp_traverse = (traverseproc)StreamCore_traverse,
    .tp_clear = (inquiry)StreamCore_clear,
    .tp_members = stream_members,
    .tp_getset = stream_getset,
    .tp_methods = stream_methods,
    .tp_dictoffset = offsetof(StreamCore, dict),
    .tp_weaklistoffset = offsetof(StreamCore, weakrefs),
};

/* ---------------------------------------------------------------------------------------------
 * RouteCore: the fields of media.ingress._Route the packet path uses; route_count() is _Route.count.
 */
typedef struct {
    PyObject_HEAD
    PyObject *dict, *weakrefs;
    PyObject *stream, *retry;
    long long ssrc; /* -1: None */
    long long base_seq, max_seq, cycles, received;
    char nack, pli_pending;
} RouteCore;

VISIT_DICT_AND(RouteCore, self->stream, self->retry)

static int RouteCore_clear(RouteCore *self) {
    Py_CLEAR(self->dict);
    Py_CLEAR(self->stream);
    Py_CLEAR(self->retry);
    return 0;
}

static void RouteCore_dealloc(RouteCore *self) {
    PyObject_GC_UnTrack(self);
    if (self->weakrefs != NULL) PyObject_ClearWeakRefs((PyObject *)self);
    RouteCore_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *RouteCore_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    RouteCore *self = (RouteCore *)type->tp_alloc(type, 0);
    if (self == NULL) return NULL;
    self->stream = Py_NewRef(Py_None);
    self->retry = Py_NewRef(Py_None);
    self->ssrc = -1;
    self->nack = 1;
    return (PyObject *)self;
}

OPTIONAL(RouteCore, ssrc, "ssrc", 0xFFFFFFFFLL)
FLAG(RouteCore, nack, "nack")
FLAG(RouteCore, pli_pending, "pli_pending")

static PyGetSetDef route_getset[] = {
    GETSET(RouteCore, ssrc, "ssrc", "the publisher's SSRC of this stream, or None"),
    GETSET(RouteCore, nack, "nack", "NACK negotiated"),
    GETSET(RouteCore, pli_pending, "pli_pending", "a PLI waits for the first packet"),
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMemberDef route_members[] = {
    {"stream", T_OBJECT, offsetof(RouteCore, stream), 0, "the PacketStream"},
    {"retry", T_OBJECT, offsetof(RouteCore, retry), 0, "the NACK tracker's timer, or None"},
    {"base_seq", T_LONGLONG, offsetof(RouteCore, base_seq), 0, "RFC 3550 A.3"},
    {"max_seq", T_LONGLONG, offsetof(RouteCore, max_seq), 0, "RFC 3550 A.3"},
    {"cycles", T_LONGLONG, offsetof(RouteCore, cycles), 0, "RFC 3550 A.3"},
    {"received", T_LONGLONG, offsetof(RouteCore, received), 0, "RFC 3550 A.3"},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject RouteCoreType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "media._dataplane.RouteCore",
    .tp_basicsize = sizeof(RouteCore),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_BASETYPE,
    .tp_doc = "The fields of media.ingress._Route (its base class)",
    .tp_new = RouteCore_new,
    .tp_dealloc = (destructor)RouteCore_dealloc,
    .tp_traverse = (traverseproc)RouteCore_traverse,
    .tp_clear = (inquiry)RouteCore_clear,
    .tp_members = route_members,
    .tp_getset = route_getset,
    .tp_dictoffset = offsetof(RouteCore, dict),
    .tp_weaklistoffset = offsetof(RouteCore, weakrefs),
};

/* _Route.count */
static void route_count(RouteCore *r, long seq) {
    if (r->received == 0) {
        r->base_seq = r->max_seq = seq;
    } else {
        long d = dp_seq_delta(seq, (long)r->max_seq);
        if (d > 0) {
            if (seq < r->max_seq) r->cycles += 1 << 16;
            r->max_seq = seq;
        }
    }
    r->received += 1;
}

/* ---------------------------------------------------------------------------------------------
 * IngressCore: the fields of media.ingress.PublisherIngress; ingress_rtp() is its _on_rtp.
 */
typedef struct {
    PyObject_HEAD
    PyObject *dict, *weakrefs;
    PyObject *by_pt, *rtx_pt, *clock, *recovered;
    double last_arrival, next_report;
    char has_last_arrival, closed;
} IngressCore;

VISIT_DICT_AND(IngressCore, self->by_pt, self->rtx_pt, self->clock, self->recovered)

static int IngressCore_clear(IngressCore *self) {
    Py_CLEAR(self->dict);
    Py_CLEAR(self->by_pt);
    Py_CLEAR(self->rtx_pt);
    Py_CLEAR(self->clock);
    Py_CLEAR(self->recovered);
    return 0;
}

static void IngressCore_dealloc(IngressCore *self) {
    PyObject_GC_UnTrack(self);
    if (self->weakrefs != NULL) PyObject_ClearWeakRefs((PyObject *)self);
    IngressCore_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *IngressCore_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    IngressCore *self = (IngressCore *)type->tp_alloc(type, 0);
    if (self == NULL) return NULL;
    self->by_pt = PyDict_New();
    self->rtx_pt = PyDict_New();
    if (self->by_pt == NULL || self->rtx_pt == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    self->clock = Py_NewRef(Py_None);
    self->recovered = Py_NewRef(Py_None);
    return (PyObject *)self;
}

FLAG(IngressCore, closed, "_closed")

static PyObject *IngressCore_get_last_arrival(IngressCore *self, void *c) {
    return get_double_or_none(self->last_arrival, self->has_last_arrival);
}
static int IngressCore_set_last_arrival(IngressCore *self, PyObject *v, void *c) {
    return set_double_or_none(&self->last_arrival, &self->has_last_arrival, v, "last_arrival");
}

static PyGetSetDef ingress_getset[] = {
    GETSET(IngressCore, closed, "_closed", "the publisher's session ended"),
    GETSET(IngressCore, last_arrival, "last_arrival", "when the last RTP packet arrived, or None"),
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMemberDef ingress_members[] = {
    {"_by_pt", T_OBJECT_EX, offsetof(IngressCore, by_pt), 0, "payload type -> _Route"},
    {"_rtx_pt", T_OBJECT_EX, offsetof(IngressCore, rtx_pt), 0, "RTX payload type -> _Route"},
    {"_clock", T_OBJECT, offsetof(IngressCore, clock), 0, "the clock"},
    {"_recovered", T_OBJECT, offsetof(IngressCore, recovered), 0, "set when nothing is missing, while awaited"},
    {"_next_report", T_DOUBLE, offsetof(IngressCore, next_report), 0, "when receiver reports are due"},
    {NULL, 0, 0, 0, NULL},
};

/* the route of payload type pt in table (borrowed, or NULL: none, or an exception) */
static PyObject *route_of(PyObject *table, int pt) {
    if (!PyDict_Check(table)) {
        PyErr_SetString(PyExc_TypeError, "the ingress's payload type tables must be dicts");
        return NULL;
    }
    PyObject *key = PyLong_FromLong(pt);
    if (key == NULL) return NULL;
    PyObject *route = PyDict_GetItemWithError(table, key);
    Py_DECREF(key);
    if (route != NULL && !PyObject_TypeCheck(route, &RouteCoreType)) {
        PyErr_SetString(PyExc_TypeError, "an ingress route must be built on media._dataplane.RouteCore");
        return NULL;
    }
    return route;
}

static int ingress_route_packet(IngressCore *self, RouteCore *route, int rtx, long seq, unsigned long ts, int marker,
                                unsigned long ssrc, const unsigned char *payload, Py_ssize_t payload_len,
                                int ext_profile, const unsigned char *ext, Py_ssize_t ext_len) {
    PyObject *me = (PyObject *)self;
    if (!rtx && route->ssrc != (long long)ssrc) {
        if (route->ssrc >= 0 && call_method(me, s_source_changed, (PyObject *)route, NULL) < 0) return -1;
        route->ssrc = ssrc;
    }
    PyObject *clock = Py_NewRef(self->clock);
    PyObject *t = PyObject_CallNoArgs(clock);
    Py_DECREF(clock);
    if (t == NULL) return -1;
    double now = PyFloat_AsDouble(t);
    Py_DECREF(t);
    if (now == -1.0 && PyErr_Occurred()) return -1;
    self->last_arrival = now;
    self->has_last_arrival = 1;
    route_count(route, seq);
    if (!PyObject_TypeCheck(route->stream, &StreamCoreType)) {
        PyErr_SetString(PyExc_TypeError, "an ingress route's stream must be built on media._dataplane.StreamCore");
        return -1;
    }
    StreamCore *stream = (StreamCore *)Py_NewRef(route->stream); /* held: the callbacks may replace it */
    int rc = 0;
    if (payload_len) {
        PyObject *data = PyBytes_FromStringAndSize((const char *)payload, payload_len);
        rc = data == NULL ? -1 : stream_packet(stream, seq, ts, marker, data, now, ext_profile, ext, ext_len);
        Py_XDECREF(data);
    }
    if (rc == 0 && route->nack) {
        if (!PyObject_TypeCheck(stream->nacks, &NackCoreType) || nack_checked((NackCore *)stream->nacks) < 0) {
            if (!PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "the stream's NACK tracker is not a NackTracker");
            rc = -1;
        } else {
            NackCore *nacks = (NackCore *)stream->nacks;
            if (nack_has_work(nacks, now) || (route->retry == Py_None && nack_waiting(nacks) && !self->closed))
                rc = call_method_now(me, s_tend, (PyObject *)route, now);
        }
    }
    Py_DECREF(stream);
    if (rc < 0) return -1;
    if (route->pli_pending) {
        route->pli_pending = 0;
        PyObject *kind = PyObject_GetAttr((PyObject *)route, s_kind);
        if (kind == NULL) return -1;
        int rc = call_method(me, s_send_pli, kind, NULL);
        Py_DECREF(kind);
        if (rc < 0) return -1;
    }
    if (now >= self->next_report) {
        self->next_report = now + REPORT_INTERVAL_S;
        if (call_method_now(me, s_send_reports, NULL, now) < 0) return -1;
    }
    if (self->recovered != Py_None && call_method(me, s_check_recovered, NULL, NULL) < 0) return -1;
    return 0;
}

/* PublisherIngress._on_rtp on one unprotected packet */
int ingress_rtp(PyObject *ingress, const unsigned char *d, Py_ssize_t n) {
    IngressCore *self = (IngressCore *)ingress;
    /* media.rtpwire.parse_rtp */
    if (n < 12 || d[0] >> 6 != 2) return 0;
    Py_ssize_t start = 12 + 4 * (d[0] & 0x0F), end = n, payload_at;
    if (d[0] & 0x20) end -= d[n - 1];
    int ext_profile = 0;
    const unsigned char *ext = NULL;
    Py_ssize_t ext_len = 0;
    if (d[0] & 0x10) {
        if (start + 4 > n) return 0;
        ext_profile = d[start] << 8 | d[start + 1];
        Py_ssize_t ext_end = start + 4 + 4 * (Py_ssize_t)(d[start + 2] << 8 | d[start + 3]);
        if (ext_end > end) return 0;
        ext = d + start + 4;
        ext_len = ext_end - start - 4;
        payload_at = ext_end;
    } else {
        if (start > end) return 0;
        payload_at = start;
    }
    int pt = d[1] & 0x7F, marker = d[1] >> 7;
    long seq = d[2] << 8 | d[3];
    unsigned long ts = (unsigned long)d[4] << 24 | (unsigned long)d[5] << 16 | (unsigned long)d[6] << 8 | d[7];
    unsigned long ssrc = (unsigned long)d[8] << 24 | (unsigned long)d[9] << 16 | (unsigned long)d[10] << 8 | d[11];
    const unsigned char *payload = d + payload_at;
    Py_ssize_t payload_len = end - payload_at;
    int rtx = 0;
    PyObject *route = route_of(self->by_pt, pt);
    if (route == NULL) {
        if (PyErr_Occurred()) return -1;
        route = route_of(self->rtx_pt, pt);
        if (route == NULL) return PyErr_Occurred() ? -1 : 0;
        if (payload_len < 3) return 0; /* padding-only probes carry no original packet */
        rtx = 1;
        seq = payload[0] << 8 | payload[1];
        payload += 2;
        payload_len -= 2;
    }
    Py_INCREF(route);
    Py_INCREF(ingress);
    int rc = ingress_route_packet(self, (RouteCore *)route, rtx, seq, ts, marker, ssrc, payload, payload_len,
                                  ext_profile, ext, ext_len);
    Py_DECREF(ingress);
    Py_DECREF(route);
    return rc;
}

/* ingress(data): the same for a packet as bytes (RTP that reached aiortc's own path first) */
static PyObject *IngressCore_call(IngressCore *self, PyObject *args, PyObject *kwds) {
    PyObject *data;
    if (kwds != NULL && PyDict_GET_SIZE(kwds)) {
        PyErr_SetString(PyExc_TypeError, "the ingress takes no keyword arguments");
        return NULL;
    }
    if (!PyArg_ParseTuple(args, "O!:ingress", &PyBytes_Type, &data)) return NULL;
    Py_INCREF(data);
    int rc = ingress_rtp((PyObject *)self, (const unsigned char *)PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data));
    Py_DECREF(data);
    if (rc < 0) return NULL;
    Py_RETURN_NONE;
}

PyTypeObject IngressCoreType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "media._dataplane.IngressCore",
    .tp_basicsize = sizeof(IngressCore),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_BASETYPE,
    .tp_doc = "The fields of media.ingress.PublisherIngress (its base class); calling it is _on_rtp in C",
    .tp_new = IngressCore_new,
    .tp_dealloc = (destructor)IngressCore_dealloc,
    .tp_traverse = (traverseproc)IngressCore_traverse,
    .tp_clear = (inquiry)IngressCore_clear,
    .tp_members = ingress_members,
    .tp_getset = ingress_getset,
    .tp_call = (ternaryfunc)IngressCore_call,
    .tp_dictoffset = offsetof(IngressCore, dict),
    .tp_weaklistoffset = offsetof(IngressCore, weakrefs),
};

/* use_cached_packet(CachedPacket): what PacketCache.get returns */
static PyObject *use_cached_packet(PyObject *module, PyObject *type) {
    Py_INCREF(type);
    Py_XSETREF(cached_packet_type, type);
    Py_RETURN_NONE;
}

static PyMethodDef ingress_functions[] = {
    {"use_cached_packet", use_cached_packet, METH_O, "use_cached_packet(CachedPacket): PacketCache.get's type"},
    {NULL, NULL, 0, NULL},
};

int ingress_ready(PyObject *m) {
    if (dp_intern(&s_keyframe_arrived, "keyframe_arrived") || dp_intern(&s_keyframe_overdue, "keyframe_overdue") ||
        dp_intern(&s_keyframe_awaited, "keyframe_awaited") || dp_intern(&s_last_packet_at, "last_packet_at") ||
        dp_intern(&s_bytes_in, "bytes_in") || dp_intern(&s_frames_in, "frames_in") || dp_intern(&s_taps, "taps") ||
        dp_intern(&s_restart, "restart") || dp_intern(&s_push, "push") ||
        dp_intern(&s_source_changed, "_source_changed") || dp_intern(&s_tend, "_tend") ||
        dp_intern(&s_send_pli, "send_pli") || dp_intern(&s_kind, "kind") ||
        dp_intern(&s_send_reports, "_send_reports") || dp_intern(&s_check_recovered, "_check_recovered"))
        return -1;
    PyTypeObject *types[] = {&NackCoreType, &PacketCacheType, &StreamCoreType, &RouteCoreType, &IngressCoreType};
    const char *names[] = {"NackCore", "PacketCache", "StreamCore", "RouteCore", "IngressCore"};
    for (int i = 0; i < 5; i++)
        if (PyType_Ready(types[i]) < 0 || PyModule_AddObjectRef(m, names[i], (PyObject *)types[i]) < 0) return -1;
    return PyModule_AddFunctions(m, ingress_functions) < 0 ||
                   PyModule_AddIntConstant(m, "NACK_MAX_GAP", NACK_MAX_GAP) < 0
               ? -1
               : 0;
}
