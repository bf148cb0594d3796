/* The one file that knows nanomsg (a move to nng changes only transport.c). Sockets are ints;
 * every nanomsg -1/errno is mapped to a qd_err with the call and endpoint in the message.
 *
 * Usage (daemon side):
 *     int rep, pub;
 *     qd_tp_rep_bind("ipc:///tmp/q/control", &rep);     // raw REP: replies may be deferred
 *     qd_tp_pub_bind("ipc:///tmp/q/push", &pub);
 *     int fd = qd_tp_rcvfd(rep);                          // watch with uv_poll (readable)
 *     struct qd_tp_req r;
 *     while (qd_tp_recv_req(rep, &r) == QD_OK) {          // QD_ENOENT: drained (EAGAIN)
 *         ... qd_tp_reply(rep, &r, text, len);            // now or later; frees r's header
 *     }
 * Usage (client side):
 *     int s; qd_tp_req_connect("ipc:///tmp/q/control", 5000, &s);
 *     void *rep; size_t n; qd_tp_call(s, req, len, &rep, &n); qd_tp_free(rep);
 *
 * Never calls nn_term. */
#ifndef QD_PROTO_TRANSPORT_H
#define QD_PROTO_TRANSPORT_H

#include <stddef.h>

#include "core/err.h"

struct qd_tp_req {
    void *body;    /* nanomsg-owned; qd_tp_reply or qd_tp_req_drop releases it */
    size_t len;
    void *control; /* the request's routing header, needed to reply */
};

qd_err qd_tp_rep_bind(const char *url, int *sock);
qd_err qd_tp_pub_bind(const char *url, int *sock);
/* Readable when a message waits (level: re-check after every drain). */
int qd_tp_rcvfd(int sock);
/* Non-blocking: QD_ENOENT when nothing waits. */
qd_err qd_tp_recv_req(int sock, struct qd_tp_req *r);
/* Sends the reply (non-blocking) and releases the request. */
qd_err qd_tp_reply(int sock, struct qd_tp_req *r, const void *buf, size_t len);
void qd_tp_req_drop(struct qd_tp_req *r);
/* Non-blocking publish; PUB drops to slow subscribers. */
qd_err qd_tp_pub(int sock, const void *buf, size_t len);

qd_err qd_tp_req_connect(const char *url, int timeout_ms, int *sock);
/* Sends a request and waits for the reply (QD_ETIMEDOUT after the socket's timeout). */
qd_err qd_tp_call(int sock, const void *req, size_t len, void **reply, size_t *rlen);
qd_err qd_tp_sub_connect(const char *url, int *sock);
qd_err qd_tp_subscribe(int sock, const void *topic, size_t len);
/* Waits up to timeout_ms (-1: forever) for one message: QD_ETIMEDOUT when none came. */
qd_err qd_tp_recv(int sock, int timeout_ms, void **buf, size_t *len);
void qd_tp_free(void *buf);
void qd_tp_close(int sock);

#endif
