/* The firmware: the model from flash (quantlab export-c: model.c), the arena one static buffer
 * of exactly the size the model states, test images from flash. For each image it prints the
 * logits as float bits (the host compares them with its own runtime's) and the SysTick ticks
 * the inference took; then, for one more run with the runtime's per-layer profile, a line a
 * layer ("layer I KERNEL TICKS"); last, one JSON line: images, top-1 correct, arena and stack
 * bytes, ticks, and the SysTick calibration. */
#include <stdint.h>

#include "fw.h"
#include "fmt.h"
#include "runtime/runtime.h"

/* quantlab export-c's output: qd_model, qd_images, qd_labels and QD_MODEL_ARENA,
 * QD_MODEL_CLASSES, QD_MODEL_INPUT, QD_TEST_IMAGES (the build puts its folder on -I) */
#include "model.c"

uint8_t arena[QD_MODEL_ARENA] __attribute__((aligned(16)));
static uint64_t layer_ticks[QD_MODEL_LAYERS];

static char *hex32(char *p, uint32_t v)
{
    for (int s = 28; s >= 0; s -= 4)
        *p++ = "0123456789abcdef"[v >> s & 15];
    return p;
}

int qd_fw_main(void)
{
    qd_rt_t *rt;
    size_t need;
    struct qd_rt_diag d = {0};
    char line[64 + 9 * QD_MODEL_CLASSES + 64];
    qd_rt_err e = qd_rt_load(qd_model, qd_model_len, arena, sizeof arena, &rt, &need, &d);
    if (e) {
        char *p = fw_str(line, "{\"error\":\"");
        p = fw_str(p, qd_rt_err_name(e));
        p = fw_str(p, ": ");
        p = fw_str(fw_str(p, d.msg ? d.msg : ""), "\"}\n");
        *p = 0;
        qd_fw_puts(line);
        return 1;
    }
    uint64_t total = 0, first = 0;
    int correct = 0;
    for (int i = 0; i < QD_TEST_IMAGES; i++) {
        float logits[QD_MODEL_CLASSES];
        uint64_t t0 = qd_fw_ticks();
        qd_rt_run(rt, qd_images + (size_t)i * QD_MODEL_INPUT, logits);
        uint64_t dt = qd_fw_ticks() - t0;
        total += dt;
        first = i ? first : dt;
        int best = 0;
        char *p = line;
        for (int k = 0; k < QD_MODEL_CLASSES; k++) {
            union { float f; uint32_t u; } v = {logits[k]};
            p = hex32(p, v.u);
            *p++ = k + 1 < QD_MODEL_CLASSES ? ' ' : '\n';
            best = logits[k] > logits[best] ? k : best;
        }
        *p = 0;
        qd_fw_puts(line);
        correct += best == qd_labels[i];
    }
    char *p;
    qd_rt_set_profile(rt, layer_ticks, qd_fw_ticks);
    float logits[QD_MODEL_CLASSES];
    qd_rt_run(rt, qd_images, logits);
    qd_rt_set_profile(rt, NULL, NULL);
    for (int i = 0; i < qd_rt_layers(rt); i++) {
        p = fw_dec(fw_str(line, "layer "), (uint64_t)i);
        p = fw_str(fw_str(fw_str(p, " "), qd_rt_node_kernel(rt, i)), " ");
        p = fw_str(fw_dec(p, layer_ticks[i]), "\n");
        *p = 0;
        qd_fw_puts(line);
    }
    p = fw_str(line, "{\"images\":");
    p = fw_dec(p, QD_TEST_IMAGES);
    p = fw_dec(fw_str(p, ",\"correct\":"), (uint64_t)correct);
    p = fw_dec(fw_str(p, ",\"arena_bytes\":"), qd_rt_arena_used(rt));
    p = fw_dec(fw_str(p, ",\"arena_stated\":"), QD_MODEL_ARENA);
    p = fw_dec(fw_str(p, ",\"stack_bytes\":"), qd_fw_stack_used());
    p = fw_dec(fw_str(p, ",\"ticks_total\":"), total);
    p = fw_dec(fw_str(p, ",\"ticks_first\":"), first);
    /* SysTick against a loop of known length: 2 instructions an iteration */
    p = fw_dec(fw_str(p, ",\"calib_instructions\":"), 2u * 1000000u);
    p = fw_dec(fw_str(p, ",\"calib_ticks\":"), qd_fw_calibrate(1000000u));
    p = fw_str(p, "}\n");
    *p = 0;
    qd_fw_puts(line);
    return 0;
}
