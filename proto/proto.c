/* The wire format (see proto.h): sealing and checking requests, validated field access, error
 * replies, model signatures and push frames. Every function here takes untrusted bytes; none
 * reads past the length it is given or trusts a length inside the data. */
#include "proto/proto.h"

#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char MAC_HEAD[] = ",\"mac\":\"";

/* The context's fields: one table for both directions. */
static const struct {
    const char *name;
    size_t off;
    double max;
} CTX[] = {
    {"free_flash", offsetof(struct qd_proto_ctx, free_flash), 1e12},
    {"free_ram", offsetof(struct qd_proto_ctx, free_ram), 1e12},
    {"latency_ms", offsetof(struct qd_proto_ctx, latency_ms), 1e9},
    {"energy_mj", offsetof(struct qd_proto_ctx, energy_mj), 1e9},
    {"battery", offsetof(struct qd_proto_ctx, battery), 1},
};

static void hmac(const uint8_t *key, const char *msg, size_t len, char hex[65])
{
    uint8_t mac[crypto_auth_hmacsha256_BYTES];
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, key, QD_PROTO_KEY_BYTES);
    crypto_auth_hmacsha256_update(&st, (const uint8_t *)msg, len);
    crypto_auth_hmacsha256_final(&st, mac);
    qd_proto_hex(mac, sizeof mac, hex);
}

qd_err qd_proto_seal(const char *json, const uint8_t key[QD_PROTO_KEY_BYTES], char **out)
{
    size_t n = strlen(json);
    if (n < 2 || json[0] != '{' || json[n - 1] != '}')
        return qd_seterr(QD_EINVAL, "seal: not a JSON object");
    char *m = malloc(n - 1 + QD_PROTO_MAC_TAIL + 1);
    if (!m)
        return qd_seterr(QD_ENOMEM, "seal: out of memory");
    memcpy(m, json, n - 1);
    char hex[65];
    hmac(key, m, n - 1, hex);
    snprintf(m + n - 1, QD_PROTO_MAC_TAIL + 1, "%s%s\"}", MAC_HEAD, hex);
    *out = m;
    return QD_OK;
}

qd_err qd_proto_verify(const char *msg, size_t len, const uint8_t key[QD_PROTO_KEY_BYTES])
{
    if (len < QD_PROTO_MAC_TAIL + 2 || memcmp(msg + len - 2, "\"}", 2) ||
        memcmp(msg + len - QD_PROTO_MAC_TAIL, MAC_HEAD, sizeof MAC_HEAD - 1))
        return qd_seterr(QD_EAUTH, "the message does not end in its \"mac\" member");
    char hex[65];
    size_t body = len - QD_PROTO_MAC_TAIL;
    hmac(key, msg, body, hex);
    /* constant-time compare of the 64 hex digits */
    if (sodium_memcmp(hex, msg + body + sizeof MAC_HEAD - 1, 64))
        return qd_seterr(QD_EAUTH, "bad message authentication code");
    return QD_OK;
}

qd_err qd_proto_parse(const char *msg, size_t len, size_t max, cJSON **out)
{
    *out = NULL;
    if (len > max)
        return qd_seterr(QD_ETOOBIG, "request of %zu bytes exceeds the limit of %zu", len, max);
    if (len == 0 || msg[0] != '{')
        return qd_seterr(QD_EFORMAT, "a request is a JSON object");
    if (memchr(msg, 0, len))
        return qd_seterr(QD_EFORMAT, "a request may not contain NUL bytes");
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithLengthOpts(msg, len, &end, 0);
    if (!j || !cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return qd_seterr(QD_EFORMAT, "malformed JSON near byte %ld",
                         end ? (long)(end - msg) : 0L);
    }
    for (size_t i = (size_t)(end - msg); i < len; i++)
        if (msg[i] != ' ' && msg[i] != '\n' && msg[i] != '\r' && msg[i] != '\t') {
            cJSON_Delete(j);
            return qd_seterr(QD_EFORMAT, "trailing bytes after the JSON object");
        }
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, "v");
    if (!cJSON_IsNumber(v) || v->valuedouble != QD_PROTO_VERSION) {
        cJSON_Delete(j);
        return qd_seterr(QD_EVERSION, "field \"v\" must be %d", QD_PROTO_VERSION);
    }
    const cJSON *op = cJSON_GetObjectItemCaseSensitive(j, "op");
    if (!cJSON_IsString(op) || strlen(op->valuestring) > 32) {
        cJSON_Delete(j);
        return qd_seterr(QD_EINVAL, "field \"op\" must be a string of at most 32 bytes");
    }
    *out = j;
    return QD_OK;
}

qd_err qd_proto_str(const cJSON *o, const char *name, size_t maxlen, int required,
                    const char **out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    if (!v) {
        if (required)
            return qd_seterr(QD_EINVAL, "field \"%s\" is required", name);
        return QD_OK;
    }
    if (!cJSON_IsString(v))
        return qd_seterr(QD_EINVAL, "field \"%s\" must be a string", name);
    if (strlen(v->valuestring) > maxlen)
        return qd_seterr(QD_EINVAL, "field \"%s\" is longer than %zu bytes", name, maxlen);
    *out = v->valuestring;
    return QD_OK;
}

qd_err qd_proto_num(const cJSON *o, const char *name, double lo, double hi, int required,
                    double *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    if (!v) {
        if (required)
            return qd_seterr(QD_EINVAL, "field \"%s\" is required", name);
        return QD_OK;
    }
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
        return qd_seterr(QD_EINVAL, "field \"%s\" must be a number", name);
    if (v->valuedouble < lo || v->valuedouble > hi)
        return qd_seterr(QD_EINVAL, "field \"%s\" = %g is outside [%g, %g]", name,
                         v->valuedouble, lo, hi);
    *out = v->valuedouble;
    return QD_OK;
}

qd_err qd_proto_int(const cJSON *o, const char *name, int64_t lo, int64_t hi, int required,
                    int64_t *out)
{
    double d = NAN;
    QD_TRY(qd_proto_num(o, name, (double)lo, (double)hi, required, &d));
    if (isnan(d))
        return QD_OK;
    if (d != floor(d) || fabs(d) > 9007199254740992.0)
        return qd_seterr(QD_EINVAL, "field \"%s\" must be an integer", name);
    *out = (int64_t)d;
    return QD_OK;
}

int qd_proto_id_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > QD_PROTO_MAX_ID || s[0] == '.')
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

cJSON *qd_proto_ok(void)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "v", QD_PROTO_VERSION);
    cJSON_AddTrueToObject(j, "ok");
    return j;
}

char *qd_proto_error(qd_err e, const char *message)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "v", QD_PROTO_VERSION);
    cJSON_AddFalseToObject(j, "ok");
    cJSON *er = cJSON_AddObjectToObject(j, "error");
    cJSON_AddStringToObject(er, "code", qd_err_name(e));
    cJSON_AddStringToObject(er, "message", message ? message : qd_strerror(e));
    char *t = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    return t;
}

void qd_proto_hex(const uint8_t *b, size_t n, char *out)
{
    static const char d[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = d[b[i] >> 4];
        out[2 * i + 1] = d[b[i] & 15];
    }
    out[2 * n] = 0;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

qd_err qd_proto_unhex(const char *s, uint8_t *b, size_t n)
{
    if (strlen(s) != 2 * n)
        return qd_seterr(QD_EINVAL, "expected %zu hex digits", 2 * n);
    for (size_t i = 0; i < n; i++) {
        int hi = hexval(s[2 * i]), lo = hexval(s[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return qd_seterr(QD_EINVAL, "not a hex digit at %zu", 2 * i);
        b[i] = (uint8_t)(hi << 4 | lo);
    }
    return QD_OK;
}

void qd_proto_sha256_hex(const uint8_t *b, size_t n, char out[65])
{
    uint8_t h[crypto_hash_sha256_BYTES];
    crypto_hash_sha256(h, b, n);
    qd_proto_hex(h, sizeof h, out);
}

void qd_proto_sign(const uint8_t *qm, size_t len, const uint8_t sk[QD_PROTO_SECRET_BYTES],
                   uint8_t sig[QD_PROTO_SIG_BYTES])
{
    crypto_sign_detached(sig, NULL, qm, len, sk);
}

qd_err qd_proto_verify_model(const uint8_t *qm, size_t len, const uint8_t sig[QD_PROTO_SIG_BYTES],
                             const uint8_t pk[QD_PROTO_PUB_BYTES])
{
    if (crypto_sign_verify_detached(sig, qm, len, pk))
        return qd_seterr(QD_EAUTH, "the model's signature does not verify");
    return QD_OK;
}

qd_err qd_proto_note_encode(const struct qd_proto_note *n, uint8_t **out, size_t *outlen)
{
    if (!qd_proto_id_ok(n->id))
        return qd_seterr(QD_EINVAL, "notify: bad device id");
    char line[512];
    int h = snprintf(line, sizeof line,
                     "{\"v\":1,\"op\":\"notify\",\"device\":\"%s\",\"version\":%lld,"
                     "\"sha256\":\"%.64s\",\"size\":%lld}",
                     n->id, (long long)n->version, n->sha, (long long)n->size);
    size_t ni = strlen(n->id) + 1, len = ni + (size_t)h;
    uint8_t *b = malloc(len);
    if (!b)
        return qd_seterr(QD_ENOMEM, "notify: out of memory");
    memcpy(b, n->id, ni);
    memcpy(b + ni, line, (size_t)h);
    *out = b;
    *outlen = len;
    return QD_OK;
}

qd_err qd_proto_note_decode(const uint8_t *buf, size_t len, struct qd_proto_note *n)
{
    memset(n, 0, sizeof *n);
    const uint8_t *z = memchr(buf, 0, len < QD_PROTO_MAX_ID + 1 ? len : QD_PROTO_MAX_ID + 1);
    if (!z || z == buf)
        return qd_seterr(QD_EFORMAT, "notify: no device id");
    size_t ni = (size_t)(z - buf) + 1;
    if (len - ni > 1024)
        return qd_seterr(QD_EFORMAT, "notify: %zu bytes", len);
    cJSON *j = cJSON_ParseWithLength((const char *)z + 1, len - ni);
    const char *dev = NULL, *sha = NULL;
    uint8_t digest[32];
    qd_err e = cJSON_IsObject(j) ? QD_OK : qd_seterr(QD_EFORMAT, "notify: malformed");
    if (!e)
        e = qd_proto_str(j, "device", QD_PROTO_MAX_ID, 1, &dev);
    if (!e && !qd_proto_id_ok(dev))
        e = qd_seterr(QD_EFORMAT, "notify: device id is not [A-Za-z0-9._-]{1,63}");
    if (!e && strcmp(dev, (const char *)buf))
        e = qd_seterr(QD_EFORMAT, "notify: topic '%s' names device '%s'", (const char *)buf, dev);
    if (!e)
        e = qd_proto_int(j, "version", 1, INT64_C(1) << 53, 1, &n->version);
    if (!e)
        e = qd_proto_int(j, "size", 1, INT64_C(1) << 53, 1, &n->size);
    if (!e)
        e = qd_proto_str(j, "sha256", 64, 1, &sha);
    /* as qd_proto_note_encode writes it: a note that decodes re-encodes to itself */
    if (!e && qd_proto_unhex(sha, digest, sizeof digest))
        e = qd_seterr(QD_EFORMAT, "notify: sha256 is not 64 hex digits");
    if (!e) {
        snprintf(n->id, sizeof n->id, "%s", dev);
        snprintf(n->sha, sizeof n->sha, "%s", sha);
    }
    cJSON_Delete(j);
    return e ? qd_wraperr(QD_EFORMAT, NULL, NULL) : QD_OK;
}

qd_err qd_proto_chunk_encode(const char *header, const char *manifest, size_t mlen,
                             const uint8_t sig[QD_PROTO_SIG_BYTES], const uint8_t *data,
                             size_t len, uint8_t **out, size_t *outlen)
{
    size_t nh = strlen(header), m = sizeof QD_PROTO_CHUNK_MAGIC - 1;
    if (memchr(header, '\n', nh))
        return qd_seterr(QD_EINVAL, "chunk header may not contain a newline");
    size_t n = m + nh + 1 + mlen + QD_PROTO_SIG_BYTES + len;
    uint8_t *b = malloc(n), *p = b;
    if (!b)
        return qd_seterr(QD_ENOMEM, "fetch: out of memory");
    memcpy(p, QD_PROTO_CHUNK_MAGIC, m), p += m;
    memcpy(p, header, nh), p += nh;
    *p++ = '\n';
    memcpy(p, manifest, mlen), p += mlen;
    memcpy(p, sig, QD_PROTO_SIG_BYTES), p += QD_PROTO_SIG_BYTES;
    if (len)
        memcpy(p, data, len);
    *out = b;
    *outlen = n;
    return QD_OK;
}

qd_err qd_proto_chunk_decode(const uint8_t *buf, size_t len, struct qd_proto_chunk *c)
{
    memset(c, 0, sizeof *c);
    size_t m = sizeof QD_PROTO_CHUNK_MAGIC - 1;
    if (len < m || memcmp(buf, QD_PROTO_CHUNK_MAGIC, m))
        return qd_seterr(QD_EFORMAT, "fetch: not a chunk");
    const uint8_t *h = buf + m, *nl = memchr(h, '\n', len - m < 4096 ? len - m : 4096);
    if (!nl)
        return qd_seterr(QD_EFORMAT, "fetch: no header line");
    cJSON *j = cJSON_ParseWithLength((const char *)h, (size_t)(nl - h));
    int64_t ml = 0;
    const int64_t big = INT64_C(1) << 53;
    qd_err e = cJSON_IsObject(j) ? QD_OK : qd_seterr(QD_EFORMAT, "fetch: malformed header");
    if (!e)
        e = qd_proto_int(j, "version", 1, big, 1, &c->version);
    if (!e)
        e = qd_proto_int(j, "offset", 0, big, 1, &c->offset);
    if (!e)
        e = qd_proto_int(j, "total", 1, big, 1, &c->total);
    if (!e)
        e = qd_proto_int(j, "base", 0, big, 0, &c->base);
    if (!e)
        e = qd_proto_int(j, "manifest_len", 1, 65536, 1, &ml);
    if (!e)
        e = qd_proto_str(j, "encoding", 8, 1, &c->encoding);
    if (!e && strcmp(c->encoding, "raw") && strcmp(c->encoding, "zstd") &&
        strcmp(c->encoding, "patch"))
        e = qd_seterr(QD_EFORMAT, "fetch: unknown encoding '%s'", c->encoding);
    size_t rest = len - (size_t)(nl + 1 - buf);
    if (!e && rest < (size_t)ml + QD_PROTO_SIG_BYTES)
        e = qd_seterr(QD_EFORMAT, "fetch: truncated (%zu bytes after the header)", rest);
    if (!e) {
        c->manifest = (const char *)nl + 1;
        c->manifest_len = (size_t)ml;
        c->sig = (const uint8_t *)c->manifest + ml;
        c->data = c->sig + QD_PROTO_SIG_BYTES;
        c->len = rest - (size_t)ml - QD_PROTO_SIG_BYTES;
        if (c->offset > c->total || (int64_t)c->len > c->total - c->offset)
            e = qd_seterr(QD_EFORMAT, "fetch: bytes %lld..%lld of %lld", (long long)c->offset,
                          (long long)(c->offset + (int64_t)c->len), (long long)c->total);
    }
    if (e) {
        cJSON_Delete(j);
        memset(c, 0, sizeof *c);
        return qd_wraperr(QD_EFORMAT, NULL, NULL);
    }
    c->header = j;
    return QD_OK;
}

int64_t qd_proto_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

qd_err qd_proto_ctx_read(const cJSON *j, struct qd_proto_ctx *c)
{
    for (size_t i = 0; i < sizeof CTX / sizeof *CTX; i++) {
        double v = NAN;
        QD_TRY(qd_proto_num(j, CTX[i].name, 0, CTX[i].max, 0, &v));
        *(double *)((char *)c + CTX[i].off) = v;
    }
    return QD_OK;
}

void qd_proto_ctx_write(cJSON *j, const struct qd_proto_ctx *c)
{
    for (size_t i = 0; i < sizeof CTX / sizeof *CTX; i++) {
        double v = *(const double *)((const char *)c + CTX[i].off);
        if (!isnan(v))
            cJSON_AddNumberToObject(j, CTX[i].name, v);
    }
}
