/* core/: error table, MD5 test vectors, RNG determinism and ranges. */
#include "testutil.h"

#include "core/err.h"
#include "core/md5.h"

static void errors_have_names_and_messages(void **st)
{
    assert_string_equal(qd_err_name(QD_EFORMAT), "EFORMAT");
    assert_string_equal(qd_err_name(QD_EBUDGET), "EBUDGET");
    assert_string_equal(qd_strerror(QD_OK), "success");
    assert_string_equal(qd_err_name((qd_err)999), "EUNKNOWN");
    for (int e = 0; e < QD_ERR_COUNT; e++)
        assert_true(strlen(qd_strerror((qd_err)e)) > 3);
    assert_int_equal(qd_seterr(QD_EIO, "file %s line %d", "x.conf", 7), QD_EIO);
    assert_string_equal(qd_errmsg(), "file x.conf line 7");
    assert_int_equal(qd_wraperr(QD_EIO, "a.qm: ", " (retry)"), QD_EIO);
    assert_string_equal(qd_errmsg(), "a.qm: file x.conf line 7 (retry)");
    qd_wraperr(QD_EIO, "100%s: ", NULL); /* a '%' in a prefix is text, not a format */
    assert_string_equal(qd_errmsg(), "100%s: a.qm: file x.conf line 7 (retry)");
    qd_clearerr();
    assert_string_equal(qd_errmsg(), "success");
}

static void md5_rfc1321_vectors(void **st)
{
    static const char *in[] = {"", "a", "abc", "message digest",
                               "12345678901234567890123456789012345678901234567890123456789012345"
                               "678901234567890"};
    static const char *out[] = {"d41d8cd98f00b204e9800998ecf8427e", "0cc175b9c0f1b6a831c399e269772661",
                                "900150983cd24fb0d6963f7d28e17f72", "f96b697d7cb7938d525a2f31aaf161d0",
                                "57edf4a22be3c955ac49da2e2107b67a"};
    for (int i = 0; i < 5; i++) {
        struct qd_md5 m;
        uint8_t d[16];
        char hex[33];
        qd_md5_init(&m);
        /* feed in uneven pieces to exercise the buffering */
        size_t n = strlen(in[i]), k = 0;
        while (k < n) {
            size_t take = (k % 7) + 1 < n - k ? (k % 7) + 1 : n - k;
            qd_md5_update(&m, in[i] + k, take);
            k += take;
        }
        qd_md5_final(&m, d);
        qd_md5_hex(d, hex);
        assert_string_equal(hex, out[i]);
    }
    char hex[33];
    assert_int_equal(qd_md5_file("/nonexistent/file", hex), QD_ENOENT);
}

static void rng_is_deterministic_and_in_range(void **st)
{
    struct qd_rng a, b, c;
    qd_rng_seed(&a, 42);
    qd_rng_seed(&b, 42);
    qd_rng_seed(&c, 43);
    int same = 1, differ = 0;
    for (int i = 0; i < 1000; i++) {
        uint64_t x = qd_rng_next(&a), y = qd_rng_next(&b), z = qd_rng_next(&c);
        same &= x == y;
        differ += x != z;
    }
    assert_true(same);
    assert_true(differ > 990);
    double s = 0, s2 = 0;
    int hist[10] = {0};
    for (int i = 0; i < 100000; i++) {
        float u = qd_rng_uniform(&a), g = qd_rng_normal(&a);
        assert_true(u >= 0 && u < 1);
        s += g;
        s2 += g * g;
        hist[qd_rng_below(&a, 10)]++;
    }
    assert_true(fabs(s / 1e5) < 0.02 && fabs(s2 / 1e5 - 1) < 0.03);
    for (int i = 0; i < 10; i++)
        assert_true(hist[i] > 9500 && hist[i] < 10500);
    int idx[100], seen[100] = {0};
    for (int i = 0; i < 100; i++)
        idx[i] = i;
    qd_rng_shuffle(&a, idx, 100);
    int moved = 0;
    for (int i = 0; i < 100; i++) {
        seen[idx[i]]++;
        moved += idx[i] != i;
    }
    for (int i = 0; i < 100; i++)
        assert_int_equal(seen[i], 1);
    assert_true(moved > 80);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(errors_have_names_and_messages),
        cmocka_unit_test(md5_rfc1321_vectors),
        cmocka_unit_test(rng_is_deterministic_and_in_range),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
