/* A per-layer bitwidth policy: weight and activation bits for every quantizable layer (conv and
 * dense, in model order).
 *
 * Usage:
 *     struct qd_policy p;
 *     if (qd_policy_parse("8,4,4/16,2", 4, &p)) die(qd_errmsg());  // W or W/A per layer
 *     qd_policy_parse("4", 4, &p);                                  // one entry: uniform
 *     char txt[512]; qd_policy_format(&p, txt, sizeof txt);         // "8,4,4/16,2"
 *     cJSON *j = qd_policy_to_json(&p);                             // {"weights":[..],"activations":[..]}
 *
 * Activation bits default to 8. Bits are 2..16 here; a mode or device narrows them further. */
#ifndef QD_QUANT_POLICY_H
#define QD_QUANT_POLICY_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "nn/model.h"

#define QD_POLICY_MAX 512

struct qd_policy {
    int n;
    uint8_t wbits[QD_POLICY_MAX];
    uint8_t abits[QD_POLICY_MAX];
};

/* The quantizable layers of m (conv and dense node indices, in order); returns their count. */
int qd_policy_layers(const struct qd_model *m, int *nodes);
void qd_policy_uniform(struct qd_policy *p, int n, int wbits, int abits);
/* `text` is the policy itself or the path of a file holding it; n = the model's layer count. */
qd_err qd_policy_parse(const char *text, int n, struct qd_policy *p);
qd_err qd_policy_format(const struct qd_policy *p, char *buf, size_t len);
cJSON *qd_policy_to_json(const struct qd_policy *p);
qd_err qd_policy_from_json(const cJSON *j, int n, struct qd_policy *p);

#endif
