/* Calibration of activation ranges: runs the inference graph in float over a representative set
 * and records every tensor's range.
 *
 * Usage:
 *     struct qd_range *r = calloc(g.n + 1, sizeof *r);
 *     qd_calibrate(&g, &train, 1024, QD_CALIB_MINMAX, 0, r);
 */
#ifndef QD_QUANT_CALIB_H
#define QD_QUANT_CALIB_H

#include "nn/data.h"
#include "quant/igraph.h"
#include "quant/qm.h"
#include "quant/quantize.h"

/* `count` samples spread evenly over ds; pct for QD_CALIB_PERCENTILE; bits/scheme for MSE. */
qd_err qd_calibrate(const struct qd_igraph *g, const struct qd_dataset *ds, int count,
                    enum qd_calib how, double pct, struct qd_range *ranges);

#endif
