/* quantlab calibrate-host: measures the host profile's latency coefficients (see calibrate.c).
 *
 * Usage:
 *     struct qd_calibrate_opts o = {.out = "etc/devices/host.ini", .images = 50};
 *     if (qd_calibrate_host(&o)) ...   // prints measured vs predicted latency per model
 */
#ifndef QD_LAB_CALIBRATE_H
#define QD_LAB_CALIBRATE_H

#include "core/err.h"

struct qd_calibrate_opts {
    const char *out; /* the profile to write */
    const char *cpu; /* a description for its comment */
    int images;      /* timed images per model and policy */
};

qd_err qd_calibrate_host(const struct qd_calibrate_opts *o);

#endif
