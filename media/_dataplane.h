/* What the translation units of media._dataplane share: _dataplane.c (SRTP in and out, the
 * viewers' fan-out) and _ingress.c (a publisher's packets, from the datagram to the fan-out). */
#ifndef MEDIA_DATAPLANE_H
#define MEDIA_DATAPLANE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>
#include <structmember.h>

typedef int (*srtp_fn)(void *ctx, void *hdr, int *len);

#define BUFFER_LEN 1500 /* pylibsrtp's own buffer: a longer packet is refused the same way */
#define LATE_LIMIT 400  /* media.packets.LATE_LIMIT (pinned by a test) */

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

extern plane_t dp_plane;

static inline long dp_seq_delta(long a, long b) { return ((a - b + 0x8000) & 0xFFFF) - 0x8000; }

int dp_intern(PyObject **slot, const char *s);
int dp_add_to_counter(PyObject *owner, PyObject *name, long long amount);
PyObject *dp_get_optional(long long value);
int dp_set_optional(long long *slot, PyObject *value, const char *name, long long max);
int dp_set_flag(char *slot, PyObject *value, const char *name);
/* media.packets.fan_out: 0, or -1 with an exception */
int dp_fan_out(PyObject *viewers, long out_seq, unsigned long out_ts, int marker, PyObject *payload, int starts,
               PyObject *level, PyObject *send_time);

/* _ingress.c */
extern PyTypeObject IngressCoreType;
/* one unprotected RTP packet (d, n) for a PublisherIngress: 0, or -1 with an exception */
int ingress_rtp(PyObject *ingress, const unsigned char *d, Py_ssize_t n);
int ingress_ready(PyObject *module);

#endif
