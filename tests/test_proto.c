/* The wire format and the state store: sealing and checking requests (every tampered byte is
 * caught), parse limits and field validation, model signatures, push frames (every truncation
 * is an error, never a read past the end), and the SQLite state surviving a reopen. */
#include "testutil.h"

#include <sodium.h>
#include <sqlite3.h>

#include "daemon/state.h"
#include "proto/manifest.h"
#include "proto/pack.h"
#include "proto/proto.h"

#include "fuzzregress.h"

static void test_seal_verify(void **st)
{
    uint8_t key[QD_PROTO_KEY_BYTES], other[QD_PROTO_KEY_BYTES];
    randombytes_buf(key, sizeof key);
    randombytes_buf(other, sizeof other);
    char *m;
    assert_int_equal(
        qd_proto_seal("{\"v\":1,\"op\":\"report\",\"from\":\"d1\",\"nonce\":5}", key, &m), QD_OK);
    size_t n = strlen(m);
    assert_int_equal(qd_proto_verify(m, n, key), QD_OK);
    assert_int_equal(qd_proto_verify(m, n, other), QD_EAUTH);
    /* the sealed text is still one JSON object */
    cJSON *j;
    assert_int_equal(qd_proto_parse(m, n, 1 << 16, &j), QD_OK);
    assert_non_null(cJSON_GetObjectItem(j, "mac"));
    cJSON_Delete(j);
    /* flipping any byte breaks it */
    for (size_t i = 0; i < n; i++) {
        char *t = strdup(m);
        t[i] ^= 0x01;
        assert_int_equal(qd_proto_verify(t, n, key), QD_EAUTH);
        free(t);
    }
    /* truncations and a missing mac */
    for (size_t k = 0; k < n; k++)
        assert_int_equal(qd_proto_verify(m, k, key), QD_EAUTH);
    const char *nomac = "{\"v\":1,\"op\":\"report\"}";
    assert_int_equal(qd_proto_verify(nomac, strlen(nomac), key), QD_EAUTH);
    free(m);
    assert_int_equal(qd_proto_seal("[1,2]", key, &m), QD_EINVAL);
}

static void test_parse_limits(void **st)
{
    cJSON *j = NULL;
    const char *ok = "{\"v\":1,\"op\":\"health\"}";
    assert_int_equal(qd_proto_parse(ok, strlen(ok), 100, &j), QD_OK);
    cJSON_Delete(j);
    assert_int_equal(qd_proto_parse(ok, strlen(ok), 10, &j), QD_ETOOBIG);
    assert_null(j);
    const char *bad[] = {"",
                         "[]",
                         "{",
                         "{\"v\":1,\"op\":\"x\"} junk",
                         "{\"v\":2,\"op\":\"health\"}",
                         "{\"op\":\"health\"}",
                         "{\"v\":1}",
                         "{\"v\":1,\"op\":7}",
                         "\"str\"",
                         "{\"v\":1,\"op\":\"health\",}",
                         "nul"};
    qd_err want[] = {QD_EFORMAT, QD_EFORMAT, QD_EFORMAT, QD_EFORMAT, QD_EVERSION, QD_EVERSION,
                     QD_EINVAL,  QD_EINVAL,  QD_EFORMAT, QD_EFORMAT, QD_EFORMAT};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(qd_proto_parse(bad[i], strlen(bad[i]), 100, &j), want[i]);
        assert_null(j);
    }
    char withnul[] = "{\"v\":1,\"op\":\"he\0lth\"}";
    assert_int_equal(qd_proto_parse(withnul, sizeof withnul - 1, 100, &j), QD_EFORMAT);
    /* a random byte soup never parses into something accepted without "v" and "op" */
    struct qd_rng r;
    qd_rng_seed(&r, 3);
    for (int t = 0; t < 2000; t++) {
        char b[64];
        size_t n = 1 + qd_rng_below(&r, sizeof b);
        for (size_t i = 0; i < n; i++)
            b[i] = (char)qd_rng_below(&r, 256);
        b[0] = '{';
        qd_err e = qd_proto_parse(b, n, 100, &j);
        if (!e) {
            assert_true(cJSON_IsString(cJSON_GetObjectItem(j, "op")));
            cJSON_Delete(j);
        }
    }
}

static void test_fields(void **st)
{
    cJSON *j = cJSON_Parse("{\"s\":\"abc\",\"n\":2.5,\"i\":7,\"big\":1e300,\"neg\":-1,\"t\":true}");
    const char *s = NULL;
    double d = NAN;
    int64_t i = -5;
    assert_int_equal(qd_proto_str(j, "s", 3, 1, &s), QD_OK);
    assert_string_equal(s, "abc");
    assert_int_equal(qd_proto_str(j, "s", 2, 1, &s), QD_EINVAL);
    assert_int_equal(qd_proto_str(j, "n", 9, 1, &s), QD_EINVAL);
    assert_int_equal(qd_proto_str(j, "absent", 9, 1, &s), QD_EINVAL);
    s = "kept";
    assert_int_equal(qd_proto_str(j, "absent", 9, 0, &s), QD_OK);
    assert_string_equal(s, "kept");
    assert_int_equal(qd_proto_num(j, "n", 0, 3, 1, &d), QD_OK);
    assert_true(d == 2.5);
    assert_int_equal(qd_proto_num(j, "n", 0, 2, 1, &d), QD_EINVAL);
    assert_int_equal(qd_proto_num(j, "t", 0, 2, 1, &d), QD_EINVAL);
    assert_int_equal(qd_proto_int(j, "i", 0, 10, 1, &i), QD_OK);
    assert_int_equal(i, 7);
    assert_int_equal(qd_proto_int(j, "n", 0, 10, 1, &i), QD_EINVAL);
    assert_int_equal(qd_proto_int(j, "big", 0, INT64_C(1) << 53, 1, &i), QD_EINVAL);
    assert_int_equal(qd_proto_int(j, "neg", 0, 10, 1, &i), QD_EINVAL);
    cJSON_Delete(j);
    assert_true(qd_proto_id_ok("gw-17.a_b"));
    const char *badid[] = {"",
                           ".hidden",
                           "../etc",
                           "a/b",
                           "a b",
                           "x\n",
                           "0123456789012345678901234567890123456789012345678901234567890123"};
    for (size_t k = 0; k < sizeof badid / sizeof badid[0]; k++)
        assert_false(qd_proto_id_ok(badid[k]));
    uint8_t b[4], c[4] = {0xde, 0xad, 0x01, 0xff};
    char hex[9];
    qd_proto_hex(c, 4, hex);
    assert_string_equal(hex, "dead01ff");
    assert_int_equal(qd_proto_unhex(hex, b, 4), QD_OK);
    assert_memory_equal(b, c, 4);
    assert_int_equal(qd_proto_unhex("dead01f", b, 4), QD_EINVAL);
    assert_int_equal(qd_proto_unhex("dead01fg", b, 4), QD_EINVAL);
    char *er = qd_proto_error(QD_EBUDGET, "no \"fit\"");
    cJSON *e = cJSON_Parse(er);
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(e, "error"), "code")->valuestring,
                        "EBUDGET");
    assert_true(cJSON_IsFalse(cJSON_GetObjectItem(e, "ok")));
    cJSON_Delete(e);
    free(er);
}

static void test_sign_and_push(void **st)
{
    uint8_t pk[QD_PROTO_PUB_BYTES], sk[QD_PROTO_SECRET_BYTES], pk2[QD_PROTO_PUB_BYTES],
        sk2[QD_PROTO_SECRET_BYTES], sig[QD_PROTO_SIG_BYTES];
    crypto_sign_keypair(pk, sk);
    crypto_sign_keypair(pk2, sk2);
    uint8_t qm[300];
    randombytes_buf(qm, sizeof qm);
    qd_proto_sign(qm, sizeof qm, sk, sig);
    assert_int_equal(qd_proto_verify_model(qm, sizeof qm, sig, pk), QD_OK);
    assert_int_equal(qd_proto_verify_model(qm, sizeof qm, sig, pk2), QD_EAUTH);
    qm[17] ^= 4;
    assert_int_equal(qd_proto_verify_model(qm, sizeof qm, sig, pk), QD_EAUTH);
    qm[17] ^= 4;
    /* a notification: no model bytes; every truncation refused */
    struct qd_proto_note note = {.id = "dev-9", .version = 3, .size = 300}, nb;
    qd_proto_sha256_hex(qm, sizeof qm, note.sha);
    uint8_t *f;
    size_t n;
    assert_int_equal(qd_proto_note_encode(&note, &f, &n), QD_OK);
    assert_true(n < 200);
    assert_int_equal(qd_proto_note_decode(f, n, &nb), QD_OK);
    assert_string_equal(nb.id, "dev-9");
    assert_int_equal(nb.version, 3);
    assert_int_equal(nb.size, 300);
    assert_string_equal(nb.sha, note.sha);
    for (size_t k = 0; k < n; k++)
        assert_int_equal(qd_proto_note_decode(f, k, &nb), QD_EFORMAT);
    f[1] = 'X'; /* the topic no longer names the device in the line */
    assert_int_equal(qd_proto_note_decode(f, n, &nb), QD_EFORMAT);
    free(f);
    /* a fetch chunk: header, manifest, signature, bytes; truncations refused or shorter */
    const char *hdr = "{\"version\":3,\"offset\":100,\"total\":300,\"encoding\":\"raw\","
                      "\"manifest_len\":5}";
    assert_int_equal(qd_proto_chunk_encode(hdr, "hello", 5, sig, qm + 100, 150, &f, &n), QD_OK);
    struct qd_proto_chunk ch;
    assert_int_equal(qd_proto_chunk_decode(f, n, &ch), QD_OK);
    assert_int_equal(ch.version, 3);
    assert_int_equal(ch.offset, 100);
    assert_int_equal(ch.total, 300);
    assert_int_equal(ch.len, 150);
    assert_memory_equal(ch.manifest, "hello", 5);
    assert_memory_equal(ch.sig, sig, sizeof sig);
    assert_memory_equal(ch.data, qm + 100, 150);
    cJSON_Delete(ch.header);
    for (size_t k = 0; k < n; k++) {
        qd_err e = qd_proto_chunk_decode(f, k, &ch);
        if (!e) { /* only a cut inside the data: a shorter chunk at the same offset */
            assert_true(ch.len < 150);
            assert_memory_equal(ch.data, qm + 100, ch.len);
            cJSON_Delete(ch.header);
        } else
            assert_int_equal(e, QD_EFORMAT);
    }
    free(f);
    /* a chunk that claims bytes past its total */
    assert_int_equal(qd_proto_chunk_encode(hdr, "hello", 5, sig, qm, 250, &f, &n), QD_OK);
    assert_int_equal(qd_proto_chunk_decode(f, n, &ch), QD_EFORMAT);
    free(f);
    assert_int_equal(qd_proto_chunk_encode("{\"a\":\"x\ny\"}", "m", 1, sig, qm, 4, &f, &n),
                     QD_EINVAL);
}

/* Packing: each kind round-trips; a patch against a similar base is smallest; corruption,
 * truncation, a wrong size or a wrong base never yield the model. */
static void test_pack(void **st)
{
    enum { N = 60000 };
    uint8_t *qm = malloc(N), *base = malloc(N), *noise = malloc(N);
    randombytes_buf(noise, N);
    for (int i = 0; i < N; i++) /* low-entropy "weights" */
        qm[i] = (uint8_t)((noise[i] & 7) - 4);
    memcpy(base, qm, N);
    for (int i = 20000; i < 24000; i++) /* one layer changed */
        base[i] = noise[i];
    enum qd_pack k;
    uint8_t *p, *back;
    size_t n;
    assert_int_equal(qd_pack_best(qm, N, NULL, 0, 3, &k, &p, &n), QD_OK);
    assert_int_equal(k, QD_PACK_ZSTD);
    size_t zn = n;
    assert_true(zn < N / 2);
    assert_int_equal(qd_pack_unpack(k, p, n, NULL, 0, N, &back), QD_OK);
    assert_memory_equal(back, qm, N);
    free(back);
    /* truncated, bit-flipped, or announced at another size: refused */
    for (size_t cut = 0; cut < n; cut += 97)
        assert_int_equal(qd_pack_unpack(k, p, cut, NULL, 0, N, &back), QD_EFORMAT);
    assert_int_equal(qd_pack_unpack(k, p, n, NULL, 0, N - 1, &back), QD_EFORMAT);
    p[n / 2] ^= 0x10;
    assert_int_equal(qd_pack_unpack(k, p, n, NULL, 0, N, &back), QD_EFORMAT);
    free(p);
    assert_int_equal(qd_pack_best(qm, N, base, N, 3, &k, &p, &n), QD_OK);
    assert_int_equal(k, QD_PACK_PATCH);
    assert_true(n < zn / 3);
    assert_int_equal(qd_pack_unpack(k, p, n, base, N, N, &back), QD_OK);
    assert_memory_equal(back, qm, N);
    free(back);
    /* against another base the patch does not give the model */
    base[100] ^= 1;
    qd_err e = qd_pack_unpack(k, p, n, base, N, N, &back);
    if (!e) {
        assert_true(memcmp(back, qm, N) != 0);
        free(back);
    }
    assert_int_equal(qd_pack_unpack(k, p, n, NULL, 0, N, &back), QD_EINVAL);
    free(p);
    /* incompressible: raw */
    assert_int_equal(qd_pack_best(noise, N, NULL, 0, 3, &k, &p, &n), QD_OK);
    assert_int_equal(k, QD_PACK_RAW);
    assert_int_equal(n, N);
    assert_int_equal(qd_pack_unpack(k, p, n, NULL, 0, N, &back), QD_OK);
    assert_memory_equal(back, noise, N);
    free(back);
    assert_int_equal(qd_pack_unpack(k, p, n - 1, NULL, 0, N, &back), QD_EFORMAT);
    free(p);
    assert_int_equal(qd_pack_parse("patch"), QD_PACK_PATCH);
    assert_int_equal(qd_pack_parse("gzip"), -1);
    free(qm), free(base), free(noise);
}

/* The signed manifest: every refusal its own code, and nothing passes but the real one. */
static void test_manifest(void **st)
{
    uint8_t pk[QD_PROTO_PUB_BYTES], sk[QD_PROTO_SECRET_BYTES], pk2[QD_PROTO_PUB_BYTES],
        sk2[QD_PROTO_SECRET_BYTES], sig[QD_PROTO_SIG_BYTES], qm[500];
    crypto_sign_keypair(pk, sk);
    crypto_sign_keypair(pk2, sk2);
    randombytes_buf(qm, sizeof qm);
    struct qd_manifest m = {.device = "gw-1",
                            .version = 5,
                            .prev = 4,
                            .size = sizeof qm,
                            .backbone = "0123abcd",
                            .policy = "8,4,2/8",
                            .created = 1000,
                            .expires = 2000,
                            .test_seed = 77,
                            .test_n = 4},
                       got;
    qd_proto_sha256_hex(qm, sizeof qm, m.sha);
    memset(m.test_sha, 'c', 64);
    char *t;
    size_t tl;
    assert_int_equal(qd_manifest_sign(&m, sk, &t, &tl, sig), QD_OK);
    assert_int_equal(qd_manifest_check(t, tl, sig, pk, "gw-1", 4, 1500, &got), QD_OK);
    assert_int_equal(got.version, 5);
    assert_int_equal(got.prev, 4);
    assert_string_equal(got.policy, "8,4,2/8");
    assert_string_equal(got.backbone, "0123abcd");
    assert_int_equal(got.test_seed, 77);
    assert_int_equal(got.test_n, 4);
    assert_memory_equal(got.test_sha, m.test_sha, 65);
    assert_int_equal(qd_manifest_check_bytes(&got, qm, sizeof qm), QD_OK);
    /* another key, another device, not newer, expired */
    assert_int_equal(qd_manifest_check(t, tl, sig, pk2, "gw-1", 4, 1500, &got), QD_EAUTH);
    assert_int_equal(qd_manifest_check(t, tl, sig, pk, "gw-2", 4, 1500, &got), QD_EFOREIGN);
    assert_int_equal(qd_manifest_check(t, tl, sig, pk, "gw-1", 5, 1500, &got), QD_EROLLBACK);
    assert_int_equal(qd_manifest_check(t, tl, sig, pk, "gw-1", 4, 2000, &got), QD_EEXPIRED);
    /* the bytes: one flipped, one missing */
    assert_int_equal(qd_manifest_check(t, tl, sig, pk, "gw-1", 0, 1500, &got), QD_OK);
    qm[77] ^= 1;
    assert_int_equal(qd_manifest_check_bytes(&got, qm, sizeof qm), QD_ECHECKSUM);
    qm[77] ^= 1;
    assert_int_equal(qd_manifest_check_bytes(&got, qm, sizeof qm - 1), QD_ECHECKSUM);
    /* any changed byte of the text, or of the signature, fails the signature */
    for (size_t k = 0; k < tl; k++) {
        t[k] ^= 0x20;
        assert_int_equal(qd_manifest_check(t, tl, sig, pk, "gw-1", 0, 1500, &got), QD_EAUTH);
        t[k] ^= 0x20;
    }
    for (size_t k = 0; k < sizeof sig; k++) {
        sig[k] ^= 1;
        assert_int_equal(qd_manifest_check(t, tl, sig, pk, "gw-1", 0, 1500, &got), QD_EAUTH);
        sig[k] ^= 1;
    }
    /* a model signature is not a manifest signature (domain separation) */
    uint8_t msig[QD_PROTO_SIG_BYTES];
    qd_proto_sign((const uint8_t *)t, tl, sk, msig);
    assert_int_equal(qd_manifest_check(t, tl, msig, pk, "gw-1", 0, 1500, &got), QD_EAUTH);
    free(t);
    /* a signed text that is not a manifest is malformed, not trusted */
    m.version = 0;
    assert_int_equal(qd_manifest_sign(&m, sk, &t, &tl, sig), QD_OK);
    assert_int_equal(qd_manifest_check(t, tl, sig, pk, "gw-1", 0, 1500, &got), QD_EFORMAT);
    free(t);
}

static qd_err collect(void *ctx, const struct qd_state_device *d)
{
    struct qd_state_device *out = ctx;
    int i = 0;
    while (out[i].id[0])
        i++;
    out[i] = *d;
    out[i].context = NULL;
    return QD_OK;
}

static void test_state(void **st)
{
    char *dir = make_tmpdir();
    qd_state_t *s;
    assert_int_equal(qd_state_open(dir, &s), QD_OK);
    uint8_t k1[32], k2[32], sig[64];
    randombytes_buf(k1, 32);
    randombytes_buf(k2, 32);
    randombytes_buf(sig, 64);
    assert_int_equal(qd_state_device_add(s, "a", k1), QD_OK);
    assert_int_equal(qd_state_device_add(s, "b", k2), QD_OK);
    assert_int_equal(qd_state_device_add(s, "a", k2), QD_EEXIST);
    assert_int_equal(qd_state_device_hello(s, "a", "esp32", 0, 0, 11), QD_OK);
    uint8_t blob[100];
    randombytes_buf(blob, sizeof blob);
    char sha[65];
    qd_proto_sha256_hex(blob, sizeof blob, sha);
    assert_int_equal(qd_state_blob_write(dir, sha, blob, sizeof blob), QD_OK);
    struct qd_state_decision d = {.device = "a",
                                  .context = "{\"battery\":0.5}",
                                  .policy = "8,4",
                                  .costs = "{}",
                                  .nonce = 12,
                                  .version = 1,
                                  .sha = sha,
                                  .backbone = "bb",
                                  .size = sizeof blob,
                                  .sig = sig};
    assert_int_equal(qd_state_decision(s, &d), QD_OK);
    /* the same version twice is refused and rolled back whole */
    assert_int_equal(qd_state_decision(s, &d), QD_EEXIST);
    d.version = 2;
    assert_int_equal(qd_state_decision(s, &d), QD_OK);
    assert_int_equal(qd_state_ack(s, "a", 1, 13), QD_OK);
    qd_state_close(s);

    assert_int_equal(qd_state_open(dir, &s), QD_OK);
    struct qd_state_device all[3];
    memset(all, 0, sizeof all);
    assert_int_equal(qd_state_devices_load(s, collect, all), QD_OK);
    struct qd_state_device *a = !strcmp(all[0].id, "a") ? &all[0] : &all[1];
    assert_string_equal(a->id, "a");
    assert_memory_equal(a->key, k1, 32);
    assert_string_equal(a->profile, "esp32");
    assert_int_equal(a->version, 2);
    assert_int_equal(a->acked, 1);
    assert_int_equal(a->nonce, 13);
    assert_string_equal(a->sha, sha);
    char got[65];
    assert_int_equal(qd_state_version_sha(s, "a", 1, got), QD_OK);
    assert_string_equal(got, sha);
    assert_int_equal(qd_state_version_sha(s, "a", 3, got), QD_ENOENT);
    uint8_t sig2[64];
    char pol[32];
    assert_int_equal(qd_state_blob_meta(s, sha, sig2, pol, sizeof pol), QD_OK);
    assert_memory_equal(sig2, sig, 64);
    assert_string_equal(pol, "8,4");
    uint8_t *b;
    size_t n;
    assert_int_equal(qd_state_blob_read(dir, sha, &b, &n), QD_OK);
    assert_int_equal(n, sizeof blob);
    assert_memory_equal(b, blob, n);
    free(b);
    cJSON *h = cJSON_CreateObject();
    assert_int_equal(qd_state_device_history(s, "a", 10, h), QD_OK);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(h, "versions")), 2);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(h, "decisions")), 2);
    cJSON_Delete(h);
    qd_state_close(s);
    rm_rf(dir);
    free(dir);
}

/* The fuzzers' regression inputs (tests/fuzz-regress/<target>/, scripts/fuzz.sh): each fed
 * to the decoder that failed on it, which refuses it cleanly or, accepting it, keeps the
 * invariant the fuzz target checked: a notification or a manifest that decodes re-encodes to
 * the same fields (a manifest's integers exactly, past 2^52 too). */
static void regress_note(const uint8_t *b, size_t n, const char *name)
{
    struct qd_proto_note a, c;
    if (qd_proto_note_decode(b, n, &a))
        return;
    uint8_t sha[32], *e;
    size_t en;
    assert_true(qd_proto_id_ok(a.id));
    assert_int_equal(qd_proto_unhex(a.sha, sha, sizeof sha), QD_OK);
    assert_int_equal(qd_proto_note_encode(&a, &e, &en), QD_OK);
    assert_int_equal(qd_proto_note_decode(e, en, &c), QD_OK);
    assert_string_equal(a.sha, c.sha);
    assert_string_equal(a.id, c.id);
    assert_true(a.version == c.version && a.size == c.size);
    free(e);
}

static void regress_manifest(const uint8_t *b, size_t n, const char *name)
{
    struct qd_manifest m, m2;
    if (qd_manifest_parse((const char *)b, n, &m))
        return;
    uint8_t pk[32], sk[64], sig[64];
    crypto_sign_keypair(pk, sk);
    char *t;
    size_t tl;
    assert_int_equal(qd_manifest_sign(&m, sk, &t, &tl, sig), QD_OK);
    assert_int_equal(qd_manifest_check(t, tl, sig, pk, m.device, m.version - 1, m.expires - 1, &m2),
                     QD_OK);
    assert_true(m2.version == m.version && m2.prev == m.prev && m2.size == m.size &&
                m2.created == m.created && m2.expires == m.expires && m2.test_seed == m.test_seed &&
                m2.test_n == m.test_n);
    free(t);
}

static void regress_chunk(const uint8_t *b, size_t n, const char *name)
{
    struct qd_proto_chunk c;
    if (!qd_proto_chunk_decode(b, n, &c)) {
        assert_true(c.data + c.len == b + n);
        cJSON_Delete(c.header);
    }
}

static void regress_request(const uint8_t *b, size_t n, const char *name)
{
    cJSON *j;
    if (!qd_proto_parse((const char *)b, n, QD_PROTO_MAX_REQUEST, &j))
        cJSON_Delete(j);
}

static void test_fuzz_regressions(void **st)
{
    assert_true(fuzz_regress_each("note", regress_note) > 0);
    assert_true(fuzz_regress_each("manifest", regress_manifest) > 0);
    fuzz_regress_each("chunk", regress_chunk);
    fuzz_regress_each("request", regress_request);
}

static qd_err one_device(void *ctx, const struct qd_state_device *d)
{
    *(struct qd_state_device *)ctx = *d;
    ((struct qd_state_device *)ctx)->context = NULL;
    return QD_OK;
}

static qd_err one_setting(void *ctx, const char *target, const char *body)
{
    snprintf(ctx, 200, "%s=%s", target, body);
    return QD_OK;
}

/* A schema-1 state (before fleet operations) opens as schema 2 with its devices kept (no group,
 * active); fleet rows round-trip; a state newer than this quantd is refused (EVERSION). */
static void test_state_migrates(void **st)
{
    char *dir = make_tmpdir(), path[1200];
    snprintf(path, sizeof path, "%s/state.db", dir);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(
        sqlite3_exec(db,
                     "CREATE TABLE meta(k TEXT PRIMARY KEY, v TEXT);"
                     "CREATE TABLE devices(id TEXT PRIMARY KEY, key BLOB NOT NULL, profile TEXT "
                     "NOT NULL DEFAULT '', flash REAL NOT NULL DEFAULT 0, ram REAL NOT NULL "
                     "DEFAULT 0, context TEXT, nonce INTEGER NOT NULL DEFAULT 0, version INTEGER "
                     "NOT NULL DEFAULT 0, acked INTEGER NOT NULL DEFAULT 0, created INTEGER, "
                     "seen INTEGER);"
                     "CREATE TABLE events(ts INTEGER, device TEXT, kind TEXT, detail TEXT);"
                     "INSERT INTO meta VALUES('schema','1');"
                     "INSERT INTO devices(id,key,profile,nonce) VALUES('gw-1',zeroblob(32),"
                     "'esp32',7);",
                     NULL, NULL, NULL),
        SQLITE_OK);
    sqlite3_close(db);
    qd_state_t *s;
    assert_int_equal(qd_state_open(dir, &s), QD_OK);
    char v[16];
    assert_int_equal(qd_state_meta_get(s, "schema", v, sizeof v), QD_OK);
    assert_string_equal(v, "2");
    struct qd_state_device d;
    assert_int_equal(qd_state_devices_load(s, one_device, &d), QD_OK);
    assert_string_equal(d.id, "gw-1");
    assert_int_equal((int)d.nonce, 7);
    assert_string_equal(d.group, "");
    assert_int_equal(d.status, QD_STATE_ACTIVE);
    assert_int_equal(qd_state_device_group(s, "gw-1", "north"), QD_OK);
    assert_int_equal(qd_state_device_status(s, "gw-1", QD_STATE_REVOKED), QD_OK);
    assert_int_equal(qd_state_setting_put(s, "group:north", "{\"flash\":\"50%\"}"), QD_OK);
    assert_int_equal(qd_state_event(s, "gw-1", "set", "x"), QD_OK);
    qd_state_close(s);
    assert_int_equal(qd_state_open(dir, &s), QD_OK); /* a second open migrates nothing */
    assert_int_equal(qd_state_devices_load(s, one_device, &d), QD_OK);
    assert_string_equal(d.group, "north");
    assert_int_equal(d.status, QD_STATE_REVOKED);
    char set[200] = "";
    assert_int_equal(qd_state_settings_load(s, one_setting, set), QD_OK);
    assert_string_equal(set, "group:north={\"flash\":\"50%\"}");
    cJSON *a = cJSON_CreateArray();
    struct qd_state_event_filter f = {.group = "north", .kind = "set"};
    assert_int_equal(qd_state_events(s, &f, a), QD_OK);
    assert_int_equal(cJSON_GetArraySize(a), 1);
    f.group = "south";
    cJSON_Delete(a);
    a = cJSON_CreateArray();
    assert_int_equal(qd_state_events(s, &f, a), QD_OK);
    assert_int_equal(cJSON_GetArraySize(a), 0);
    cJSON_Delete(a);
    assert_int_equal(qd_state_meta_set(s, "schema", "9"), QD_OK);
    qd_state_close(s);
    assert_int_equal(qd_state_open(dir, &s), QD_EVERSION);
    assert_non_null(strstr(qd_errmsg(), "schema 9"));
    rm_rf(dir);
    free(dir);
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_seal_verify),
        cmocka_unit_test(test_parse_limits),
        cmocka_unit_test(test_fields),
        cmocka_unit_test(test_sign_and_push),
        cmocka_unit_test(test_manifest),
        cmocka_unit_test(test_pack),
        cmocka_unit_test(test_state),
        cmocka_unit_test(test_state_migrates),
        cmocka_unit_test(test_fuzz_regressions),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
