/* The packet engine's per-packet work in C: SRTP unprotect on the way in; on the way out the
 * fan-out to a stream's viewers (renumbering, header extension blocks, header build), SRTP protect
 * and send. media/rtp_hooks.py and media/packets.py hold the Python reference of each piece.
 *
 * Everything here does what that Python does, on the same Python objects (aiortc's
 * RTCDtlsTransport and its counters, aioice's nominated pair and its uvloop/asyncio transport, the
 * viewers' Fanout) and with the same SRTP sessions: libsrtp is called through the function pointers
 * of the copy pylibsrtp loaded (media/rtp_hooks.py passes their addresses in once), on the srtp_t of
 * pylibsrtp's own Session objects, so keys, replay windows and rollover counters stay one state.
 * What it saves is the interpreter around each packet: pylibsrtp's wrapper (a cffi buffer, two
 * copies and a slice), the hooks' closures, the header build and the per-viewer bookkeeping. The
 * rare branches (a viewer's first packet, its first frame) call back into Python.
 *
 * Not thread-safe by design: it runs on the event loop's thread under the GIL, like the Python
 * path. Its scratch buffer is filled only after the last call that may run Python code and copied
 * out before the next.
 */
#include <time.h>

#include "_dataplane.h"

plane_t dp_plane;
#define plane dp_plane

int dp_intern(PyObject **slot, const char *s) {
    *slot = PyUnicode_InternFromString(s);
    return *slot == NULL ? -1 : 0;
}
#define intern dp_intern

static PyObject *srtp_error(int status) {
    if (status > 0 && status < PyList_GET_SIZE(plane.messages))
        PyErr_SetObject(plane.error_class, PyList_GET_ITEM(plane.messages, status));
    else
        PyErr_Format(plane.error_class, "libsrtp status %d", status);
    return NULL;
}

int dp_add_to_counter(PyObject *owner, PyObject *name, long long amount) {
    PyObject *value = PyObject_GetAttr(owner, name);
    if (value == NULL) return -1;
    long long current = PyLong_AsLongLong(value);
    Py_DECREF(value);
    if (current == -1 && PyErr_Occurred()) return -1;
    PyObject *updated = PyLong_FromLongLong(current + amount);
    if (updated == NULL) return -1;
    int rc = PyObject_SetAttr(owner, name, updated);
    Py_DECREF(updated);
    return rc;
}

/* The srtp_t of a pylibsrtp Session, through the Python resolver (cffi knows the layout). */
static void *session_context(PyObject *resolve, PyObject *session) {
    PyObject *address = PyObject_CallOneArg(resolve, session);
    if (address == NULL) return NULL;
    void *ctx = PyLong_AsVoidPtr(address);
    Py_DECREF(address);
    if (ctx == NULL && !PyErr_Occurred()) PyErr_SetString(PyExc_RuntimeError, "SRTP session has no context");
    return ctx;
}

/* ---------------------------------------------------------------------------------------------
 * Outbound: protect and send on one DTLS transport's nominated pair (rtp_hooks._sender).
 */
typedef struct {
    PyObject_HEAD
    PyObject *transport, *nominated, *resolve;
    int rtcp;
    /* cached while the nominated pair and the SRTP session stay the same */
    PyObject *pair, *sendto, *addr, *session;
    void *ctx;
} Outbound;

static void outbound_forget(Outbound *self) {
    Py_CLEAR(self->pair);
    Py_CLEAR(self->sendto);
    Py_CLEAR(self->addr);
    Py_CLEAR(self->session);
    self->ctx = NULL;
}

static int outbound_traverse(Outbound *self, visitproc visit, void *arg) {
    Py_VISIT(self->transport);
    Py_VISIT(self->nominated);
    Py_VISIT(self->resolve);
    Py_VISIT(self->pair);
    Py_VISIT(self->sendto);
    Py_VISIT(self->addr);
    Py_VISIT(self->session);
    return 0;
}

static int outbound_clear(Outbound *self) {
    Py_CLEAR(self->transport);
    Py_CLEAR(self->nominated);
    Py_CLEAR(self->resolve);
    outbound_forget(self);
    return 0;
}

static void outbound_dealloc(Outbound *self) {
    PyObject_GC_UnTrack(self);
    outbound_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int outbound_init(Outbound *self, PyObject *args, PyObject *kwds) {
    static char *names[] = {"transport", "nominated", "resolve", "rtcp", NULL};
    PyObject *transport, *nominated, *resolve;
    int rtcp = 0;
    if (!plane.bound) {
        PyErr_SetString(PyExc_RuntimeError, "media._dataplane.bind() was not called");
        return -1;
    }
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OO!O|p", names, &transport, &PyDict_Type, &nominated, &resolve,
                                     &rtcp))
        return -1;
    outbound_clear(self);
    Py_INCREF(transport);
    self->transport = transport;
    Py_INCREF(nominated);
    self->nominated = nominated;
    Py_INCREF(resolve);
    self->resolve = resolve;
    self->rtcp = rtcp;
    return 0;
}

/* Check the state, find the pair and session (refreshing what is cached): 0, or -1 with an
 * exception. May run Python code (the resolver), so it comes before the scratch buffer is filled. */
static int outbound_ready(Outbound *self) {
    PyObject *state = PyObject_GetAttr(self->transport, plane.str_state);
    if (state == NULL) return -1;
    int connected = state == plane.connected;
    Py_DECREF(state);
    if (!connected) {
        PyErr_SetString(PyExc_ConnectionError, "Cannot send encrypted RTP, not connected");
        return -1;
    }
    PyObject *pair = PyDict_GetItemWithError(self->nominated, plane.one); /* borrowed */
    if (pair == NULL) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_ConnectionError, "Cannot send data, not connected");
        return -1;
    }
    PyObject *session = PyObject_GetAttr(self->transport, plane.str_tx_srtp);
    if (session == NULL) return -1;
    if (pair == self->pair && session == self->session) {
        Py_DECREF(session);
        return 0;
    }
    Py_INCREF(pair); /* the resolver below may run anything: keep the pair alive through it */
    outbound_forget(self);
    PyObject *protocol = PyObject_GetAttr(pair, plane.str_protocol);
    PyObject *udp = protocol == NULL ? NULL : PyObject_GetAttr(protocol, plane.str_transport);
    Py_XDECREF(protocol);
    PyObject *sendto = udp == NULL ? NULL : PyObject_GetAttr(udp, plane.str_sendto);
    Py_XDECREF(udp);
    PyObject *addr = sendto == NULL ? NULL : PyObject_GetAttr(pair, plane.str_remote_addr);
    void *ctx = addr == NULL ? NULL : session_context(self->resolve, session);
    if (ctx == NULL) {
        Py_XDECREF(sendto);
        Py_XDECREF(addr);
        Py_DECREF(session);
        Py_DECREF(pair);
        return -1;
    }
    outbound_forget(self); /* in case the resolver re-entered this sender */
    self->pair = pair;       /* takes the references */
    self->sendto = sendto;
    self->addr = addr;
    self->session = session;
    self->ctx = ctx;
    return 0;
}

/* Protect scratch[0:len] in place and send it; outbound_ready() must have succeeded just before,
 * and nothing between them runs Python code. */
static PyObject *outbound_send(Outbound *self, int len) {
    int n = len;
    int status = (self->rtcp ? plane.protect_rtcp : plane.protect)(self->ctx, plane.scratch, &n);
    if (status != 0) return srtp_error(status);
    PyObject *data = PyBytes_FromStringAndSize((const char *)plane.scratch, n);
    if (data == NULL) return NULL;
    PyObject *call[2] = {data, self->addr};
    PyObject *sendto = self->sendto, *addr = self->addr;
    Py_INCREF(sendto); /* a sendto that ends the pair must not free what is being called */
    Py_INCREF(addr);
    PyObject *sent = PyObject_Vectorcall(sendto, call, 2, NULL);
    Py_DECREF(sendto);
    Py_DECREF(addr);
    Py_DECREF(data);
    if (sent == NULL) return NULL;
    Py_DECREF(sent);
    if (dp_add_to_counter(self->transport, plane.str_tx_bytes, n) < 0 ||
        dp_add_to_counter(self->transport, plane.str_tx_packets, 1) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static int outbound_room(Outbound *self, Py_ssize_t len) {
    if (len > BUFFER_LEN - (self->rtcp ? plane.rtcp_trailer : plane.rtp_trailer)) {
        PyErr_SetString(PyExc_ValueError, "packet is too long");
        return -1;
    }
    return 0;
}

/* send(data): protect one RTP (or, for an RTCP sender, RTCP compound) packet and send it. */
static PyObject *outbound_call(Outbound *self, PyObject *args, PyObject *kwds) {
    PyObject *data;
    if (kwds != NULL && PyDict_GET_SIZE(kwds)) {
        PyErr_SetString(PyExc_TypeError, "send() takes no keyword arguments");
        return NULL;
    }
    if (!PyArg_ParseTuple(args, "O:send", &data)) return NULL;
    if (!PyBytes_Check(data)) {
        PyErr_SetString(PyExc_TypeError, "packet must be bytes");
        return NULL;
    }
    Py_ssize_t len = PyBytes_GET_SIZE(data);
    if (outbound_ready(self) < 0 || outbound_room(self, len) < 0) return NULL;
    memcpy(plane.scratch, PyBytes_AS_STRING(data), len);
    return outbound_send(self, (int)len);
}

/* Build the packet rtpwire.build_rtp builds (version 2, no padding or CSRC; ext a whole extension
 * block or b""), protect and send it. */
static PyObject *outbound_build_send(Outbound *self, long pt, int marker, unsigned long seq, unsigned long ts,
                                     unsigned long ssrc, PyObject *payload, PyObject *ext) {
    if (!PyBytes_Check(payload) || !PyBytes_Check(ext)) {
        PyErr_SetString(PyExc_TypeError, "payload and extension must be bytes");
        return NULL;
    }
    if (pt < 0 || pt > 127) {
        PyErr_SetString(PyExc_ValueError, "payload type out of range");
        return NULL;
    }
    Py_ssize_t ext_len = PyBytes_GET_SIZE(ext), payload_len = PyBytes_GET_SIZE(payload);
    Py_ssize_t len = 12 + ext_len + payload_len;
    if (outbound_ready(self) < 0 || outbound_room(self, len) < 0) return NULL;
    unsigned char *p = plane.scratch;
    p[0] = ext_len ? 0x90 : 0x80;
    p[1] = (unsigned char)((marker ? 0x80 : 0) | pt);
    p[2] = (unsigned char)(seq >> 8);
    p[3] = (unsigned char)seq;
    p[4] = (unsigned char)(ts >> 24);
    p[5] = (unsigned char)(ts >> 16);
    p[6] = (unsigned char)(ts >> 8);
    p[7] = (unsigned char)ts;
    p[8] = (unsigned char)(ssrc >> 24);
    p[9] = (unsigned char)(ssrc >> 16);
    p[10] = (unsigned char)(ssrc >> 8);
    p[11] = (unsigned char)ssrc;
    memcpy(p + 12, PyBytes_AS_STRING(ext), ext_len);
    memcpy(p + 12 + ext_len, PyBytes_AS_STRING(payload), payload_len);
    return outbound_send(self, (int)len);
}

/* rtp(payload_type, marker, sequence_number, timestamp, ssrc, payload, extension) */
static PyObject *outbound_rtp(Outbound *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 7) {
        PyErr_SetString(PyExc_TypeError, "rtp() takes 7 arguments");
        return NULL;
    }
    long pt = PyLong_AsLong(args[0]);
    if (pt == -1 && PyErr_Occurred()) return NULL;
    int marker = PyObject_IsTrue(args[1]);
    if (marker < 0) return NULL;
    unsigned long seq = PyLong_AsUnsignedLongMask(args[2]);
    if (seq == (unsigned long)-1 && PyErr_Occurred()) return NULL;
    unsigned long ts = PyLong_AsUnsignedLongMask(args[3]);
    if (ts == (unsigned long)-1 && PyErr_Occurred()) return NULL;
    unsigned long ssrc = PyLong_AsUnsignedLongMask(args[4]);
    if (ssrc == (unsigned long)-1 && PyErr_Occurred()) return NULL;
    return outbound_build_send(self, pt, marker, seq, ts, ssrc, args[5], args[6]);
}

static PyMethodDef outbound_methods[] = {
    {"rtp", (PyCFunction)(void (*)(void))outbound_rtp, METH_FASTCALL,
     "rtp(payload_type, marker, sequence_number, timestamp, ssrc, payload, extension): build, protect, send"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject OutboundType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "media._dataplane.Outbound",
    .tp_basicsize = sizeof(Outbound),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "Outbound(transport, nominated, resolve, rtcp=False): send(data) protects and sends one packet",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)outbound_init,
    .tp_dealloc = (destructor)outbound_dealloc,
    .tp_traverse = (traverseproc)outbound_traverse,
    .tp_clear = (inquiry)outbound_clear,
    .tp_call = (ternaryfunc)outbound_call,
    .tp_methods = outbound_methods,
};

/* ---------------------------------------------------------------------------------------------
 * Inbound: a transport's datagrams, SRTP unprotected and handed on (rtp_hooks.intercept_rtp).
 */
typedef struct {
    PyObject_HEAD
    PyObject *transport, *original, *handler, *rtcp, *on_error, *resolve; /* handler, rtcp: or None */
    PyObject *session;
    void *ctx;
} Inbound;

static int inbound_traverse(Inbound *self, visitproc visit, void *arg) {
    Py_VISIT(self->transport);
    Py_VISIT(self->original);
    Py_VISIT(self->handler);
    Py_VISIT(self->rtcp);
    Py_VISIT(self->on_error);
    Py_VISIT(self->resolve);
    Py_VISIT(self->session);
    return 0;
}

static int inbound_clear(Inbound *self) {
    Py_CLEAR(self->transport);
    Py_CLEAR(self->original);
    Py_CLEAR(self->handler);
    Py_CLEAR(self->rtcp);
    Py_CLEAR(self->on_error);
    Py_CLEAR(self->resolve);
    Py_CLEAR(self->session);
    self->ctx = NULL;
    return 0;
}

static void inbound_dealloc(Inbound *self) {
    PyObject_GC_UnTrack(self);
    inbound_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int inbound_init(Inbound *self, PyObject *args, PyObject *kwds) {
    static char *names[] = {"transport", "original", "handler", "on_error", "resolve", "rtcp", NULL};
    PyObject *transport, *original, *handler, *on_error, *resolve, *rtcp = Py_None;
    if (!plane.bound) {
        PyErr_SetString(PyExc_RuntimeError, "media._dataplane.bind() was not called");
        return -1;
    }
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOOOO|O", names, &transport, &original, &handler, &on_error,
                                     &resolve, &rtcp))
        return -1;
    inbound_clear(self);
    self->transport = Py_NewRef(transport);
    self->original = Py_NewRef(original);
    self->handler = Py_NewRef(handler);
    self->rtcp = Py_NewRef(rtcp);
    self->on_error = Py_NewRef(on_error);
    self->resolve = Py_NewRef(resolve);
    return 0;
}

/* data_received(data, component) */
static PyObject *inbound_call(Inbound *self, PyObject *args, PyObject *kwds) {
    PyObject *data, *component;
    if (kwds != NULL && PyDict_GET_SIZE(kwds)) {
        PyErr_SetString(PyExc_TypeError, "data_received() takes no keyword arguments");
        return NULL;
    }
    if (!PyArg_ParseTuple(args, "OO:data_received", &data, &component)) return NULL;
    PyObject *session = PyObject_GetAttr(self->transport, plane.str_rx_srtp);
    if (session == NULL) return NULL;
    Py_ssize_t len = PyBytes_Check(data) ? PyBytes_GET_SIZE(data) : 0;
    const unsigned char *d = len ? (const unsigned char *)PyBytes_AS_STRING(data) : NULL;
    /* RFC 7983: 128..191 is RTP or RTCP; RTCP packet types are 192..223 */
    int srtp = len >= 2 && d[0] >= 128 && d[0] <= 191, rtcp = srtp && d[1] > 191 && d[1] < 224;
    if (session == Py_None || !srtp || (rtcp ? self->rtcp : self->handler) == Py_None) {
        Py_DECREF(session);
        PyObject *call[2] = {data, component}, *original = self->original;
        Py_INCREF(original); /* it may re-hook the connection and drop this object */
        PyObject *result = PyObject_Vectorcall(original, call, 2, NULL);
        Py_DECREF(original);
        return result;
    }
    if (session != self->session) {
        void *ctx = session_context(self->resolve, session);
        if (ctx == NULL) {
            Py_DECREF(session);
            return NULL;
        }
        Py_XSETREF(self->session, session); /* takes the reference */
        self->ctx = ctx;
    } else {
        Py_DECREF(session);
    }
    if (len > BUFFER_LEN) Py_RETURN_NONE; /* no SRTP packet of ours: dropped, as an unprotect error is */
    memcpy(plane.scratch, d, len);
    int n = (int)len;
    if ((rtcp ? plane.unprotect_rtcp : plane.unprotect)(self->ctx, plane.scratch, &n) != 0) Py_RETURN_NONE;
    PyObject *handler = rtcp ? self->rtcp : self->handler, *on_error = self->on_error, *handled;
    Py_INCREF(handler);
    Py_INCREF(on_error);
    if (!rtcp && PyObject_TypeCheck(handler, &IngressCoreType)) { /* read from the scratch buffer, no bytes object */
        unsigned char packet[BUFFER_LEN + 16];
        memcpy(packet, plane.scratch, n); /* the counters below may run Python code */
        if (dp_add_to_counter(self->transport, plane.str_rx_bytes, len) < 0 ||
            dp_add_to_counter(self->transport, plane.str_rx_packets, 1) < 0) {
            Py_DECREF(handler);
            Py_DECREF(on_error);
            return NULL;
        }
        handled = ingress_rtp(handler, packet, n) < 0 ? NULL : Py_NewRef(Py_None);
    } else {
        PyObject *plain = PyBytes_FromStringAndSize((const char *)plane.scratch, n);
        if (plain == NULL || dp_add_to_counter(self->transport, plane.str_rx_bytes, len) < 0 ||
            dp_add_to_counter(self->transport, plane.str_rx_packets, 1) < 0) {
            Py_XDECREF(plain);
            Py_DECREF(handler);
            Py_DECREF(on_error);
            return NULL;
        }
        handled = PyObject_CallOneArg(handler, plain);
        Py_DECREF(plain);
    }
    Py_DECREF(handler);
    if (handled != NULL) {
        Py_DECREF(on_error);
        Py_DECREF(handled);
        Py_RETURN_NONE;
    }
    if (!PyErr_ExceptionMatches(PyExc_Exception)) {
        Py_DECREF(on_error);
        return NULL;
    }
    PyObject *type, *exc, *traceback;
    PyErr_Fetch(&type, &exc, &traceback);
    PyErr_NormalizeException(&type, &exc, &traceback);
    if (traceback != NULL) PyException_SetTraceback(exc, traceback);
    PyObject *logged = PyObject_CallOneArg(on_error, exc);
    Py_DECREF(on_error);
    Py_XDECREF(type);
    Py_XDECREF(exc);
    Py_XDECREF(traceback);
    if (logged == NULL) return NULL;
    Py_DECREF(logged);
    Py_RETURN_NONE;
}

static PyTypeObject InboundType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "media._dataplane.Inbound",
    .tp_basicsize = sizeof(Inbound),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "Inbound(transport, original, handler, on_error, resolve, rtcp=None): data_received(data, component)",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)inbound_init,
    .tp_dealloc = (destructor)inbound_dealloc,
    .tp_traverse = (traverseproc)inbound_traverse,
    .tp_clear = (inquiry)inbound_clear,
    .tp_call = (ternaryfunc)inbound_call,
};

/* ---------------------------------------------------------------------------------------------
 * ViewerCore: what media.packets.PacketViewer forwards with, in C fields that Python sees as
 * attributes; fan_out(): one packet of a stream to every viewer, each viewer plan's header
 * extension block built once. The references: media.packets.fan_out, PacketViewer.forward and
 * media.rtpext.ExtensionPlan.block (tests/media/test_dataplane.py compares them packet for packet).
 */
#define NTP_EPOCH_OFFSET 2208988800.0
#define PLANS_CACHED 8

typedef struct {
    PyObject_HEAD
    PyObject *dict;
    PyObject *weakrefs;
    PyObject *plan;     /* ExtensionPlan or None */
    PyObject *send;     /* the RtpSend: an Outbound is called without a Python call */
    PyObject *send_rtp; /* send.rtp */
    PyObject *fanout;
    long long packets, octets, frames;
    long delta;    /* viewer sequence number = stream sequence number + delta (mod 2^16) */
    long long epoch; /* stream sequence number this viewer (re)started at; -1: None */
    long long next_seq; /* -1: None */
    long payload_type;
    unsigned long ssrc;
    char waiting, video;
} ViewerCore;

static PyObject *str_begin, *str_first_frame, *str_frames_out, *str_static, *str_two_byte, *str_abs_send_time_id,
    *str_audio_level_id, *str_block, *str_rtp, *empty_bytes;

static int viewer_traverse(ViewerCore *self, visitproc visit, void *arg) {
    Py_VISIT(self->dict);
    Py_VISIT(self->plan);
    Py_VISIT(self->send);
    Py_VISIT(self->send_rtp);
    Py_VISIT(self->fanout);
    return 0;
}

static int viewer_clear(ViewerCore *self) {
    Py_CLEAR(self->dict);
    Py_CLEAR(self->plan);
    Py_CLEAR(self->send);
    Py_CLEAR(self->send_rtp);
    Py_CLEAR(self->fanout);
    return 0;
}

static void viewer_dealloc(ViewerCore *self) {
    PyObject_GC_UnTrack(self);
    if (self->weakrefs != NULL) PyObject_ClearWeakRefs((PyObject *)self);
    viewer_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *viewer_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    ViewerCore *self = (ViewerCore *)type->tp_alloc(type, 0);
    if (self == NULL) return NULL;
    self->epoch = -1;
    self->next_seq = -1;
    Py_INCREF(Py_None);
    self->plan = Py_None;
    Py_INCREF(Py_None);
    self->fanout = Py_None;
    return (PyObject *)self;
}

#define seq_delta dp_seq_delta

PyObject *dp_get_optional(long long value) {
    if (value < 0) Py_RETURN_NONE;
    return PyLong_FromLongLong(value);
}

/* an int in 0..max, or None (-1) */
int dp_set_optional(long long *slot, PyObject *value, const char *name, long long max) {
    if (value == NULL) {
        PyErr_Format(PyExc_AttributeError, "%s cannot be deleted", name);
        return -1;
    }
    if (value == Py_None) {
        *slot = -1;
        return 0;
    }
    long long v = PyLong_AsLongLong(value);
    if (v == -1 && PyErr_Occurred()) return -1;
    if (v < 0 || v > max) {
        PyErr_Format(PyExc_ValueError, "%s must be an int in 0..%lld or None", name, max);
        return -1;
    }
    *slot = v;
    return 0;
}

int dp_set_flag(char *slot, PyObject *value, const char *name) {
    if (value == NULL) {
        PyErr_Format(PyExc_AttributeError, "%s cannot be deleted", name);
        return -1;
    }
    int truth = PyObject_IsTrue(value);
    if (truth < 0) return -1;
    *slot = (char)truth;
    return 0;
}

static PyObject *viewer_get_epoch(ViewerCore *self, void *c) { return dp_get_optional(self->epoch); }
static int viewer_set_epoch(ViewerCore *self, PyObject *v, void *c) { return dp_set_optional(&self->epoch, v, "_epoch", 0xFFFF); }
static PyObject *viewer_get_next_seq(ViewerCore *self, void *c) { return dp_get_optional(self->next_seq); }
static int viewer_set_next_seq(ViewerCore *self, PyObject *v, void *c) {
    return dp_set_optional(&self->next_seq, v, "_next_seq", 0xFFFF);
}
static PyObject *viewer_get_waiting(ViewerCore *self, void *c) { return PyBool_FromLong(self->waiting); }
static int viewer_set_waiting(ViewerCore *self, PyObject *v, void *c) { return dp_set_flag(&self->waiting, v, "waiting"); }
static PyObject *viewer_get_video(ViewerCore *self, void *c) { return PyBool_FromLong(self->video); }
static int viewer_set_video(ViewerCore *self, PyObject *v, void *c) { return dp_set_flag(&self->video, v, "video"); }

static PyObject *viewer_get_send(ViewerCore *self, void *c) {
    if (self->send == NULL) Py_RETURN_NONE;
    Py_INCREF(self->send);
    return self->send;
}

static int viewer_set_send(ViewerCore *self, PyObject *value, void *c) {
    if (value == NULL) {
        PyErr_SetString(PyExc_AttributeError, "_send cannot be deleted");
        return -1;
    }
    PyObject *rtp = PyObject_GetAttr(value, str_rtp);
    if (rtp == NULL) return -1;
    Py_INCREF(value);
    Py_XSETREF(self->send, value);
    Py_XSETREF(self->send_rtp, rtp);
    return 0;
}

static PyGetSetDef viewer_getset[] = {
    {"_epoch", (getter)viewer_get_epoch, (setter)viewer_set_epoch, "stream sequence number (re)started at", NULL},
    {"_next_seq", (getter)viewer_get_next_seq, (setter)viewer_set_next_seq, "the next sequence number", NULL},
    {"waiting", (getter)viewer_get_waiting, (setter)viewer_set_waiting, "waiting for a keyframe's first packet", NULL},
    {"video", (getter)viewer_get_video, (setter)viewer_set_video, "a video viewer", NULL},
    {"_send", (getter)viewer_get_send, (setter)viewer_set_send, "the RtpSend (sets _send_rtp)", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMemberDef viewer_members[] = {
    {"plan", T_OBJECT, offsetof(ViewerCore, plan), 0, "ExtensionPlan or None"},
    {"fanout", T_OBJECT, offsetof(ViewerCore, fanout), 0, "the stream's Fanout"},
    {"_send_rtp", T_OBJECT, offsetof(ViewerCore, send_rtp), READONLY, "_send.rtp"},
    {"packets", T_LONGLONG, offsetof(ViewerCore, packets), 0, "packets sent"},
    {"octets", T_LONGLONG, offsetof(ViewerCore, octets), 0, "payload octets sent"},
    {"frames", T_LONGLONG, offsetof(ViewerCore, frames), 0, "frames sent (marker bits; audio packets)"},
    {"_delta", T_LONG, offsetof(ViewerCore, delta), 0, "viewer sequence number - stream sequence number"},
    {"payload_type", T_LONG, offsetof(ViewerCore, payload_type), 0, "the viewer's payload type"},
    {"ssrc", T_ULONG, offsetof(ViewerCore, ssrc), 0, "the viewer's SSRC"},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject ViewerCoreType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "media._dataplane.ViewerCore",
    .tp_basicsize = sizeof(ViewerCore),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_BASETYPE,
    .tp_doc = "The forwarding state of media.packets.PacketViewer (its base class)",
    .tp_new = viewer_new,
    .tp_dealloc = (destructor)viewer_dealloc,
    .tp_traverse = (traverseproc)viewer_traverse,
    .tp_clear = (inquiry)viewer_clear,
    .tp_members = viewer_members,
    .tp_getset = viewer_getset,
    .tp_dictoffset = offsetof(ViewerCore, dict),
    .tp_weaklistoffset = offsetof(ViewerCore, weakrefs),
};

/* PacketViewer.forward: 0 (sent, or skipped; a ConnectionError is a skip), -1 with an exception. */
static int viewer_forward(ViewerCore *v, long out_seq, unsigned long ts, int marker, PyObject *payload, int starts,
                          PyObject *ext) {
    if (v->waiting || v->epoch < 0) { /* the first packet, or the first after waiting: Python decides */
        PyObject *seq_obj = PyLong_FromLong(out_seq);
        if (seq_obj == NULL) return -1;
        PyObject *go = PyObject_CallMethodObjArgs((PyObject *)v, str_begin, seq_obj, starts ? Py_True : Py_False,
                                                  NULL);
        Py_DECREF(seq_obj);
        if (go == NULL) return -1;
        int truth = PyObject_IsTrue(go);
        Py_DECREF(go);
        if (truth <= 0) return truth;
    } else {
        long since = seq_delta(out_seq, v->epoch);
        if (since < 0) return 0; /* older than this viewer's start */
        if (since > 0x4000) v->epoch = (out_seq - LATE_LIMIT) & 0xFFFF;
    }
    long seq = (out_seq + v->delta) & 0xFFFF;
    PyObject *sent;
    if (v->send != NULL && Py_IS_TYPE(v->send, &OutboundType)) {
        sent = outbound_build_send((Outbound *)v->send, v->payload_type, marker, (unsigned long)seq, ts, v->ssrc,
                                   payload, ext);
    } else if (v->send_rtp != NULL) {
        PyObject *pt = PyLong_FromLong(v->payload_type), *sq = PyLong_FromLong(seq),
                 *t = PyLong_FromUnsignedLong(ts), *ss = PyLong_FromUnsignedLong(v->ssrc);
        if (pt == NULL || sq == NULL || t == NULL || ss == NULL) {
            sent = NULL;
        } else {
            PyObject *args[7] = {pt, marker ? Py_True : Py_False, sq, t, ss, payload, ext};
            sent = PyObject_Vectorcall(v->send_rtp, args, 7, NULL);
        }
        Py_XDECREF(pt);
        Py_XDECREF(sq);
        Py_XDECREF(t);
        Py_XDECREF(ss);
    } else {
        PyErr_SetString(PyExc_RuntimeError, "the viewer has no sender");
        return -1;
    }
    if (sent == NULL) {
        if (PyErr_ExceptionMatches(PyExc_ConnectionError)) {
            PyErr_Clear();
            return 0;
        }
        return -1;
    }
    Py_DECREF(sent);
    if (v->next_seq < 0 || seq_delta(seq, v->next_seq) >= 0) v->next_seq = (seq + 1) & 0xFFFF;
    v->packets += 1;
    v->octets += PyBytes_GET_SIZE(payload);
    if (marker || !v->video) {
        v->frames += 1;
        if (dp_add_to_counter(v->fanout, str_frames_out, 1) < 0) return -1;
        if (v->frames == 1) {
            PyObject *r = PyObject_CallMethodNoArgs((PyObject *)v, str_first_frame);
            if (r == NULL) return -1;
            Py_DECREF(r);
        }
    }
    return 0;
}

/* An int-or-None attribute: 1 and *out set, 0 for None, -1 with an exception. */
static int optional_id(PyObject *plan, PyObject *name, long *out) {
    PyObject *value = PyObject_GetAttr(plan, name);
    if (value == NULL) return -1;
    if (value == Py_None) {
        Py_DECREF(value);
        return 0;
    }
    *out = PyLong_AsLong(value);
    Py_DECREF(value);
    if (*out == -1 && PyErr_Occurred()) return -1;
    return 1;
}

/* Append one element (ExtensionPlan._element) to body; -1 when it does not fit either form's
 * limits here (the caller asks Python, which says what is wrong). */
static int put_element(unsigned char *body, Py_ssize_t *n, int two_byte, long id, const unsigned char *value,
                       Py_ssize_t len) {
    if (*n + 2 + len > 512) return -1;
    if (two_byte) {
        if (id < 0 || id > 255 || len > 255) return -1;
        body[(*n)++] = (unsigned char)id;
        body[(*n)++] = (unsigned char)len;
    } else {
        if (id < 0 || id > 15 || len < 1 || len > 16) return -1;
        body[(*n)++] = (unsigned char)((id << 4) | (len - 1));
    }
    memcpy(body + *n, value, len);
    *n += len;
    return 0;
}

/* ExtensionPlan.block(send_time, level), new reference. */
static PyObject *plan_block(PyObject *plan, PyObject *send_time, PyObject *level) {
    unsigned char body[520];
    Py_ssize_t n = 0;
    long abs_id = 0, level_id = 0;
    PyObject *fixed = PyObject_GetAttr(plan, str_static);
    if (fixed == NULL) return NULL;
    PyObject *two = PyObject_GetAttr(plan, str_two_byte);
    int two_byte = two == NULL ? -1 : PyObject_IsTrue(two);
    Py_XDECREF(two);
    int has_abs = two_byte < 0 ? -1 : optional_id(plan, str_abs_send_time_id, &abs_id);
    int has_level = has_abs < 0 ? -1 : optional_id(plan, str_audio_level_id, &level_id);
    if (has_level < 0) {
        Py_DECREF(fixed);
        return NULL;
    }
    int fits = PyBytes_Check(fixed) && PyBytes_GET_SIZE(fixed) <= 258;
    if (fits) {
        memcpy(body, PyBytes_AS_STRING(fixed), PyBytes_GET_SIZE(fixed));
        n = PyBytes_GET_SIZE(fixed);
    }
    Py_DECREF(fixed);
    if (fits && has_abs)
        fits = put_element(body, &n, two_byte, abs_id, (const unsigned char *)PyBytes_AS_STRING(send_time),
                           PyBytes_GET_SIZE(send_time)) == 0;
    if (fits && has_level && level != Py_None) {
        if (!PyBytes_Check(level)) {
            fits = 0;
        } else if (PyBytes_GET_SIZE(level) > 0) {
            fits = put_element(body, &n, two_byte, level_id, (const unsigned char *)PyBytes_AS_STRING(level),
                               PyBytes_GET_SIZE(level)) == 0;
        }
    }
    if (!fits) return PyObject_CallMethodObjArgs(plan, str_block, send_time, level, NULL);
    if (n == 0) {
        Py_INCREF(empty_bytes);
        return empty_bytes;
    }
    Py_ssize_t pad = (4 - n % 4) % 4, words = (n + pad) >> 2;
    PyObject *out = PyBytes_FromStringAndSize(NULL, 4 + n + pad);
    if (out == NULL) return NULL;
    unsigned char *p = (unsigned char *)PyBytes_AS_STRING(out);
    unsigned int profile = two_byte ? 0x1000 : 0xBEDE;
    p[0] = (unsigned char)(profile >> 8);
    p[1] = (unsigned char)profile;
    p[2] = (unsigned char)(words >> 8);
    p[3] = (unsigned char)words;
    memcpy(p + 4, body, n);
    memset(p + 4 + n, 0, pad);
    return out;
}

/* rtpext.abs_send_time(): 6.18 fixed-point seconds of the NTP wall clock, 24 bits. */
static PyObject *abs_send_time_now(void) {
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    double t = (double)now.tv_sec + (double)now.tv_nsec * 1e-9;
    unsigned long v = (unsigned long)(long long)((t + NTP_EPOCH_OFFSET) * 262144.0) & 0xFFFFFF;
    unsigned char b[3] = {(unsigned char)(v >> 16), (unsigned char)(v >> 8), (unsigned char)v};
    return PyBytes_FromStringAndSize((const char *)b, 3);
}

/* fan_out(viewers, out_seq, out_ts, marker, payload, starts, level, send_time=None) */
static PyObject *plane_fan_out(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs < 7 || nargs > 8) {
        PyErr_SetString(PyExc_TypeError, "fan_out() takes 7 or 8 arguments");
        return NULL;
    }
    PyObject *viewers = args[0], *payload = args[4], *level = args[6];
    if (!PyTuple_Check(viewers) || !PyBytes_Check(payload)) {
        PyErr_SetString(PyExc_TypeError, "fan_out() takes a tuple of viewers and a bytes payload");
        return NULL;
    }
    long out_seq = PyLong_AsLong(args[1]);
    if (out_seq == -1 && PyErr_Occurred()) return NULL;
    unsigned long out_ts = PyLong_AsUnsignedLongMask(args[2]);
    if (out_ts == (unsigned long)-1 && PyErr_Occurred()) return NULL;
    int marker = PyObject_IsTrue(args[3]), starts = PyObject_IsTrue(args[5]);
    if (marker < 0 || starts < 0) return NULL;
    PyObject *send_time = nargs == 8 && args[7] != Py_None ? args[7] : NULL;
    if (send_time != NULL && (!PyBytes_Check(send_time) || PyBytes_GET_SIZE(send_time) != 3)) {
        PyErr_SetString(PyExc_TypeError, "send_time must be 3 bytes (abs-send-time) or None");
        return NULL;
    }
    if (dp_fan_out(viewers, out_seq, out_ts, marker, payload, starts, level, send_time) < 0) return NULL;
    Py_RETURN_NONE;
}

/* viewers: a tuple; payload: bytes; level: bytes or None; send_time: 3 bytes or NULL (now) */
int dp_fan_out(PyObject *viewers, long out_seq, unsigned long out_ts, int marker, PyObject *payload, int starts,
               PyObject *level, PyObject *send_time) {
    if (send_time != NULL) Py_INCREF(send_time);
    PyObject *plans[PLANS_CACHED], *blocks[PLANS_CACHED];
    int cached = 0, failed = 0;
    Py_ssize_t count = PyTuple_GET_SIZE(viewers);
    Py_INCREF(viewers);
    for (Py_ssize_t i = 0; i < count && !failed; i++) {
        PyObject *item = PyTuple_GET_ITEM(viewers, i);
        if (!PyObject_TypeCheck(item, &ViewerCoreType)) {
            PyErr_SetString(PyExc_TypeError, "fan_out() takes viewers built on media._dataplane.ViewerCore");
            failed = 1;
            break;
        }
        ViewerCore *v = (ViewerCore *)item;
        PyObject *plan = v->plan, *block = NULL;
        if (plan == NULL || plan == Py_None) {
            block = empty_bytes;
            Py_INCREF(block);
        } else {
            for (int k = 0; k < cached; k++)
                if (plans[k] == plan) {
                    block = blocks[k];
                    Py_INCREF(block);
                    break;
                }
            if (block == NULL) {
                if (send_time == NULL && (send_time = abs_send_time_now()) == NULL) {
                    failed = 1;
                    break;
                }
                block = plan_block(plan, send_time, level);
                if (block == NULL) {
                    failed = 1;
                    break;
                }
                if (!PyBytes_Check(block)) {
                    PyErr_SetString(PyExc_TypeError, "ExtensionPlan.block() did not return bytes");
                    Py_DECREF(block);
                    failed = 1;
                    break;
                }
                if (cached < PLANS_CACHED) {
                    Py_INCREF(plan);
                    Py_INCREF(block);
                    plans[cached] = plan;
                    blocks[cached] = block;
                    cached++;
                }
            }
        }
        Py_INCREF(item);
        if (viewer_forward(v, out_seq, out_ts, marker, payload, starts, block) < 0) failed = 1;
        Py_DECREF(item);
        Py_DECREF(block);
    }
    for (int k = 0; k < cached; k++) {
        Py_DECREF(plans[k]);
        Py_DECREF(blocks[k]);
    }
    Py_XDECREF(send_time);
    Py_DECREF(viewers);
    return failed ? -1 : 0;
}

/* ---------------------------------------------------------------------------------------------
 * bind(protect, unprotect, protect_rtcp, unprotect_rtcp, rtp_trailer, rtcp_trailer, error_class,
 *      messages, connected): the libsrtp functions (addresses) and what the objects above compare
 *      against. Once per process; a second call must name the same functions.
 */
static PyObject *plane_bind(PyObject *module, PyObject *args) {
    unsigned long long f[4];
    int rtp_trailer, rtcp_trailer;
    PyObject *error_class, *messages, *connected;
    if (!PyArg_ParseTuple(args, "KKKKiiOO!O:bind", &f[0], &f[1], &f[2], &f[3], &rtp_trailer, &rtcp_trailer,
                          &error_class, &PyList_Type, &messages, &connected))
        return NULL;
    for (int i = 0; i < 4; i++)
        if (f[i] == 0) {
            PyErr_SetString(PyExc_ValueError, "a libsrtp function address is 0");
            return NULL;
        }
    if (plane.bound) {
        if ((srtp_fn)(uintptr_t)f[0] != plane.protect || (srtp_fn)(uintptr_t)f[1] != plane.unprotect) {
            PyErr_SetString(PyExc_RuntimeError, "media._dataplane is bound to another libsrtp");
            return NULL;
        }
        Py_RETURN_NONE;
    }
    plane.protect = (srtp_fn)(uintptr_t)f[0];
    plane.unprotect = (srtp_fn)(uintptr_t)f[1];
    plane.protect_rtcp = (srtp_fn)(uintptr_t)f[2];
    plane.unprotect_rtcp = (srtp_fn)(uintptr_t)f[3];
    plane.rtp_trailer = rtp_trailer;
    plane.rtcp_trailer = rtcp_trailer;
    Py_INCREF(error_class);
    plane.error_class = error_class;
    Py_INCREF(messages);
    plane.messages = messages;
    Py_INCREF(connected);
    plane.connected = connected;
    plane.bound = 1;
    Py_RETURN_NONE;
}

static PyMethodDef plane_functions[] = {
    {"bind", plane_bind, METH_VARARGS, "bind the libsrtp functions (media/rtp_hooks.py)"},
    {"fan_out", (PyCFunction)(void (*)(void))plane_fan_out, METH_FASTCALL,
     "fan_out(viewers, out_seq, out_ts, marker, payload, starts, level, send_time=None): media.packets.fan_out"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef plane_module = {
    PyModuleDef_HEAD_INIT, "media._dataplane",
    "The packet engine's per-datagram work in C (media/rtp_hooks.py, media/packets.py)", -1, plane_functions,
};

PyMODINIT_FUNC PyInit__dataplane(void) {
    if (intern(&plane.str_state, "_state") || intern(&plane.str_rx_srtp, "_rx_srtp") ||
        intern(&plane.str_tx_srtp, "_tx_srtp") || intern(&plane.str_protocol, "protocol") ||
        intern(&plane.str_transport, "transport") || intern(&plane.str_sendto, "sendto") ||
        intern(&plane.str_remote_addr, "remote_addr") ||
        intern(&plane.str_rx_bytes, "_RTCDtlsTransport__rx_bytes") ||
        intern(&plane.str_rx_packets, "_RTCDtlsTransport__rx_packets") ||
        intern(&plane.str_tx_bytes, "_RTCDtlsTransport__tx_bytes") ||
        intern(&plane.str_tx_packets, "_RTCDtlsTransport__tx_packets") || intern(&str_begin, "_begin") ||
        intern(&str_first_frame, "_first_frame") || intern(&str_frames_out, "frames_out") ||
        intern(&str_static, "_static") || intern(&str_two_byte, "_two_byte") ||
        intern(&str_abs_send_time_id, "abs_send_time_id") || intern(&str_audio_level_id, "audio_level_id") ||
        intern(&str_block, "block") || intern(&str_rtp, "rtp"))
        return NULL;
    plane.one = PyLong_FromLong(1);
    empty_bytes = PyBytes_FromStringAndSize(NULL, 0);
    if (plane.one == NULL || empty_bytes == NULL || PyType_Ready(&OutboundType) < 0 || PyType_Ready(&InboundType) < 0 ||
        PyType_Ready(&ViewerCoreType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&plane_module);
    if (m == NULL) return NULL;
    if (PyModule_AddObjectRef(m, "Outbound", (PyObject *)&OutboundType) < 0 ||
        PyModule_AddObjectRef(m, "Inbound", (PyObject *)&InboundType) < 0 ||
        PyModule_AddObjectRef(m, "ViewerCore", (PyObject *)&ViewerCoreType) < 0 ||
        PyModule_AddIntConstant(m, "LATE_LIMIT", LATE_LIMIT) < 0 || ingress_ready(m) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
