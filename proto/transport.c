/* nanomsg behind qd_tp_* (see transport.h). The daemon's REP socket is raw (AF_SP_RAW): a
 * cooked REP forgets a request whose reply is deferred when the next one arrives, a raw one
 * hands the routing header over with each request and takes it back with the reply. */
#include "proto/transport.h"

#include <errno.h>
#include <nanomsg/nn.h>
#include <nanomsg/pubsub.h>
#include <nanomsg/reqrep.h>
#include <string.h>

static qd_err nnerr(const char *what, const char *url)
{
    int e = nn_errno();
    if (e == ETIMEDOUT)
        return qd_seterr(QD_ETIMEDOUT, "%s%s%s: timed out", what, url ? " " : "", url ? url : "");
    return qd_seterr(QD_EIO, "%s%s%s: %s", what, url ? " " : "", url ? url : "", nn_strerror(e));
}

static qd_err open_sock(int domain, int proto, const char *url, int bind, int *sock)
{
    int s = nn_socket(domain, proto);
    if (s < 0)
        return nnerr("nn_socket", url);
    /* the largest message a peer can make us take: a reply carries at most one model chunk
     * (fetch_chunk: 256 KB by default, 16 MB at most) or a page of the registry; notifications
     * are a few hundred bytes */
    int zero = 0, max = proto == NN_SUB ? 64 << 10 : 17 << 20;
    nn_setsockopt(s, NN_SOL_SOCKET, NN_LINGER, &zero, sizeof zero);
    nn_setsockopt(s, NN_SOL_SOCKET, NN_RCVMAXSIZE, &max, sizeof max);
    if ((bind ? nn_bind(s, url) : nn_connect(s, url)) < 0) {
        qd_err e = nnerr(bind ? "bind" : "connect", url);
        nn_close(s);
        return e;
    }
    *sock = s;
    return QD_OK;
}

qd_err qd_tp_rep_bind(const char *url, int *sock)
{
    QD_TRY(open_sock(AF_SP_RAW, NN_REP, url, 1, sock));
    int max = 1 << 20; /* larger requests are cut off by nanomsg; up to it, the daemon answers */
    nn_setsockopt(*sock, NN_SOL_SOCKET, NN_RCVMAXSIZE, &max, sizeof max);
    return QD_OK;
}

qd_err qd_tp_pub_bind(const char *url, int *sock)
{
    QD_TRY(open_sock(AF_SP, NN_PUB, url, 1, sock));
    int sz = 16 << 20;
    nn_setsockopt(*sock, NN_SOL_SOCKET, NN_SNDBUF, &sz, sizeof sz);
    return QD_OK;
}

int qd_tp_rcvfd(int sock)
{
    int fd = -1;
    size_t sz = sizeof fd;
    if (nn_getsockopt(sock, NN_SOL_SOCKET, NN_RCVFD, &fd, &sz) < 0)
        return -1;
    return fd;
}

qd_err qd_tp_recv_req(int sock, struct qd_tp_req *r)
{
    memset(r, 0, sizeof *r);
    struct nn_iovec iov = {&r->body, NN_MSG};
    struct nn_msghdr h = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = &r->control, .msg_controllen = NN_MSG};
    int n = nn_recvmsg(sock, &h, NN_DONTWAIT);
    if (n < 0) {
        if (nn_errno() == EAGAIN)
            return QD_ENOENT;
        return nnerr("recv", NULL);
    }
    r->len = (size_t)n;
    return QD_OK;
}

void qd_tp_req_drop(struct qd_tp_req *r)
{
    if (r->body)
        nn_freemsg(r->body);
    if (r->control)
        nn_freemsg(r->control);
    r->body = r->control = NULL;
}

qd_err qd_tp_reply(int sock, struct qd_tp_req *r, const void *buf, size_t len)
{
    if (r->body)
        nn_freemsg(r->body);
    r->body = NULL;
    struct nn_iovec iov = {(void *)buf, len};
    struct nn_msghdr h = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = &r->control, .msg_controllen = NN_MSG};
    if (!r->control)
        return qd_seterr(QD_EINVAL, "reply: no routing header");
    int n = nn_sendmsg(sock, &h, NN_DONTWAIT);
    if (n < 0) {
        qd_err e = nnerr("reply", NULL);
        nn_freemsg(r->control); /* not consumed on failure */
        r->control = NULL;
        return e;
    }
    r->control = NULL; /* consumed */
    return QD_OK;
}

qd_err qd_tp_pub(int sock, const void *buf, size_t len)
{
    if (nn_send(sock, buf, len, NN_DONTWAIT) < 0)
        return nnerr("publish", NULL);
    return QD_OK;
}

qd_err qd_tp_req_connect(const char *url, int timeout_ms, int *sock)
{
    QD_TRY(open_sock(AF_SP, NN_REQ, url, 0, sock));
    nn_setsockopt(*sock, NN_SOL_SOCKET, NN_RCVTIMEO, &timeout_ms, sizeof timeout_ms);
    nn_setsockopt(*sock, NN_SOL_SOCKET, NN_SNDTIMEO, &timeout_ms, sizeof timeout_ms);
    /* never resend on our own: a resent request repeats its nonce and is refused */
    int ivl = 1 << 30;
    nn_setsockopt(*sock, NN_REQ, NN_REQ_RESEND_IVL, &ivl, sizeof ivl);
    return QD_OK;
}

qd_err qd_tp_call(int sock, const void *req, size_t len, void **reply, size_t *rlen)
{
    int n;
    while ((n = nn_send(sock, req, len, 0)) < 0 && nn_errno() == EINTR)
        ; /* a signal (a timer, SIGCHLD) is not a failure: the same wait again */
    if (n < 0)
        return nnerr("send", NULL);
    void *b = NULL;
    while ((n = nn_recv(sock, &b, NN_MSG, 0)) < 0 && nn_errno() == EINTR)
        ;
    if (n < 0)
        return nnerr("recv", NULL);
    *reply = b;
    *rlen = (size_t)n;
    return QD_OK;
}

qd_err qd_tp_sub_connect(const char *url, int *sock)
{
    QD_TRY(open_sock(AF_SP, NN_SUB, url, 0, sock));
    int sz = 16 << 20;
    nn_setsockopt(*sock, NN_SOL_SOCKET, NN_RCVBUF, &sz, sizeof sz);
    return QD_OK;
}

qd_err qd_tp_subscribe(int sock, const void *topic, size_t len)
{
    if (nn_setsockopt(sock, NN_SUB, NN_SUB_SUBSCRIBE, topic, len) < 0)
        return nnerr("subscribe", NULL);
    return QD_OK;
}

qd_err qd_tp_recv(int sock, int timeout_ms, void **buf, size_t *len)
{
    nn_setsockopt(sock, NN_SOL_SOCKET, NN_RCVTIMEO, &timeout_ms, sizeof timeout_ms);
    void *b = NULL;
    int n;
    while ((n = nn_recv(sock, &b, NN_MSG, 0)) < 0 && nn_errno() == EINTR)
        ;
    if (n < 0)
        return nnerr("recv", NULL);
    *buf = b;
    *len = (size_t)n;
    return QD_OK;
}

void qd_tp_free(void *buf)
{
    if (buf)
        nn_freemsg(buf);
}

void qd_tp_close(int sock)
{
    if (sock >= 0)
        nn_close(sock);
}
