/* The fuzzers' regression inputs (tests/fuzz-regress/<target>/): every crash, sanitizer report
 * or broken invariant scripts/fuzz.sh found, minimized, and the crafted inputs of the defects
 * issue 20 names. A test hands each file of a target's directory to the decoder that failed on
 * it and checks that the decoder now refuses it cleanly (or accepts it, where it was valid and
 * the bug was behind the decoder). Found through $QD_SOURCE_DIR, else next to the test's
 * source file (the runtime's test has no environment set and also runs cross-built).
 *
 * Usage:
 *     static void one(const uint8_t *b, size_t n, const char *name) { ... decode, assert ... }
 *     assert_true(fuzz_regress_each("qm", one) > 0);
 * A file name may end in ".ECODE": the error code it must be refused with. */
#ifndef QD_TESTS_FUZZREGRESS_H
#define QD_TESTS_FUZZREGRESS_H

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static inline int fuzz_regress_dir(const char *target, char *dir, size_t len)
{
    const char *src = getenv("QD_SOURCE_DIR");
    if (src)
        return snprintf(dir, len, "%s/tests/fuzz-regress/%s", src, target) < (int)len;
    const char *f = __FILE__, *slash = strrchr(f, '/');
    return snprintf(dir, len, "%.*s/fuzz-regress/%s", slash ? (int)(slash - f) : 1, slash ? f : ".",
                    target) < (int)len;
}

/* Calls fn on every regular file of the target's directory, in name order; returns how many
 * (0 when the directory is missing, which the caller's assertion turns into a failure). */
static inline int fuzz_regress_each(const char *target,
                                    void (*fn)(const uint8_t *b, size_t n, const char *name))
{
    char dir[2048], path[4096];
    if (!fuzz_regress_dir(target, dir, sizeof dir))
        return 0;
    struct dirent **ents;
    int ne = scandir(dir, &ents, NULL, alphasort), done = 0;
    for (int i = 0; i < ne; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, ents[i]->d_name);
        FILE *f = ents[i]->d_name[0] == '.' ? NULL : fopen(path, "rb");
        if (f) {
            uint8_t *b = NULL;
            size_t n = 0, cap = 0, got;
            do {
                if (n == cap)
                    b = realloc(b, cap = cap ? 2 * cap : 4096);
                got = fread(b + n, 1, cap - n, f);
                n += got;
            } while (got);
            fclose(f);
            fn(b, n, ents[i]->d_name);
            free(b);
            done++;
        }
        free(ents[i]);
    }
    if (ne > 0)
        free(ents);
    return done;
}

/* The ".ECODE" a file name ends in ("" when none). */
static inline const char *fuzz_regress_code(const char *name)
{
    const char *dot = strrchr(name, '.');
    return dot && dot[1] == 'E' ? dot + 1 : "";
}

#endif
