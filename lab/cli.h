/* quantlab's command line, shared by its files: the parsed arguments and the helpers every
 * command uses (lab/quantlab.c parses and dispatches; lab/cmd_quant.c holds the quantization
 * commands). */
#ifndef QD_LAB_CLI_H
#define QD_LAB_CLI_H

#include <cjson/cJSON.h>

#include "core/err.h"

struct qd_cli_args {
    const char *model, *data, *dir, *out, *ckpt, *optim, *mode, *policy, *calib, *models,
        *ckpt_dir, *device, *supernet, *gate, *target;
    double flash, ram, latency, energy, battery;
    int steps, contexts, hidden, sandwich, lowest_every, probe, bn_sets;
    double kd;
    int sens_n, hessian, do_eval, points, randoms, bn_batches;
    int calib_n, limit, qat_epochs, simulate, isa;
    int epochs, batch, threads, depth, augment, noeval, json, subset, kd_self, project;
    long max_batches, batches;
    float lr, wd, momentum, width, warmup;
    long seed;
    int set_epochs, set_lr, set_wd, set_mom, set_warm;
};

/* Prints "quantlab: " fmt (with what) and the usage to stderr; returns 2 (a usage error). */
int qd_cli_bad(const char *fmt, const char *what);
/* Prints the error and its message; returns 1. */
int qd_cli_fail(qd_err e);
/* Prints o as one line of JSON and frees it. */
void qd_cli_print_json(cJSON *o);
/* Training progress, an epoch a line (or a JSON object with json): qd_train's callback. */
struct qd_epoch_stats;
struct qd_cli_train_ctx {
    int json;
    const char *model, *data;
};
void qd_cli_on_epoch(const struct qd_epoch_stats *s, void *p);

/* The quantization commands (lab/cmd_quant.c): quantize, run, export-c. */
int qd_cmd_quantize(struct qd_cli_args *a);
int qd_cmd_run(struct qd_cli_args *a);
int qd_cmd_export_c(struct qd_cli_args *a, const char *model);

#endif
