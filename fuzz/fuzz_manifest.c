/* Fuzz target: a model's signed manifest, as a device checks one (client/client.c: the
 * manifest of a fetch reply, then qd_manifest_check and qd_manifest_check_bytes).
 *
 * Feeds the bytes three ways: qd_manifest_parse on all of them; qd_manifest_check with the
 * last 64 bytes as the signature and the rest as the text (a forged signature: must be
 * QD_EAUTH or a size refusal unless it is a seed's real one); and the text signed with the fixed
 * key the target knows, so that the parser and every check behind the signature see fuzzed fields.
 * Checks: no crash, sanitizer report or leak; a signed text parses exactly when qd_manifest_parse
 * says so; a manifest that parses survives qd_manifest_sign -> qd_manifest_parse unchanged. */
#include "fuzz/fuzz.h"

#include "core/err.h"
#include "proto/manifest.h"

static const char DOMAIN[] = "quantd manifest v1\n"; /* proto/manifest.c's */

static uint8_t pk[32], sk[64];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    if (sodium_init() < 0)
        abort();
    fz_sign_keys(pk, sk);
    return 0;
}

static int same(const struct qd_manifest *a, const struct qd_manifest *b)
{
    return !strcmp(a->device, b->device) && a->version == b->version && a->prev == b->prev &&
           !strcmp(a->sha, b->sha) && a->size == b->size && !strcmp(a->backbone, b->backbone) &&
           !strcmp(a->policy, b->policy) && a->created == b->created && a->expires == b->expires &&
           a->test_seed == b->test_seed && a->test_n == b->test_n &&
           !strcmp(a->test_sha, b->test_sha);
}

static void signed_text(const char *text, size_t len)
{
    if (len > QD_MANIFEST_MAX)
        return;
    uint8_t msg[sizeof DOMAIN + QD_MANIFEST_MAX], sig[64];
    memcpy(msg, DOMAIN, sizeof DOMAIN - 1);
    memcpy(msg + sizeof DOMAIN - 1, text, len);
    crypto_sign_detached(sig, NULL, msg, sizeof DOMAIN - 1 + len, sk);
    struct qd_manifest m, p;
    qd_err pe = qd_manifest_parse(text, len, &p);
    qd_err e = qd_manifest_check(text, len, sig, pk, FZ_DEVICE, 0, 0, &m);
    FZ_CHECK(e != QD_EAUTH);
    FZ_CHECK((pe == QD_OK) == (e == QD_OK || e == QD_EFOREIGN || e == QD_EEXPIRED));
    if (pe)
        return;
    /* behind every check: its own device, the version before it, before its expiry */
    e = qd_manifest_check(text, len, sig, pk, p.device, p.version - 1, p.expires - 1, &m);
    FZ_CHECK(e == QD_OK && same(&m, &p));
    FZ_CHECK(qd_manifest_check(text, len, sig, pk, p.device, p.version, 0, &m) == QD_EROLLBACK);
    qd_manifest_check_bytes(&m, (const uint8_t *)text, len);
    char *t2 = NULL;
    size_t l2 = 0;
    if (qd_manifest_sign(&p, sk, &t2, &l2, sig))
        return; /* re-serialized past QD_MANIFEST_MAX (escapes) */
    FZ_CHECK(qd_manifest_check(t2, l2, sig, pk, p.device, p.version - 1, p.expires - 1, &m) ==
             QD_OK);
    FZ_CHECK(same(&m, &p));
    free(t2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct qd_manifest m;
    qd_manifest_parse((const char *)data, size, &m);
    if (size >= 64) {
        size_t tl = size - 64;
        qd_err e = qd_manifest_check((const char *)data, tl, data + tl, pk, FZ_DEVICE, 0, 0, &m);
        if (e != QD_EAUTH && e != QD_EFORMAT) { /* then the signature is a real one */
            uint8_t msg[sizeof DOMAIN + QD_MANIFEST_MAX];
            FZ_CHECK(tl <= QD_MANIFEST_MAX);
            memcpy(msg, DOMAIN, sizeof DOMAIN - 1);
            memcpy(msg + sizeof DOMAIN - 1, data, tl);
            FZ_CHECK(!crypto_sign_verify_detached(data + tl, msg, sizeof DOMAIN - 1 + tl, pk));
        }
    }
    signed_text((const char *)data, size);
    return 0;
}
