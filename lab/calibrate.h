/* quantlab calibrate-host: measures the host profile's latency coefficients (see calibrate.c).
 *
 * Usage:
 *     struct qd_calibrate_opts o = {.out = "etc/devices/host.ini", .images = 50};
 *     if (qd_calibrate_host(&o)) ...   // prints measured vs predicted latency per model
 */
#ifndef QD_LAB_CALIBRATE_H
#define QD_LAB_CALIBRATE_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

struct qd_calibrate_opts {
    const char *out; /* the profile to write */
    const char *cpu; /* a description for its comment */
    int images;      /* timed images per model and policy */
};

qd_err qd_calibrate_host(const struct qd_calibrate_opts *o);

/* quantlab calibrate-device (calibrate_device.c): the same for a Cortex-M profile, from
 * per-layer instruction counts under QEMU (scripts/mcu_run.sh), into its [mcu_kernels]. */
struct qd_calibrate_device_opts {
    const char *target; /* cortex-m4 or cortex-m7: the profile etc/devices/TARGET.ini */
    const char *out;    /* the profile to write (default: the target's own) */
    const char *runner; /* default scripts/mcu_run.sh */
};

qd_err qd_calibrate_device(const struct qd_calibrate_device_opts *o);

/* Shared by both: weighted non-negative least squares over nf <= 64 features (rows of x,
 * stride doubles apart), and a synthetic dataset of random pixels. */
void qd_lab_nnls(const double *x, size_t stride, const double *y, const double *wt, int n, int nf,
                 double *coef);
struct qd_dataset;
struct qd_model;
struct qd_igraph;
struct qd_range;
void qd_lab_synth(struct qd_dataset *ds, int n, int c, int hw, uint64_t seed);
/* The five families the calibrations measure (custom on 1x28x28, the others on 3x32x32),
 * family f built with initial weights, its inference graph and activation ranges from
 * synthetic images (*rg: malloc'd). On error nothing is left to free. */
extern const char *const qd_lab_families[5];
qd_err qd_lab_family(int f, struct qd_model *m, struct qd_igraph *g, struct qd_dataset *ds,
                     struct qd_range **rg);

#endif
