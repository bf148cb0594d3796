/* Fuzz target: a checkpoint file (nn/ckpt.h), as the daemon, quantlab and the gate read one
 * with qd_ckpt_load (which only takes a path: the bytes go through a memfd).
 *
 * Checks: no crash, sanitizer report or leak; a checkpoint that loads has a model whose
 * parameter and statistic counts are the ones stored, 1..3 normalization channels, and a
 * NUL-terminated dataset name. A loaded model is freed (qd_model_fini). */
#include "fuzz/fuzz.h"

#include "core/err.h"
#include "nn/ckpt.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    setenv("OMP_NUM_THREADS", "1", 1);
    setenv("OPENBLAS_NUM_THREADS", "1", 1);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fz_path(data, size);
    FZ_CHECK(path);
    struct qd_model m;
    struct qd_norm nm;
    char ds[32];
    if (qd_ckpt_load(path, &m, ds, &nm))
        return 0;
    FZ_CHECK(nm.c >= 1 && nm.c <= 3 && memchr(ds, 0, sizeof ds));
    uint32_t sl;
    memcpy(&sl, data + 12, 4);
    FZ_CHECK(size == 8 + 4 + 4 + (size_t)sl + 32 + 4 + 24 + 16 + 4 * (m.nparam + m.nstat) + 4);
    qd_model_fini(&m);
    return 0;
}
