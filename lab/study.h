/* quantlab study: fp32 and the four post-training modes for each model family on one dataset,
 * with size, runtime accuracy and speed, as markdown, CSV and a gnuplot size-vs-accuracy plot.
 *
 * Usage:
 *     struct qd_study_opts o = {.data = "cifar10", .models = "custom,resnet_v1", .epochs = 1,
 *                               .limit = 2000, .threads = 2, .ckpt_dir = "runs/study",
 *                               .out_dir = "docs/study", .dir = "data"};
 *     if (qd_study_run(&o, "quantlab study --data cifar10")) ...   // qd_errmsg() says why
 *
 * Checkpoints are <ckpt_dir>/<family>-<data>.qdck; a missing one is trained for `epochs`. */
#ifndef QD_LAB_STUDY_H
#define QD_LAB_STUDY_H

#include "core/err.h"

struct qd_study_opts {
    const char *data, *models, *ckpt_dir, *out_dir, *dir;
    int epochs, limit, threads;
    int subset; /* train missing checkpoints on the first N training images (0: all) */
};

qd_err qd_study_run(const struct qd_study_opts *o, const char *cmdline);

#endif
