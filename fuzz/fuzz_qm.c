/* Fuzz target: a .qm model as a device loads and runs one (runtime/runtime.h), the device
 * runtime alone: nothing else of the project is linked.
 *
 * Feeds the bytes to qd_rt_load twice: as they are, and with the header's total size and the
 * CRC-32 fixed up, so that mutations get past the checksum to the validator, the planner and
 * the kernels. The arena is sized as a device sizes it (a load into no arena says the tables'
 * size, a load into those says the whole; qd_rt_arena_size does the same) and allocated to
 * the byte, so that ASan sees any access past it. A model that loads is run on a fixed image
 * when its work is small (about 2^21 operations): integer models on the reference kernels, the
 * portable fast ones, the Cortex-M DSP ones (on their C instructions) and each SIMD ISA this
 * CPU has, whose logits must all be equal bit for bit; float models on the reference and the
 * fast kernels. Checks: no crash, sanitizer report or leak; a refusal carries a diagnosis;
 * the arena the first load asks for is the one the second uses; kernels agree. */
#include "fuzz/fuzz.h"

#include "runtime/crc32.h"
#include "runtime/qm_format.h"
#include "runtime/rt_impl.h" /* rt->dsp: the DSP kernels on a host */
#include "runtime/runtime.h"

#define MAX_ARENA ((size_t)64 << 20)
#define MAX_WORK ((uint64_t)1 << 21)

static void *alloc(size_t align, size_t n)
{
    void *p = NULL;
    return posix_memalign(&p, align, n ? n : 1) ? NULL : p;
}

/* Operations of one run (MACs, pool taps, elements), from the validated records. */
static uint64_t work(const uint8_t *blob)
{
    struct qd_qm_header h;
    qd_qm_header_read(blob, &h);
    const uint8_t *p = h.records;
    uint64_t w = (uint64_t)h.in_c * h.in_h * h.in_w;
    for (uint32_t i = 0; i < h.n; i++) {
        struct qd_qm_rec r;
        qd_qm_record_read(&p, &r);
        uint64_t out = (uint64_t)r.c * r.h * r.w;
        if (r.op == QD_IOP_CONV)
            w += out * (r.cin / r.groups) * r.k * r.k;
        else if (r.op == QD_IOP_DENSE)
            w += out * r.in_len;
        else if (r.op == QD_IOP_MAXPOOL || r.op == QD_IOP_AVGPOOL)
            w += out * r.k * r.k;
        else
            w += out;
    }
    return w;
}

static void run(qd_rt_t *rt, const uint8_t *px, float *logits)
{
    qd_rt_run(rt, px, logits);
}

/* Runs rt on every kernel set and compares the integer ones bit for bit. */
static void run_all(qd_rt_t *rt, const uint8_t *blob, int integer)
{
    struct qd_qm_header h;
    qd_qm_header_read(blob, &h);
    size_t npx = (size_t)h.in_c * h.in_h * h.in_w, nc = (size_t)qd_rt_classes(rt);
    uint8_t *px = malloc(npx);
    float *ref = malloc(nc * sizeof *ref), *got = malloc(nc * sizeof *got);
    FZ_CHECK(px && ref && got);
    for (size_t i = 0; i < npx; i++)
        px[i] = (uint8_t)(i * 37 + 11);
    qd_rt_set_reference(rt, 1);
    run(rt, px, ref);
    qd_rt_set_reference(rt, 0);
    run(rt, px, got);
    FZ_CHECK(!integer || !memcmp(ref, got, nc * sizeof *ref));
    if (integer) {
        rt->dsp = 1;
        run(rt, px, got);
        FZ_CHECK(!memcmp(ref, got, nc * sizeof *ref));
        rt->dsp = 0;
        for (int isa = QD_RT_ISA_AVX2; isa < QD_RT_ISA_AUTO; isa++) {
            size_t an = 0;
            if (qd_rt_accel_size(rt, isa, &an) || !an)
                continue;
            void *buf = alloc(64, an);
            FZ_CHECK(buf && qd_rt_accel(rt, isa, buf, an) == QD_RT_OK);
            run(rt, px, got);
            FZ_CHECK(!memcmp(ref, got, nc * sizeof *ref));
            FZ_CHECK(qd_rt_accel(rt, QD_RT_ISA_PORTABLE, NULL, 0) == QD_RT_OK);
            free(buf);
        }
    }
    free(px), free(ref), free(got);
}

static void load(const uint8_t *blob, size_t len)
{
    qd_rt_t *rt = NULL;
    size_t tables = 0, need = 0;
    struct qd_rt_diag d = {0};
    qd_rt_err e = qd_rt_load(blob, len, NULL, 0, &rt, &tables, &d);
    FZ_CHECK(e != QD_RT_OK);
    if (e != QD_RT_ENOMEM) {
        FZ_CHECK(d.msg != NULL);
        return;
    }
    if (tables > MAX_ARENA)
        return;
    void *arena = alloc(16, tables);
    FZ_CHECK(arena);
    e = qd_rt_load(blob, len, arena, tables, &rt, &need, &d);
    free(arena);
    if (e == QD_RT_OK)
        need = tables;
    else if (e != QD_RT_ENOMEM || need > MAX_ARENA) {
        FZ_CHECK(e == QD_RT_ENOMEM || d.msg != NULL);
        return;
    }
    FZ_CHECK(need >= tables);
    arena = alloc(16, need);
    FZ_CHECK(arena);
    size_t need2 = 0;
    e = qd_rt_load(blob, len, arena, need, &rt, &need2, &d);
    FZ_CHECK(e == QD_RT_OK && need2 == need && qd_rt_arena_used(rt) == need);
    if (work(blob) <= MAX_WORK)
        run_all(rt, blob, rt->integer);
    free(arena);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *b = alloc(16, size);
    FZ_CHECK(b);
    memcpy(b, data, size);
    load(b, size);
    if (size >= QD_QM_HEADER + 4) {
        uint32_t total = (uint32_t)size, crc;
        memcpy(b + 12, &total, 4);
        crc = qd_crc32(0, b, size - 4);
        memcpy(b + size - 4, &crc, 4);
        if (memcmp(b, data, size))
            load(b, size);
    }
    free(b);
    return 0;
}
