/* Helpers shared by the cmocka tests: random buffers, comparisons, temp dirs. */
#ifndef QD_TESTS_TESTUTIL_H
#define QD_TESTS_TESTUTIL_H

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/rng.h"

static inline float *rand_buf(struct qd_rng *r, size_t n, float scale)
{
    float *p = malloc(sizeof(float) * (n ? n : 1));
    for (size_t i = 0; i < n; i++)
        p[i] = scale * (2 * qd_rng_uniform(r) - 1);
    return p;
}

/* Largest |a-b| / (atol + rtol*|b|) over n; <= 1 means equal within tolerance. */
static inline double max_err(const float *a, const float *b, size_t n, double atol, double rtol)
{
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)a[i] - b[i]) / (atol + rtol * fabs((double)b[i]));
        if (!(e <= worst))
            worst = isnan(e) ? INFINITY : e;
    }
    return worst;
}

#define assert_close(a, b, n, atol, rtol)                                                          \
    do {                                                                                           \
        double e_ = max_err((a), (b), (n), (atol), (rtol));                                        \
        if (!(e_ <= 1.0))                                                                          \
            fail_msg("%s vs %s: error ratio %g > 1", #a, #b, e_);                                  \
    } while (0)

static inline char *make_tmpdir(void)
{
    char *d = strdup("/tmp/qdtest.XXXXXX");
    if (!mkdtemp(d))
        fail_msg("mkdtemp failed");
    return d;
}

static inline void rm_rf(const char *d)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", d);
    if (system(cmd) != 0)
        fprintf(stderr, "warning: could not remove %s\n", d);
}

/* A temporary directory for a whole test group: cmocka_run_group_tests(t, tmpdir_setup,
 * tmpdir_teardown) creates it before the first test and removes it after the last. */
static inline char **tmpdir_slot(void)
{
    static char *d;
    return &d;
}
static inline const char *tmpdir(void)
{
    return *tmpdir_slot();
}
static inline int tmpdir_setup(void **st)
{
    (void)st;
    *tmpdir_slot() = make_tmpdir();
    return 0;
}
static inline int tmpdir_teardown(void **st)
{
    (void)st;
    rm_rf(*tmpdir_slot());
    free(*tmpdir_slot());
    return 0;
}

/* The real dataset directory ($QD_SOURCE_DIR/data) if `probe` exists under it; otherwise skips
 * the test, or fails it when QD_REQUIRE_DATA=1 (scripts/test.sh fetches the data and sets it). */
static inline void real_data_dir(const char *probe, char *dir, size_t len)
{
    const char *src = getenv("QD_SOURCE_DIR"), *req = getenv("QD_REQUIRE_DATA");
    char p[2048];
    snprintf(dir, len, "%s/data", src ? src : ".");
    snprintf(p, sizeof p, "%s/%s", dir, probe);
    FILE *f = fopen(p, "rb");
    if (f) {
        fclose(f);
        return;
    }
    if (req && *req == '1')
        fail_msg("%s missing but QD_REQUIRE_DATA=1", p);
    skip();
}

#endif
