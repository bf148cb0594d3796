/* Fuzz target: a control request, as the daemon's request path (daemon/ops.c) reads one.
 *
 * Feeds the bytes twice. First raw: qd_proto_parse (size, NUL bytes, JSON, "v", "op"),
 * qd_proto_verify under the known key, and the error reply the daemon would send. Then as a
 * request body: if they parse as a JSON object, "from" and "nonce" are added where missing and
 * the body is sealed under FZ_KEY (qd_proto_seal), so that the fuzzed fields get past the MAC:
 * the sealed text must verify, must stop verifying when any byte of it changes, and is parsed
 * again and read with the field readers the daemon's authenticate() and handlers use, with the
 * same names and ranges (qd_proto_str/int/num, qd_proto_ctx_read, qd_proto_unhex,
 * qd_pack_parse, qd_proto_id_ok). The handlers themselves need the daemon's loop and state and
 * are not linked (daemon/ops_*.c). Checks: no crash, no sanitizer report, no leak. */
#include "fuzz/fuzz.h"

#include <math.h>

#include "core/err.h"
#include "proto/pack.h"
#include "proto/proto.h"

/* The fields each op reads (daemon/ops_admin.c, daemon/ops_device.c), in its order: 's' a
 * string of at most hi bytes, 'i' an integer, 'n' a number in [lo, hi], 'c' the context,
 * 'x' seal_to (hex of an X25519 key), 'p' a pack name, 'd' a device id. */
static const struct field {
    const char *op, *name;
    char kind;
    double lo, hi;
    int required;
} FIELDS[] = {
    {"devices", "offset", 'i', 0, INT32_MAX, 0},
    {"devices", "limit", 'i', 1, 10000, 0},
    {"device", "id", 's', 0, QD_PROTO_MAX_ID, 1},
    {"keys", "action", 's', 0, 16, 1},
    {"keys", "id", 'd', 0, QD_PROTO_MAX_ID, 1},
    {"keys", "seal_to", 'x', 0, 64, 0},
    {"hello", "profile", 'd', 0, QD_PROTO_MAX_ID, 1},
    {"hello", "flash", 'n', 1, 1e12, 0},
    {"hello", "ram", 'n', 1, 1e12, 0},
    {"report", "", 'c', 0, 0, 0},
    {"decide", "profile", 'd', 0, QD_PROTO_MAX_ID, 0},
    {"decide", "device", 'd', 0, QD_PROTO_MAX_ID, 0},
    {"decide", "", 'c', 0, 0, 0},
    {"fetch", "device", 'd', 0, QD_PROTO_MAX_ID, 0},
    {"fetch", "version", 'i', 0, INT32_MAX, 0},
    {"fetch", "offset", 'i', 0, 1099511627776.0, 0},
    {"fetch", "max", 'i', 1, 1099511627776.0, 0},
    {"fetch", "have", 'i', 0, INT32_MAX, 0},
    {"fetch", "pack", 'p', 0, 8, 0},
    {"ack", "version", 'i', 1, INT32_MAX, 1},
    {"ack", "sha256", 's', 0, 64, 1},
    {"event", "kind", 's', 0, 32, 1},
    {"event", "version", 'i', 0, 9007199254740992.0, 0},
    {"event", "code", 's', 0, 16, 0},
    {"event", "message", 's', 0, 512, 0},
};

static qd_err read_field(const cJSON *j, const struct field *f)
{
    const char *s = NULL;
    double d = NAN;
    int64_t i = 0;
    struct qd_proto_ctx ctx;
    uint8_t key[32];
    switch (f->kind) {
    case 'i':
        return qd_proto_int(j, f->name, (int64_t)f->lo, (int64_t)f->hi, f->required, &i);
    case 'n':
        return qd_proto_num(j, f->name, f->lo, f->hi, f->required, &d);
    case 'c':
        return qd_proto_ctx_read(j, &ctx);
    default:
        QD_TRY(qd_proto_str(j, f->name, (size_t)f->hi, f->required, &s));
        if (!s)
            return QD_OK;
        if (f->kind == 'd' && !qd_proto_id_ok(s))
            return qd_seterr(QD_EINVAL, "bad id");
        if (f->kind == 'x')
            return qd_proto_unhex(s, key, sizeof key);
        if (f->kind == 'p' && strcmp(s, "raw") && qd_pack_parse(s) < 0)
            return qd_seterr(QD_EINVAL, "bad pack");
        return QD_OK;
    }
}

/* authenticate()'s reads, then the op's fields; the reply the daemon would send. */
static void handle(const cJSON *j)
{
    const char *from = NULL, *op = cJSON_GetObjectItemCaseSensitive(j, "op")->valuestring;
    int64_t nonce = 0;
    qd_err e = qd_proto_str(j, "from", QD_PROTO_MAX_ID, 1, &from);
    if (!e)
        e = qd_proto_int(j, "nonce", 1, INT64_C(1) << 53, 1, &nonce);
    for (size_t k = 0; !e && k < sizeof FIELDS / sizeof *FIELDS; k++)
        if (!strcmp(FIELDS[k].op, op))
            e = read_field(j, &FIELDS[k]);
    if (e) {
        free(qd_proto_error(e, qd_errmsg()));
        return;
    }
    cJSON *r = qd_proto_ok();
    struct qd_proto_ctx ctx = QD_PROTO_CTX_NONE;
    if (!qd_proto_ctx_read(j, &ctx))
        qd_proto_ctx_write(r, &ctx);
    char *t = cJSON_PrintUnformatted(r);
    cJSON_Delete(r);
    free(t);
}

static void sealed(const uint8_t *data, size_t size)
{
    cJSON *b = cJSON_ParseWithLength((const char *)data, size);
    if (!cJSON_IsObject(b)) {
        cJSON_Delete(b);
        return;
    }
    if (!cJSON_GetObjectItemCaseSensitive(b, "from"))
        cJSON_AddStringToObject(b, "from", FZ_DEVICE);
    if (!cJSON_GetObjectItemCaseSensitive(b, "nonce"))
        cJSON_AddNumberToObject(b, "nonce", 1700000000000000.0);
    char *body = cJSON_PrintUnformatted(b), *msg = NULL;
    cJSON_Delete(b);
    if (!body || qd_proto_seal(body, FZ_KEY, &msg)) {
        free(body);
        return;
    }
    free(body);
    size_t n = strlen(msg);
    FZ_CHECK(qd_proto_verify(msg, n, FZ_KEY) == QD_OK);
    size_t at = size % n; /* any changed byte breaks the MAC */
    msg[at] ^= 0x20;
    FZ_CHECK(qd_proto_verify(msg, n, FZ_KEY) == QD_EAUTH);
    msg[at] ^= 0x20;
    cJSON *j = NULL;
    if (!qd_proto_parse(msg, n, QD_PROTO_MAX_REQUEST, &j)) {
        handle(j);
        cJSON_Delete(j);
    }
    free(msg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cJSON *j = NULL;
    qd_err e = qd_proto_parse((const char *)data, size, QD_PROTO_MAX_REQUEST, &j);
    if (e) {
        FZ_CHECK(!j);
        free(qd_proto_error(e, qd_errmsg()));
    } else {
        qd_proto_verify((const char *)data, size, FZ_KEY); /* (the daemon reads first) */
        handle(j);
        cJSON_Delete(j);
    }
    if (size <= QD_PROTO_MAX_REQUEST)
        sealed(data, size);
    return 0;
}
