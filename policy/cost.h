/* Cost model: what a policy costs on a device. flash = the exact .qm size (qd_qm_size);
 * RAM = the runtime planner's exact arena size (plus the whole model where the device loads
 * weights into RAM); latency and energy from the profile's coefficients and each layer's MACs
 * and bytes moved. Also the per-layer tables the exact search needs: flash, latency and energy
 * are sums over layers (a test checks flash equals the built file for random policies), and
 * the arena depends only on the activation bits, so for one activation bitwidth it is a
 * constant.
 *
 * Usage:
 *     struct qd_costs c;
 *     qd_cost_policy(&g, &policy, &dev, &c);          // c.flash, c.ram, c.latency_ms, ...
 *     struct qd_cost_table t;                          // options: the device's weight bits
 *     qd_cost_table_build(&g, &dev, 8, &t);            // t.cost (L, K, QD_BUDGET_COUNT)
 *     ... struct qd_search s = {.L = t.L, .K = t.K, .cost = t.cost, ...}; s.base = t.base
 *     qd_cost_table_fini(&t);
 */
#ifndef QD_POLICY_COST_H
#define QD_POLICY_COST_H

#include "policy/device.h"
#include "policy/search.h"
#include "quant/igraph.h"
#include "quant/policy.h"

struct qd_costs {
    double flash, ram, latency_ms, energy_mj; /* bytes, bytes, ms, mJ */
    double arena;                             /* the runtime arena alone */
    double macs;
};

qd_err qd_cost_policy(const struct qd_igraph *g, const struct qd_policy *p,
                      const struct qd_device *d, struct qd_costs *c);

struct qd_cost_table {
    int L, K, abits;
    int wbits[4];                  /* option k = weight bits wbits[k] */
    double *cost;                  /* (L, K, QD_BUDGET_COUNT) */
    double base[QD_BUDGET_COUNT];  /* figures independent of the weight bits */
};

qd_err qd_cost_table_build(const struct qd_igraph *g, const struct qd_device *d, int abits,
                           struct qd_cost_table *t);
void qd_cost_table_fini(struct qd_cost_table *t);

/* Features of igraph node i under the host kernel model (d's [kernels] geometry) at weight
 * bits w and input activation bits a: x (QD_KF_COUNT), whose dot product with d->kcoef is
 * its cycles. quantlab calibrate-host fits kcoef on the same features. */
void qd_cost_kernel_features(const struct qd_igraph *g, int i, int w, int a,
                             const struct qd_device *d, double *x);

/* Features of igraph node i under the microcontroller kernel model (d's [mcu_kernels]) at
 * weight bits w, input activation bits a and output bits o (16-bit outputs take int64 bias,
 * hence the reference kernel): x (QD_MF_COUNT), whose dot product with d->mcoef is its
 * instructions. quantlab calibrate-device fits mcoef on the same features. */
void qd_cost_mcu_features(const struct qd_igraph *g, int i, int w, int a, int o, double *x);

/* MACs of igraph node i for one sample (0 for ops without weights). */
double qd_cost_node_macs(const struct qd_igraph *g, int i);

#endif
