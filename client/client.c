/* libquantd-client (see client.h). Stateless apart from the sockets and each identity's
 * nonce; every reply is checked before it is trusted. */
#include "client/client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "core/file.h"
#include "proto/pack.h"
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
    qd_err e = qd_client_hex_arg(key, who->key, QD_PROTO_KEY_BYTES);
    return e ? qd_wraperr(e, "key: ", NULL) : QD_OK;
}

qd_err qd_client_hex_arg(const char *v, uint8_t *out, size_t n)
{
    char hex[200];
    if (strlen(v) == 2 * n) {
        snprintf(hex, sizeof hex, "%.199s", v);
    } else {
        uint8_t *b;
        size_t len;
        QD_TRY(qd_file_read(v, &b, &len));
        snprintf(hex, sizeof hex, "%.*s", (int)(len < 199 ? len : 199), (char *)b);
        free(b);
        hex[strcspn(hex, "\r\n ")] = 0;
    }
    return qd_proto_unhex(hex, out, n);
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
    struct qd_proto_ctx c = {.free_flash = x->free_flash,
                             .free_ram = x->free_ram,
                             .latency_ms = x->latency_ms,
                             .energy_mj = x->energy_mj,
                             .battery = x->battery};
    qd_proto_ctx_write(j, &c);
}

qd_err qd_client_report(struct qd_client *c, struct qd_ident *who, const struct qd_client_ctx *x,
                        cJSON **reply)
{
    cJSON *j = op("report");
    qd_client_ctx_json(j, x);
    return qd_client_call(c, who, j, reply, NULL, NULL);
}

/* One chunk of a fetch, asked again from its offset when the reply does not come. */
static qd_err fetch_chunk(struct qd_client *c, struct qd_ident *who, const char *device,
                          int64_t version, int64_t have, int64_t offset, uint8_t **b, size_t *n,
                          struct qd_proto_chunk *ch)
{
    qd_err e = QD_OK;
    for (int attempt = 0; attempt < 3; attempt++) {
        cJSON *j = op("fetch");
        if (device)
            cJSON_AddStringToObject(j, "device", device);
        if (version > 0)
            cJSON_AddNumberToObject(j, "version", (double)version);
        if (have > 0)
            cJSON_AddNumberToObject(j, "have", (double)have);
        if (offset > 0)
            cJSON_AddNumberToObject(j, "offset", (double)offset);
        e = qd_client_call(c, who, j, NULL, b, n);
        if (e != QD_ETIMEDOUT)
            break;
    }
    if (e)
        return e;
    e = qd_proto_chunk_decode(*b, *n, ch);
    if (e) {
        free(*b);
        *b = NULL;
    }
    return e;
}

/* The packed stream, chunk by chunk from the first (already in ch): every chunk of the same
 * version, packing and length, each where the previous ended. */
static qd_err fetch_rest(struct qd_client *c, struct qd_ident *who, const char *device,
                         int64_t have, uint8_t *b, struct qd_proto_chunk *ch, uint8_t *buf,
                         struct qd_client_model *out)
{
    int64_t total = ch->total, v = ch->version, base = ch->base;
    char enc[8];
    snprintf(enc, sizeof enc, "%s", ch->encoding);
    size_t got = 0, n;
    qd_err e = QD_OK;
    while (!e) {
        if (ch->offset != (int64_t)got || ch->total != total || ch->version != v ||
            ch->base != base || strcmp(ch->encoding, enc) ||
            (ch->len == 0 && got < (size_t)total)) {
            e = qd_seterr(QD_EFORMAT,
                          "fetch: a %s chunk at %lld of %lld, expected %s at %zu of %lld",
                          ch->encoding, (long long)ch->offset, (long long)ch->total, enc, got,
                          (long long)total);
            break;
        }
        memcpy(buf + got, ch->data, ch->len);
        got += ch->len;
        cJSON_Delete(ch->header);
        ch->header = NULL;
        free(b);
        b = NULL;
        if (got == (size_t)total)
            break;
        e = fetch_chunk(c, who, device, v, have, (int64_t)got, &b, &n, ch);
        if (!e)
            out->reply_bytes += n, out->chunks++;
    }
    cJSON_Delete(ch->header);
    ch->header = NULL;
    free(b);
    return e;
}

qd_err qd_client_fetch(struct qd_client *c, struct qd_ident *who, const char *device,
                       int64_t version, int64_t installed, const uint8_t *base, size_t base_len,
                       const uint8_t pk[QD_PROTO_PUB_BYTES], struct qd_client_model *out)
{
    memset(out, 0, sizeof *out);
    const char *dev = device ? device : who->id;
    int64_t have = base ? installed : 0;
    uint8_t *b = NULL, *buf = NULL;
    size_t n;
    struct qd_proto_chunk ch;
    QD_TRY(fetch_chunk(c, who, device, version, have, 0, &b, &n, &ch));
    /* the manifest first: nothing else of a reply is trusted before it verifies */
    qd_err e = qd_manifest_check(ch.manifest, ch.manifest_len, ch.sig, pk, dev, installed,
                                 qd_proto_now_us() / 1000000, &out->m);
    int kind = qd_pack_parse(ch.encoding);
    int64_t total = ch.total, base_v = ch.base;
    if (!e && (ch.version != out->m.version || kind < 0 || total > (INT64_C(1) << 30)))
        e = qd_seterr(QD_EFORMAT,
                      "fetch: a %s chunk of %lld bytes for version %lld, the "
                      "manifest names version %lld",
                      ch.encoding, (long long)total, (long long)ch.version,
                      (long long)out->m.version);
    if (!e && kind == QD_PACK_PATCH && (!base || base_v != installed))
        e = qd_seterr(QD_EBASE, "fetch: a patch against version %lld; this device holds %lld",
                      (long long)base_v, (long long)(base ? installed : 0));
    if (!e && !(buf = malloc((size_t)total)))
        e = qd_seterr(QD_ENOMEM, "fetch: out of memory");
    if (!e) {
        size_t rb = n;
        e = fetch_rest(c, who, device, have, b, &ch, buf, out);
        out->reply_bytes += rb, out->chunks++;
        b = NULL;
    }
    cJSON_Delete(ch.header);
    free(b);
    uint8_t *qm = NULL;
    if (!e)
        e = qd_pack_unpack((enum qd_pack)kind, buf, (size_t)total, base, base_len,
                           (size_t)out->m.size, &qm);
    free(buf);
    if (!e)
        e = qd_manifest_check_bytes(&out->m, qm, (size_t)out->m.size);
    if (e) {
        free(qm);
        memset(out, 0, sizeof *out);
        return e;
    }
    out->qm = qm;
    out->len = (size_t)out->m.size;
    out->wire = (size_t)total;
    snprintf(out->encoding, sizeof out->encoding, "%s", qd_pack_name((enum qd_pack)kind));
    return QD_OK;
}

void qd_client_model_fini(struct qd_client_model *m)
{
    free(m->qm);
    memset(m, 0, sizeof *m);
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

qd_err qd_client_device_key(struct qd_client *c, struct qd_ident *admin, const char *action,
                            const char *id, char key[2 * QD_PROTO_KEY_BYTES + 1])
{
    uint8_t pk[crypto_box_PUBLICKEYBYTES], sk[crypto_box_SECRETKEYBYTES];
    uint8_t box[crypto_box_SEALBYTES + QD_PROTO_KEY_BYTES], k[QD_PROTO_KEY_BYTES];
    char pkhex[2 * sizeof pk + 1];
    crypto_box_keypair(pk, sk); /* one-time: the key crosses the wire sealed to it */
    qd_proto_hex(pk, sizeof pk, pkhex);
    cJSON *j = op("keys"), *r = NULL;
    cJSON_AddStringToObject(j, "action", action);
    cJSON_AddStringToObject(j, "id", id);
    cJSON_AddStringToObject(j, "seal_to", pkhex);
    qd_err e = qd_client_call(c, admin, j, &r, NULL, NULL);
    const char *hex = NULL;
    if (!e)
        e = qd_proto_str(r, "key_sealed", 2 * sizeof box, 1, &hex);
    if (!e && (strlen(hex) != 2 * sizeof box || qd_proto_unhex(hex, box, sizeof box)))
        e = qd_seterr(QD_EFORMAT, "keys: key_sealed is not %zu hex digits", 2 * sizeof box);
    if (!e && crypto_box_seal_open(k, box, sizeof box, pk, sk))
        e = qd_seterr(QD_EAUTH, "keys: the sealed key does not open with our key");
    if (!e)
        qd_proto_hex(k, sizeof k, key);
    sodium_memzero(sk, sizeof sk);
    sodium_memzero(k, sizeof k);
    cJSON_Delete(r);
    return e;
}

qd_err qd_client_subscribe(struct qd_client *c, const char *id)
{
    if (c->sub < 0)
        return qd_seterr(QD_EINVAL, "subscribe: no push endpoint");
    return qd_tp_subscribe(c->sub, id, strlen(id) + 1); /* with its \0: exact match */
}

qd_err qd_client_subscribe_all(struct qd_client *c)
{
    if (c->sub < 0)
        return qd_seterr(QD_EINVAL, "subscribe: no push endpoint");
    return qd_tp_subscribe(c->sub, "", 0);
}

qd_err qd_client_notify_recv(struct qd_client *c, int timeout_ms, struct qd_proto_note *n)
{
    memset(n, 0, sizeof *n);
    if (c->sub < 0)
        return qd_seterr(QD_EINVAL, "notify: no push endpoint");
    void *b;
    size_t len;
    QD_TRY(qd_tp_recv(c->sub, timeout_ms, &b, &len));
    qd_err e = qd_proto_note_decode(b, len, n);
    qd_tp_free(b);
    return e;
}

qd_err qd_client_event(struct qd_client *c, struct qd_ident *who, const char *kind, int64_t version,
                       qd_err code, const char *message)
{
    cJSON *j = op("event");
    cJSON_AddStringToObject(j, "kind", kind);
    cJSON_AddNumberToObject(j, "version", (double)version);
    if (code)
        cJSON_AddStringToObject(j, "code", qd_err_name(code));
    if (message) {
        char m[513];
        snprintf(m, sizeof m, "%s", message);
        cJSON_AddStringToObject(j, "message", m);
    }
    return qd_client_call(c, who, j, NULL, NULL, NULL);
}
