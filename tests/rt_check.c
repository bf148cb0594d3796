/* rt_check: runs a .qm model with the device runtime alone on raw images and prints every
 * image's logits as the exact bits of each float, one image a line, so that runs of the same
 * model on two machines (the host, and a cross build under QEMU) compare with cmp. With a
 * labels file it also counts correct top-1 answers. Linux programs only: stdio and malloc
 * here, none in the runtime.
 *
 *     rt_check MODEL.qm IMAGES.raw N [LABELS.raw] [--reference] [--isa NAME]
 *
 * IMAGES.raw: N images of C*H*W bytes (the model's input shape), LABELS.raw: N bytes. --isa:
 * the SIMD kernels (qd_rt_isa_name: portable, avx2, avx512vnni, neon, neon-dot, auto; default
 * auto, the best this CPU has); stderr says how many layers ran on them, so a back end that
 * accelerates nothing shows. --reference: the plain reference kernels only. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/qm_format.h"
#include "runtime/runtime.h"

static uint8_t *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *p = n > 0 ? malloc((size_t)n) : NULL;
    if (p && fread(p, 1, (size_t)n, f) != (size_t)n) {
        free(p);
        p = NULL;
    }
    fclose(f);
    *len = p ? (size_t)n : 0;
    return p;
}

/* The flags, anywhere; the program's name and the rest, in order, into pos[0..*npos). */
static int parse(int argc, char **argv, char **pos, int *npos, int *reference, int *isa)
{
    pos[0] = argv[0], *npos = 1, *reference = 0, *isa = QD_RT_ISA_AUTO;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--reference")) {
            *reference = 1;
        } else if (!strcmp(argv[i], "--isa") && i + 1 < argc) {
            const char *v = argv[++i];
            *isa = -1;
            for (int k = 0; k <= QD_RT_ISA_AUTO; k++)
                if (!strcmp(v, qd_rt_isa_name(k)))
                    *isa = k;
            if (*isa < 0) {
                fprintf(stderr, "rt_check: no ISA named %s\n", v);
                return 0;
            }
        } else if (argv[i][0] == '-' && argv[i][1] == '-') {
            fprintf(stderr, "rt_check: unknown flag %s\n", argv[i]);
            return 0;
        } else if (*npos < 5) {
            pos[(*npos)++] = argv[i];
        } else {
            return 0;
        }
    }
    return *npos >= 4;
}

/* Attaches the SIMD kernels of isa (a buffer outside the arena, as a gateway would). */
static void *attach(qd_rt_t *rt, int isa)
{
    size_t an = 0;
    qd_rt_err e = qd_rt_accel_size(rt, isa, &an);
    void *buf = an ? aligned_alloc(64, (an + 63) & ~(size_t)63) : NULL;
    if (!e && an && !buf)
        e = QD_RT_ENOMEM;
    if (!e)
        e = qd_rt_accel(rt, isa, buf, an);
    if (e) {
        fprintf(stderr, "rt_check: --isa %s: %s (best here: %s)\n", qd_rt_isa_name(isa),
                qd_rt_err_name(e), qd_rt_isa_name(qd_rt_isa_best()));
        exit(1);
    }
    return buf;
}

int main(int argc, char **argv)
{
    char *pos[5];
    int npos, reference, isa;
    if (!parse(argc, argv, pos, &npos, &reference, &isa)) {
        fprintf(stderr, "usage: rt_check MODEL.qm IMAGES.raw N [LABELS.raw] [--reference] "
                        "[--isa portable|avx2|avx512vnni|neon|neon-dot|auto]\n");
        return 2;
    }
    argc = npos, argv = pos; /* the positional arguments alone */
    size_t len, ilen, llen = 0;
    uint8_t *blob = slurp(argv[1], &len), *img = slurp(argv[2], &ilen);
    uint8_t *lab = argc == 5 ? slurp(argv[4], &llen) : NULL;
    long n = strtol(argv[3], NULL, 10);
    if (!blob || !img || (argc == 5 && !lab)) {
        fprintf(stderr, "rt_check: cannot read %s\n", !blob ? argv[1] : !img ? argv[2] : argv[4]);
        return 1;
    }
    qd_rt_t *rt;
    size_t need = 0;
    struct qd_rt_diag d = {0};
    void *arena = NULL;
    /* no arena: the tables' size; the tables' arena: the whole arena's size; then it loads */
    qd_rt_err e = qd_rt_load(blob, len, NULL, 0, &rt, &need, &d);
    for (int k = 0; k < 2 && e == QD_RT_ENOMEM; k++) {
        free(arena);
        arena = aligned_alloc(16, (need + 15) & ~(size_t)15);
        if (!arena)
            return 1;
        e = qd_rt_load(blob, len, arena, need, &rt, &need, &d);
    }
    if (e) {
        fprintf(stderr, "rt_check: %s: %s (record %d)\n", qd_rt_err_name(e),
                d.msg ? d.msg : qd_rt_strerror(e), (int)d.record);
        return 1;
    }
    struct qd_qm_header h;
    qd_qm_header_read(blob, &h);
    size_t per = (size_t)h.in_c * h.in_h * h.in_w;
    if (n <= 0 || (size_t)n * per > ilen || (lab && (size_t)n > llen)) {
        fprintf(stderr, "rt_check: %ld images of %zu bytes do not fit the files\n", n, per);
        return 1;
    }
    qd_rt_set_reference(rt, reference);
    void *abuf = reference ? NULL : attach(rt, isa);
    float *logits = malloc(sizeof(float) * h.nclass);
    long correct = 0;
    for (long i = 0; i < n; i++) {
        qd_rt_run(rt, img + (size_t)i * per, logits);
        int best = 0;
        for (int k = 0; k < h.nclass; k++) {
            uint32_t u;
            memcpy(&u, &logits[k], 4);
            printf("%08x%c", (unsigned)u, k + 1 < h.nclass ? ' ' : '\n');
            best = logits[k] > logits[best] ? k : best;
        }
        correct += lab && best == lab[i];
    }
    int on = 0, used = qd_rt_isa(rt);
    for (int l = 0; l < qd_rt_layers(rt); l++) /* what ran on the SIMD kernels */
        on += used != QD_RT_ISA_PORTABLE && !strcmp(qd_rt_node_kernel(rt, l), qd_rt_isa_name(used));
    fprintf(stderr, "rt_check: %ld images, arena %zu bytes, %s: %d of %d layers accelerated", n,
            qd_rt_arena_used(rt), reference ? "reference kernels" : qd_rt_isa_name(used), on,
            qd_rt_layers(rt));
    if (lab)
        fprintf(stderr, ", top-1 %.2f%%", 100.0 * correct / n);
    fprintf(stderr, "\n");
    free(logits), free(abuf), free(arena), free(blob), free(img), free(lab);
    return 0;
}
