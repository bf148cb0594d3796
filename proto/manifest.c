/* Signed manifests (see manifest.h). The signature covers DOMAIN followed by the exact text, so
 * a model signature can never pass for a manifest's, nor the reverse; the text is parsed only
 * after its signature verifies, and every field is range-checked as any request's. */
#include "proto/manifest.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char DOMAIN[] = "quantd manifest v1\n";

/* Ed25519 over DOMAIN || text, without copying the text (Ed25519ph would hash; the detached
 * signature needs the whole message: DOMAIN and the text, at most QD_MANIFEST_MAX, fit a buffer).
 */
static qd_err message(const char *text, size_t len, uint8_t *buf, size_t *n)
{
    if (len > QD_MANIFEST_MAX)
        return qd_seterr(QD_EFORMAT, "manifest: %zu bytes (at most %d)", len, QD_MANIFEST_MAX);
    memcpy(buf, DOMAIN, sizeof DOMAIN - 1);
    memcpy(buf + sizeof DOMAIN - 1, text, len);
    *n = sizeof DOMAIN - 1 + len;
    return QD_OK;
}

/* An integer member written exactly: cJSON prints a double with 15 significant digits when
 * that reads back within a relative DBL_EPSILON, which changes integers above 2^52 (a version
 * of 2^53 - 1 became 2^53 - 2: another version than the one signed for). */
static void add_int(cJSON *j, const char *name, int64_t v)
{
    char t[24];
    snprintf(t, sizeof t, "%lld", (long long)v);
    cJSON_AddRawToObject(j, name, t);
}

qd_err qd_manifest_sign(const struct qd_manifest *m, const uint8_t sk[QD_PROTO_SECRET_BYTES],
                        char **text, size_t *len, uint8_t sig[QD_PROTO_SIG_BYTES])
{
    cJSON *j = cJSON_CreateObject();
    add_int(j, "v", 1);
    cJSON_AddStringToObject(j, "device", m->device);
    add_int(j, "version", m->version);
    add_int(j, "prev", m->prev);
    cJSON_AddStringToObject(j, "sha256", m->sha);
    add_int(j, "size", m->size);
    cJSON_AddStringToObject(j, "backbone", m->backbone);
    cJSON_AddStringToObject(j, "policy", m->policy);
    add_int(j, "created", m->created);
    add_int(j, "expires", m->expires);
    add_int(j, "test_seed", m->test_seed);
    add_int(j, "test_n", m->test_n);
    cJSON_AddStringToObject(j, "test_sha256", m->test_sha);
    char *t = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    if (!t)
        return qd_seterr(QD_ENOMEM, "manifest: out of memory");
    uint8_t buf[sizeof DOMAIN + QD_MANIFEST_MAX];
    size_t n = 0, tl = strlen(t);
    qd_err e = message(t, tl, buf, &n);
    if (e) {
        free(t);
        return e;
    }
    crypto_sign_detached(sig, NULL, buf, n, sk);
    *text = t;
    *len = tl;
    return QD_OK;
}

static qd_err copy_str(const cJSON *j, const char *name, size_t max, char *out)
{
    const char *s = NULL;
    QD_TRY(qd_proto_str(j, name, max, 1, &s));
    snprintf(out, max + 1, "%s", s);
    return QD_OK;
}

qd_err qd_manifest_parse(const char *text, size_t len, struct qd_manifest *m)
{
    memset(m, 0, sizeof *m);
    if (len > QD_MANIFEST_MAX)
        return qd_seterr(QD_EFORMAT, "manifest: %zu bytes (at most %d)", len, QD_MANIFEST_MAX);
    cJSON *j = cJSON_ParseWithLength(text, len);
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return qd_seterr(QD_EFORMAT, "manifest: not a JSON object");
    }
    int64_t v = 0;
    const int64_t big = INT64_C(1) << 53;
    qd_err e = qd_proto_int(j, "v", 1, 1, 1, &v);
    if (!e)
        e = copy_str(j, "device", QD_PROTO_MAX_ID, m->device);
    if (!e)
        e = qd_proto_int(j, "version", 1, big, 1, &m->version);
    if (!e)
        e = qd_proto_int(j, "prev", 0, big, 1, &m->prev);
    if (!e)
        e = copy_str(j, "sha256", 64, m->sha);
    if (!e && strlen(m->sha) != 64)
        e = qd_seterr(QD_EFORMAT, "field \"sha256\" is not 64 hex digits");
    if (!e)
        e = qd_proto_int(j, "size", 1, big, 1, &m->size);
    if (!e)
        e = copy_str(j, "backbone", sizeof m->backbone - 1, m->backbone);
    if (!e)
        e = copy_str(j, "policy", sizeof m->policy - 1, m->policy);
    if (!e)
        e = qd_proto_int(j, "created", 0, big, 1, &m->created);
    if (!e)
        e = qd_proto_int(j, "expires", 0, big, 1, &m->expires);
    if (!e)
        e = qd_proto_int(j, "test_seed", 0, big, 1, &m->test_seed);
    if (!e)
        e = qd_proto_int(j, "test_n", 1, 64, 1, &m->test_n);
    if (!e)
        e = copy_str(j, "test_sha256", 64, m->test_sha);
    if (!e && strlen(m->test_sha) != 64)
        e = qd_seterr(QD_EFORMAT, "field \"test_sha256\" is not 64 hex digits");
    cJSON_Delete(j);
    return e ? qd_wraperr(QD_EFORMAT, "manifest: ", NULL) : QD_OK;
}

qd_err qd_manifest_check(const char *text, size_t len, const uint8_t sig[QD_PROTO_SIG_BYTES],
                         const uint8_t pk[QD_PROTO_PUB_BYTES], const char *device,
                         int64_t installed, int64_t now_s, struct qd_manifest *m)
{
    uint8_t buf[sizeof DOMAIN + QD_MANIFEST_MAX];
    size_t n = 0;
    memset(m, 0, sizeof *m);
    QD_TRY(message(text, len, buf, &n));
    if (crypto_sign_verify_detached(sig, buf, n, pk))
        return qd_seterr(QD_EAUTH, "manifest: the signature does not verify under the pinned key");
    QD_TRY(qd_manifest_parse(text, len, m));
    if (strcmp(m->device, device))
        return qd_seterr(QD_EFOREIGN, "manifest: for device '%s', not '%s'", m->device, device);
    if (m->version <= installed)
        return qd_seterr(QD_EROLLBACK, "manifest: version %lld, not above the installed %lld",
                         (long long)m->version, (long long)installed);
    if (now_s >= m->expires)
        return qd_seterr(QD_EEXPIRED, "manifest: expired %lld s ago",
                         (long long)(now_s - m->expires));
    return QD_OK;
}

qd_err qd_manifest_check_bytes(const struct qd_manifest *m, const uint8_t *qm, size_t len)
{
    if ((int64_t)len != m->size)
        return qd_seterr(QD_ECHECKSUM, "model: %zu bytes, the manifest says %lld", len,
                         (long long)m->size);
    char got[65];
    qd_proto_sha256_hex(qm, len, got);
    if (strcmp(got, m->sha))
        return qd_seterr(QD_ECHECKSUM, "model: sha256 %s, the manifest says %s", got, m->sha);
    return QD_OK;
}
