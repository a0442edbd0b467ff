/* The packet engine's per-datagram work in C: SRTP unprotect on the way in, RTP header build,
 * SRTP protect and send on the way out (media/dataplane.py is its Python face and its reference).
 *
 * Everything here does what media/rtp_hooks.py's pure-Python path does, on the same Python objects
 * (aiortc's RTCDtlsTransport and its counters, aioice's nominated pair and its uvloop/asyncio
 * transport) and with the same SRTP sessions: libsrtp is called through the function pointers of
 * the copy pylibsrtp loaded (media/dataplane.py passes their addresses in once), on the srtp_t of
 * pylibsrtp's own Session objects, so keys, replay windows and rollover counters stay one state.
 * What it saves is the interpreter around each call: pylibsrtp's wrapper (a cffi buffer, two
 * copies and a slice), the closures of rtp_hooks and rtpwire.build_rtp.
 *
 * Not thread-safe by design: it runs on the event loop's thread under the GIL, like the Python
 * path, and its scratch buffer is used only between two calls back into Python.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

typedef int (*srtp_fn)(void *ctx, void *hdr, int *len);

#define BUFFER_LEN 1500 /* pylibsrtp's own buffer: a longer packet is refused the same way */

typedef struct {
    srtp_fn protect, unprotect, protect_rtcp, unprotect_rtcp;
    int rtp_trailer, rtcp_trailer;
    PyObject *error_class; /* pylibsrtp.Error */
    PyObject *messages;    /* pylibsrtp.ERRORS: a message per status */
    PyObject *connected;   /* aiortc.rtcdtlstransport.State.CONNECTED */
    PyObject *str_state, *str_rx_srtp, *str_tx_srtp, *str_protocol, *str_transport, *str_sendto,
        *str_remote_addr, *str_rx_bytes, *str_rx_packets, *str_tx_bytes, *str_tx_packets, *one;
    int bound;
    unsigned char scratch[BUFFER_LEN + 16];
} plane_t;

static plane_t plane;

static int intern(PyObject **slot, const char *s) {
    *slot = PyUnicode_InternFromString(s);
    return *slot == NULL ? -1 : 0;
}

static PyObject *srtp_error(int status) {
    if (status > 0 && status < PyList_GET_SIZE(plane.messages))
        PyErr_SetObject(plane.error_class, PyList_GET_ITEM(plane.messages, status));
    else
        PyErr_Format(plane.error_class, "libsrtp status %d", status);
    return NULL;
}

static int add_to_counter(PyObject *owner, PyObject *name, long long amount) {
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

/* Check the state, find the pair and session, protect scratch[0:len] in place and send it. */
static PyObject *outbound_emit(Outbound *self, int len) {
    PyObject *state = PyObject_GetAttr(self->transport, plane.str_state);
    if (state == NULL) return NULL;
    int connected = state == plane.connected;
    Py_DECREF(state);
    if (!connected) {
        PyErr_SetString(PyExc_ConnectionError, "Cannot send encrypted RTP, not connected");
        return NULL;
    }
    PyObject *pair = PyDict_GetItemWithError(self->nominated, plane.one); /* borrowed */
    if (pair == NULL) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_ConnectionError, "Cannot send data, not connected");
        return NULL;
    }
    PyObject *session = PyObject_GetAttr(self->transport, plane.str_tx_srtp);
    if (session == NULL) return NULL;
    if (pair != self->pair || session != self->session) {
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
            return NULL;
        }
        Py_INCREF(pair);
        self->pair = pair;
        self->sendto = sendto;
        self->addr = addr;
        self->session = session; /* takes the reference */
        self->ctx = ctx;
    } else {
        Py_DECREF(session);
    }
    int n = len;
    int status = (self->rtcp ? plane.protect_rtcp : plane.protect)(self->ctx, plane.scratch, &n);
    if (status != 0) return srtp_error(status);
    PyObject *data = PyBytes_FromStringAndSize((const char *)plane.scratch, n);
    if (data == NULL) return NULL;
    PyObject *call[2] = {data, self->addr};
    PyObject *sendto = self->sendto;
    Py_INCREF(sendto); /* a sendto that closes the transport must not free what is being called */
    PyObject *sent = PyObject_Vectorcall(sendto, call, 2, NULL);
    Py_DECREF(sendto);
    Py_DECREF(data);
    if (sent == NULL) return NULL;
    Py_DECREF(sent);
    if (add_to_counter(self->transport, plane.str_tx_bytes, n) < 0 ||
        add_to_counter(self->transport, plane.str_tx_packets, 1) < 0)
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
    if (outbound_room(self, len) < 0) return NULL;
    memcpy(plane.scratch, PyBytes_AS_STRING(data), len);
    return outbound_emit(self, (int)len);
}

/* rtp(payload_type, marker, sequence_number, timestamp, ssrc, payload, extension): what
 * rtpwire.build_rtp builds (version 2, no padding or CSRC; extension a whole block or b""),
 * protected and sent. */
static PyObject *outbound_rtp(Outbound *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 7) {
        PyErr_SetString(PyExc_TypeError, "rtp() takes 7 arguments");
        return NULL;
    }
    long pt = PyLong_AsLong(args[0]);
    int marker = PyObject_IsTrue(args[1]);
    unsigned long seq = PyLong_AsUnsignedLongMask(args[2]);
    unsigned long ts = PyLong_AsUnsignedLongMask(args[3]);
    unsigned long ssrc = PyLong_AsUnsignedLongMask(args[4]);
    if (PyErr_Occurred() || marker < 0) return NULL;
    if (!PyBytes_Check(args[5]) || !PyBytes_Check(args[6])) {
        PyErr_SetString(PyExc_TypeError, "payload and extension must be bytes");
        return NULL;
    }
    if (pt < 0 || pt > 127) {
        PyErr_SetString(PyExc_ValueError, "payload type out of range");
        return NULL;
    }
    Py_ssize_t ext_len = PyBytes_GET_SIZE(args[6]), payload_len = PyBytes_GET_SIZE(args[5]);
    Py_ssize_t len = 12 + ext_len + payload_len;
    if (outbound_room(self, len) < 0) return NULL;
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
    memcpy(p + 12, PyBytes_AS_STRING(args[6]), ext_len);
    memcpy(p + 12 + ext_len, PyBytes_AS_STRING(args[5]), payload_len);
    return outbound_emit(self, (int)len);
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
    PyObject *transport, *original, *handler, *on_error, *resolve;
    PyObject *session;
    void *ctx;
} Inbound;

static int inbound_traverse(Inbound *self, visitproc visit, void *arg) {
    Py_VISIT(self->transport);
    Py_VISIT(self->original);
    Py_VISIT(self->handler);
    Py_VISIT(self->on_error);
    Py_VISIT(self->resolve);
    Py_VISIT(self->session);
    return 0;
}

static int inbound_clear(Inbound *self) {
    Py_CLEAR(self->transport);
    Py_CLEAR(self->original);
    Py_CLEAR(self->handler);
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
    static char *names[] = {"transport", "original", "handler", "on_error", "resolve", NULL};
    PyObject *transport, *original, *handler, *on_error, *resolve;
    if (!plane.bound) {
        PyErr_SetString(PyExc_RuntimeError, "media._dataplane.bind() was not called");
        return -1;
    }
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOOOO", names, &transport, &original, &handler, &on_error,
                                     &resolve))
        return -1;
    inbound_clear(self);
    Py_INCREF(transport);
    self->transport = transport;
    Py_INCREF(original);
    self->original = original;
    Py_INCREF(handler);
    self->handler = handler;
    Py_INCREF(on_error);
    self->on_error = on_error;
    Py_INCREF(resolve);
    self->resolve = resolve;
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
    if (session == Py_None || len < 2 || d[0] < 128 || d[0] > 191 || (d[1] > 191 && d[1] < 224)) {
        Py_DECREF(session);
        PyObject *call[2] = {data, component};
        return PyObject_Vectorcall(self->original, call, 2, NULL);
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
    if (plane.unprotect(self->ctx, plane.scratch, &n) != 0) Py_RETURN_NONE;
    if (add_to_counter(self->transport, plane.str_rx_bytes, len) < 0 ||
        add_to_counter(self->transport, plane.str_rx_packets, 1) < 0)
        return NULL;
    PyObject *plain = PyBytes_FromStringAndSize((const char *)plane.scratch, n);
    if (plain == NULL) return NULL;
    PyObject *handled = PyObject_CallOneArg(self->handler, plain);
    Py_DECREF(plain);
    if (handled != NULL) {
        Py_DECREF(handled);
        Py_RETURN_NONE;
    }
    if (!PyErr_ExceptionMatches(PyExc_Exception)) return NULL;
    PyObject *type, *exc, *traceback;
    PyErr_Fetch(&type, &exc, &traceback);
    PyErr_NormalizeException(&type, &exc, &traceback);
    if (traceback != NULL) PyException_SetTraceback(exc, traceback);
    PyObject *logged = PyObject_CallOneArg(self->on_error, exc);
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
    .tp_doc = "Inbound(transport, original, handler, on_error, resolve): data_received(data, component)",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)inbound_init,
    .tp_dealloc = (destructor)inbound_dealloc,
    .tp_traverse = (traverseproc)inbound_traverse,
    .tp_clear = (inquiry)inbound_clear,
    .tp_call = (ternaryfunc)inbound_call,
};

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
    {"bind", plane_bind, METH_VARARGS, "bind the libsrtp functions (see media/dataplane.py)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef plane_module = {
    PyModuleDef_HEAD_INIT, "media._dataplane",
    "The packet engine's per-datagram work in C (media/dataplane.py)", -1, plane_functions,
};

PyMODINIT_FUNC PyInit__dataplane(void) {
    if (intern(&plane.str_state, "_state") || intern(&plane.str_rx_srtp, "_rx_srtp") ||
        intern(&plane.str_tx_srtp, "_tx_srtp") || intern(&plane.str_protocol, "protocol") ||
        intern(&plane.str_transport, "transport") || intern(&plane.str_sendto, "sendto") ||
        intern(&plane.str_remote_addr, "remote_addr") ||
        intern(&plane.str_rx_bytes, "_RTCDtlsTransport__rx_bytes") ||
        intern(&plane.str_rx_packets, "_RTCDtlsTransport__rx_packets") ||
        intern(&plane.str_tx_bytes, "_RTCDtlsTransport__tx_bytes") ||
        intern(&plane.str_tx_packets, "_RTCDtlsTransport__tx_packets"))
        return NULL;
    plane.one = PyLong_FromLong(1);
    if (plane.one == NULL || PyType_Ready(&OutboundType) < 0 || PyType_Ready(&InboundType) < 0) return NULL;
    PyObject *m = PyModule_Create(&plane_module);
    if (m == NULL) return NULL;
    if (PyModule_AddObjectRef(m, "Outbound", (PyObject *)&OutboundType) < 0 ||
        PyModule_AddObjectRef(m, "Inbound", (PyObject *)&InboundType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
