/* The wire format and the state store: sealing and checking requests (every tampered byte is
 * caught), parse limits and field validation, model signatures, push frames (every truncation
 * is an error, never a read past the end), and the SQLite state surviving a reopen. */
#include "testutil.h"

#include <sodium.h>

#include "daemon/state.h"
#include "proto/proto.h"

static void test_seal_verify(void **st)
{
    uint8_t key[QD_PROTO_KEY_BYTES], other[QD_PROTO_KEY_BYTES];
    randombytes_buf(key, sizeof key);
    randombytes_buf(other, sizeof other);
    char *m;
    assert_int_equal(qd_proto_seal("{\"v\":1,\"op\":\"report\",\"from\":\"d1\",\"nonce\":5}", key,
                                   &m), QD_OK);
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
    const char *bad[] = {"", "[]", "{", "{\"v\":1,\"op\":\"x\"} junk", "{\"v\":2,\"op\":\"health\"}",
                         "{\"op\":\"health\"}", "{\"v\":1}", "{\"v\":1,\"op\":7}", "\"str\"",
                         "{\"v\":1,\"op\":\"health\",}", "nul"};
    qd_err want[] = {QD_EFORMAT, QD_EFORMAT, QD_EFORMAT, QD_EFORMAT, QD_EVERSION, QD_EVERSION,
                     QD_EINVAL, QD_EINVAL, QD_EFORMAT, QD_EFORMAT, QD_EFORMAT};
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
    const char *badid[] = {"", ".hidden", "../etc", "a/b", "a b", "x\n",
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
    uint8_t *f;
    size_t n;
    const char *hdr = "{\"v\":1,\"op\":\"push\",\"version\":3}";
    assert_int_equal(qd_proto_push_encode("dev-9", hdr, qm, sizeof qm, sig, &f, &n), QD_OK);
    struct qd_push_view v;
    assert_int_equal(qd_proto_push_decode(f, n, &v), QD_OK);
    assert_string_equal(v.id, "dev-9");
    assert_int_equal(v.qm_len, sizeof qm);
    assert_memory_equal(v.qm, qm, sizeof qm);
    assert_memory_equal(v.sig, sig, sizeof sig);
    assert_int_equal(cJSON_GetObjectItem(v.header, "version")->valueint, 3);
    cJSON_Delete(v.header);
    /* every truncation is an error or a shorter model whose signature fails */
    for (size_t k = 0; k < n; k++) {
        uint8_t *t = malloc(k ? k : 1);
        memcpy(t, f, k);
        qd_err e = qd_proto_push_decode(t, k, &v);
        if (!e) {
            assert_int_equal(qd_proto_verify_model(v.qm, v.qm_len, v.sig, pk), QD_EAUTH);
            cJSON_Delete(v.header);
        }
        free(t);
    }
    free(f);
    assert_int_equal(qd_proto_push_encode("d", "{\"a\":\"x\ny\"}", qm, 4, sig, &f, &n),
                     QD_EINVAL);
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
    struct qd_state_decision d = {.device = "a", .context = "{\"battery\":0.5}",
                                  .policy = "8,4", .costs = "{}", .nonce = 12, .version = 1,
                                  .sha = sha, .backbone = "bb", .size = sizeof blob, .sig = sig};
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

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_seal_verify), cmocka_unit_test(test_parse_limits),
        cmocka_unit_test(test_fields),      cmocka_unit_test(test_sign_and_push),
        cmocka_unit_test(test_state),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
