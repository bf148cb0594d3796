/* libquantd-client (see client.h). Stateless apart from the sockets and each identity's
 * nonce; every reply is checked before it is trusted. */
#include "client/client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/file.h"
#include "proto/transport.h"

qd_err qd_client_open(struct qd_client *c, const char *control, const char *push, int timeout_ms)
{
    c->req = c->sub = -1;
    c->timeout_ms = timeout_ms > 0 ? timeout_ms : 5000;
    QD_TRY(qd_tp_req_connect(control, c->timeout_ms, &c->req));
    if (push) {
        qd_err e = qd_tp_sub_connect(push, &c->sub);
        if (e) {
            qd_tp_close(c->req);
            return e;
        }
    }
    return QD_OK;
}

void qd_client_close(struct qd_client *c)
{
    qd_tp_close(c->req);
    qd_tp_close(c->sub);
    c->req = c->sub = -1;
}

qd_err qd_ident_init(struct qd_ident *who, const char *id, const char *key)
{
    memset(who, 0, sizeof *who);
    if (strlen(id) > QD_PROTO_MAX_ID)
        return qd_seterr(QD_EINVAL, "id '%s' is too long", id);
    strcpy(who->id, id);
    char hex[130];
    if (strlen(key) == 2 * QD_PROTO_KEY_BYTES) {
        snprintf(hex, sizeof hex, "%s", key);
    } else {
        uint8_t *b;
        size_t n;
        QD_TRY(qd_file_read(key, &b, &n));
        snprintf(hex, sizeof hex, "%.*s", (int)(n < 129 ? n : 129), (char *)b);
        free(b);
        hex[strcspn(hex, "\r\n ")] = 0;
    }
    qd_err e = qd_proto_unhex(hex, who->key, QD_PROTO_KEY_BYTES);
    return e ? qd_wraperr(e, "key: ", NULL) : QD_OK;
}

static qd_err err_from_reply(const cJSON *r)
{
    const cJSON *ok = cJSON_GetObjectItemCaseSensitive(r, "ok");
    if (cJSON_IsTrue(ok))
        return QD_OK;
    const cJSON *er = cJSON_GetObjectItemCaseSensitive(r, "error");
    const cJSON *code = cJSON_GetObjectItemCaseSensitive(er, "code");
    const cJSON *msg = cJSON_GetObjectItemCaseSensitive(er, "message");
    qd_err e = QD_EFORMAT;
    if (cJSON_IsString(code))
        for (int i = 1; i < QD_ERR_COUNT; i++)
            if (!strcmp(qd_err_name(i), code->valuestring))
                e = i;
    return qd_seterr(e, "%s", cJSON_IsString(msg) ? msg->valuestring : "malformed error reply");
}

qd_err qd_client_call_raw(struct qd_client *c, const void *msg, size_t len, char **reply,
                          size_t *rlen)
{
    void *b;
    size_t n;
    QD_TRY(qd_tp_call(c->req, msg, len, &b, &n));
    char *t = malloc(n + 1);
    if (!t) {
        qd_tp_free(b);
        return qd_seterr(QD_ENOMEM, "out of memory");
    }
    memcpy(t, b, n);
    t[n] = 0;
    qd_tp_free(b);
    *reply = t;
    *rlen = n;
    return QD_OK;
}

qd_err qd_client_call(struct qd_client *c, struct qd_ident *who, cJSON *req, cJSON **reply,
                      uint8_t **bin, size_t *binlen)
{
    if (reply)
        *reply = NULL;
    cJSON_AddNumberToObject(req, "v", QD_PROTO_VERSION);
    char *txt = NULL;
    qd_err e = QD_OK;
    if (who) {
        int64_t n = qd_proto_now_us();
        who->nonce = n > who->nonce ? n : who->nonce + 1;
        cJSON_AddStringToObject(req, "from", who->id);
        cJSON_AddNumberToObject(req, "nonce", (double)who->nonce);
        char *body = cJSON_PrintUnformatted(req);
        e = body ? qd_proto_seal(body, who->key, &txt) : qd_seterr(QD_ENOMEM, "out of memory");
        free(body);
    } else if (!(txt = cJSON_PrintUnformatted(req)))
        e = qd_seterr(QD_ENOMEM, "out of memory");
    cJSON_Delete(req);
    if (e)
        return e;
    void *b;
    size_t n;
    e = qd_tp_call(c->req, txt, strlen(txt), &b, &n);
    free(txt);
    if (e)
        return e;
    if (n > 0 && ((char *)b)[0] != '{') {
        if (!bin) {
            qd_tp_free(b);
            return qd_seterr(QD_EFORMAT, "unexpected binary reply of %zu bytes", n);
        }
        *bin = malloc(n ? n : 1);
        if (!*bin) {
            qd_tp_free(b);
            return qd_seterr(QD_ENOMEM, "out of memory");
        }
        memcpy(*bin, b, n);
        *binlen = n;
        qd_tp_free(b);
        return QD_OK;
    }
    cJSON *r = cJSON_ParseWithLength(b, n);
    qd_tp_free(b);
    if (!cJSON_IsObject(r)) {
        cJSON_Delete(r);
        return qd_seterr(QD_EFORMAT, "malformed reply");
    }
    e = err_from_reply(r);
    if (reply)
        *reply = r;
    else
        cJSON_Delete(r);
    return e;
}

static cJSON *op(const char *name)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "op", name);
    return j;
}

qd_err qd_client_hello(struct qd_client *c, struct qd_ident *who, const char *profile,
                       cJSON **reply)
{
    cJSON *j = op("hello");
    cJSON_AddStringToObject(j, "profile", profile);
    return qd_client_call(c, who, j, reply, NULL, NULL);
}

void qd_client_ctx_json(cJSON *j, const struct qd_client_ctx *x)
{
    struct qd_proto_ctx c = {.free_flash = x->free_flash, .free_ram = x->free_ram,
                             .latency_ms = x->latency_ms, .energy_mj = x->energy_mj,
                             .battery = x->battery};
    qd_proto_ctx_write(j, &c);
}

qd_err qd_client_report(struct qd_client *c, struct qd_ident *who,
                        const struct qd_client_ctx *x, cJSON **reply)
{
    cJSON *j = op("report");
    qd_client_ctx_json(j, x);
    return qd_client_call(c, who, j, reply, NULL, NULL);
}

qd_err qd_client_fetch(struct qd_client *c, struct qd_ident *who, int64_t version,
                       const uint8_t pk[QD_PROTO_PUB_BYTES], uint8_t **qm, size_t *len)
{
    cJSON *j = op("fetch");
    if (version > 0)
        cJSON_AddNumberToObject(j, "version", (double)version);
    uint8_t *b = NULL;
    size_t n = 0;
    QD_TRY(qd_client_call(c, who, j, NULL, &b, &n));
    if (n <= QD_PROTO_SIG_BYTES) {
        free(b);
        return qd_seterr(QD_EFORMAT, "fetch: reply of %zu bytes", n);
    }
    qd_err e = qd_proto_verify_model(b, n - QD_PROTO_SIG_BYTES, b + n - QD_PROTO_SIG_BYTES, pk);
    if (e) {
        free(b);
        return e;
    }
    *qm = b;
    *len = n - QD_PROTO_SIG_BYTES;
    return QD_OK;
}

qd_err qd_client_ack(struct qd_client *c, struct qd_ident *who, int64_t version, const char *sha)
{
    cJSON *j = op("ack");
    cJSON_AddNumberToObject(j, "version", (double)version);
    cJSON_AddStringToObject(j, "sha256", sha);
    return qd_client_call(c, who, j, NULL, NULL, NULL);
}

qd_err qd_client_sign_pub(struct qd_client *c, struct qd_ident *admin,
                          uint8_t pk[QD_PROTO_PUB_BYTES])
{
    cJSON *j = op("keys"), *r;
    cJSON_AddStringToObject(j, "action", "pub");
    QD_TRY(qd_client_call(c, admin, j, &r, NULL, NULL));
    const char *hex = NULL;
    qd_err e = qd_proto_str(r, "sign_pub", 64, 1, &hex);
    if (!e)
        e = qd_proto_unhex(hex, pk, QD_PROTO_PUB_BYTES);
    cJSON_Delete(r);
    return e;
}

qd_err qd_client_subscribe(struct qd_client *c, const char *id)
{
    if (c->sub < 0)
        return qd_seterr(QD_EINVAL, "subscribe: no push endpoint");
    return qd_tp_subscribe(c->sub, id, strlen(id) + 1); /* with its \0: exact match */
}

qd_err qd_client_push_recv(struct qd_client *c, int timeout_ms,
                           const uint8_t pk[QD_PROTO_PUB_BYTES], struct qd_client_push *p)
{
    memset(p, 0, sizeof *p);
    if (c->sub < 0)
        return qd_seterr(QD_EINVAL, "push: no push endpoint");
    void *b;
    size_t n;
    QD_TRY(qd_tp_recv(c->sub, timeout_ms, &b, &n));
    struct qd_push_view v;
    qd_err e = qd_proto_push_decode(b, n, &v);
    const char *sha = NULL, *policy = NULL;
    int64_t ver = 0;
    if (!e)
        e = qd_proto_int(v.header, "version", 1, INT64_C(1) << 53, 1, &ver);
    if (!e)
        e = qd_proto_str(v.header, "sha256", 64, 1, &sha);
    if (!e)
        e = qd_proto_str(v.header, "policy", sizeof p->policy - 1, 0, &policy);
    if (!e)
        e = qd_proto_verify_model(v.qm, v.qm_len, v.sig, pk);
    if (!e) {
        char got[65];
        qd_proto_sha256_hex(v.qm, v.qm_len, got);
        if (strcmp(got, sha))
            e = qd_seterr(QD_ECHECKSUM, "push: sha256 %s, header says %s", got, sha);
    }
    if (!e && !(p->qm = malloc(v.qm_len)))
        e = qd_seterr(QD_ENOMEM, "out of memory");
    if (!e) {
        memcpy(p->qm, v.qm, v.qm_len);
        p->len = v.qm_len;
        p->version = ver;
        snprintf(p->id, sizeof p->id, "%s", v.id);
        snprintf(p->sha, sizeof p->sha, "%s", sha);
        snprintf(p->policy, sizeof p->policy, "%s", policy ? policy : "");
    }
    cJSON_Delete(v.header);
    qd_tp_free(b);
    return e;
}

void qd_client_push_fini(struct qd_client_push *p)
{
    free(p->qm);
    memset(p, 0, sizeof *p);
}
