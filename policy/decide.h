/* The decider: one loaded backbone (a float checkpoint, its inference graph, its per-layer
 * sensitivity and calibrated activation ranges) that answers "which policy for this device
 * under these budgets" with the exact search, and builds the chosen policy's .qm. Shared by
 * `quantlab search|pareto` and by quantd.
 *
 * Usage:
 *     struct qd_decider d;
 *     struct qd_decider_opts o = {.ckpt = "runs/m.qdck", .dir = "data", .sens_n = 1000};
 *     if (qd_decider_load(&o, &d)) die(qd_errmsg());      // sensitivity cached in <ckpt>.sens.json
 *     struct qd_decide_tables t;
 *     qd_decide_prepare(&d, &dev, &t);                     // per device profile, reusable
 *     struct qd_decision r;
 *     if (qd_decide(&d, &t, budget, &r) == QD_EBUDGET) puts(qd_errmsg());  // names the budget
 *     uint8_t *blob; size_t len;
 *     qd_decider_build(&d, &r.policy, &blob, &len);        // malloc'd .qm
 *     qd_decide_tables_fini(&t); qd_decider_fini(&d);
 *
 * Once loaded, qd_decide and qd_decider_build only read the decider, so any number of threads
 * may call them at once. The objective is the measured sensitivity (loss increase per layer
 * and bitwidth; the Hessian estimate with .hessian); activations are tried at every width the
 * device supports (8, 16) and the better optimum wins. */
#ifndef QD_POLICY_DECIDE_H
#define QD_POLICY_DECIDE_H

#include "nn/data.h"
#include "nn/model.h"
#include "nn/train.h"
#include "policy/cost.h"
#include "policy/device.h"
#include "policy/sens.h"
#include "quant/igraph.h"
#include "quant/qm.h"

struct qd_decider_opts {
    const char *ckpt, *data, *dir; /* data: NULL = the checkpoint's set */
    int sens_n;                    /* validation images (the training set's last); 0 = 1000 */
    int hessian;                   /* also the Hessian estimate; objective = Hessian */
    int calib_n;                   /* activation calibration images; 0 = 1024 */
    int keep_train;                /* keep the training set loaded (BatchNorm recalibration) */
    int quiet;                     /* no progress lines on stderr */
};

struct qd_decider {
    struct qd_model m;
    struct qd_norm nm;
    struct qd_igraph g;
    struct qd_dataset tr, val; /* val: a view of tr's last sens_n images; freed unless keep_train */
    struct qd_sens s;
    struct qd_range *ranges; /* (g.n + 1) calibrated activation ranges of g */
    char ds[32];             /* the data set name */
    char md5[33];            /* of the checkpoint file */
    int hessian, have_m, have_g, have_tr, have_s;
    long max_nodes; /* the exact search's node limit (QD_DECIDE_MAX_NODES; 0: none) */
};

/* A decision's search stops after this many nodes (about 0.1-0.5 s) with its best policy,
 * not proven optimal (qd_decision.r.proven = 0): no context can hold a worker for long. */
#define QD_DECIDE_MAX_NODES 4000000L

qd_err qd_decider_load(const struct qd_decider_opts *o, struct qd_decider *d);
void qd_decider_fini(struct qd_decider *d);

/* Cost tables of one device at each activation width it supports. */
struct qd_decide_tables {
    struct qd_device dev;
    struct qd_cost_table t[2]; /* 8-bit, 16-bit activations */
    int have[2];
    struct qd_costs int8; /* the uniform int8 model's figures on this device */
    double lo[QD_BUDGET_COUNT], hi[QD_BUDGET_COUNT]; /* smallest and largest achievable figure
                                                        of each dimension, over every policy */
};
qd_err qd_decide_prepare(const struct qd_decider *d, const struct qd_device *dev,
                         struct qd_decide_tables *t);
void qd_decide_tables_fini(struct qd_decide_tables *t);

/* The energy budget a battery level allows on a device: at or below `floor` the smallest energy
 * any policy needs, rising linearly to the largest at a full battery (quantd's rule). */
double qd_decide_battery_energy(const struct qd_decide_tables *t, double battery, double floor);

struct qd_decision {
    struct qd_policy policy;
    struct qd_search_result r; /* r.cost: the search's additive figures */
    struct qd_costs costs;     /* the cost model's figures of the policy */
    double predicted_loss;     /* float validation loss + the summed objective */
};
/* budget: (QD_BUDGET_COUNT) bytes, ms, mJ, bytes; INFINITY for none. QD_EBUDGET when nothing
 * fits: the message names the first budget that cannot be met and the smallest achievable
 * figure, and r->r.cost holds the smallest achievable figure of each dimension. */
qd_err qd_decide(const struct qd_decider *d, const struct qd_decide_tables *t, const double *budget,
                 struct qd_decision *r);
/* The same search with another objective: objw (L, 17) the cost of layer l at weight bits b
 * (objw[l * 17 + b]), obja (2) a constant added at 8- and 16-bit activations (NULL: 0). The
 * gate's decisions use its negative log-probabilities here. */
qd_err qd_decide_with(const struct qd_decider *d, const struct qd_decide_tables *t,
                      const double *budget, const double *objw, const double *obja,
                      struct qd_decision *r);
/* What an operator may ask of a decision beyond the budgets: the weight bitwidths allowed (bit b
 * of wbits set: b bits allowed; 0: every width the device supports) and a floor on the
 * predicted accuracy (NAN: none). */
struct qd_decide_limits {
    unsigned wbits;
    double floor;
};
/* The predicted accuracy of a policy: the float model's plus each layer's measured change at its
 * width (the sensitivity's accuracy table, additive like the loss); NAN without sensitivity. */
double qd_decide_accuracy(const struct qd_decider *d, const struct qd_policy *p);
/* qd_decide_with under limits (NULL: none). Disallowed widths never enter the search; when the
 * optimum predicts an accuracy below the floor, the decision is the most accurate policy within
 * the budgets instead (an exact search on the accuracy drop), and QD_EBUDGET naming the floor
 * when even that one is below it. A floor needs the sensitivity (QD_EINVAL without). */
qd_err qd_decide_limited(const struct qd_decider *d, const struct qd_decide_tables *t,
                         const double *budget, const double *objw, const double *obja,
                         const struct qd_decide_limits *lim, struct qd_decision *r);
/* qd_decide (the sensitivity objective) under limits. */
qd_err qd_decide_under(const struct qd_decider *d, const struct qd_decide_tables *t,
                       const double *budget, const struct qd_decide_limits *lim,
                       struct qd_decision *r);
/* The .qm of policy p (activations calibrated once at load). */
qd_err qd_decider_build(const struct qd_decider *d, const struct qd_policy *p, uint8_t **blob,
                        size_t *len);

#endif
