/* Device profiles: a real part's flash, RAM, clock, supported bitwidths and its cost
 * coefficients, read from an INI file in etc/devices/ (or any path).
 *
 * Usage:
 *     struct qd_device d;
 *     if (qd_device_load("cortex-m4", &d)) die(qd_errmsg());   // name or path
 *     if (d.wbits_ok[4]) ...                                   // supports 4-bit weights
 *
 * Sizes accept k/M/G suffixes (powers of 1024). A missing key is an error naming it; an
 * unknown key or a bad value is an error naming the file, line and key. Names are looked up in
 * $QD_DEVICE_DIR, then etc/devices under the working directory, then under the directory
 * above the executable's. */
#ifndef QD_POLICY_DEVICE_H
#define QD_POLICY_DEVICE_H

#include "core/err.h"

struct qd_device {
    char name[64], description[160], path[512];
    double flash, ram;                   /* bytes */
    double reserved_flash, reserved_ram; /* taken by firmware and runtime: budgets are the rest */
    double clock_mhz;
    int wbits_ok[17], abits_ok[17];      /* [bits] != 0: supported */
    int weights_in_ram;                  /* the model is loaded into RAM (weights count) */
    /* cycles per MAC: mac_cycles[w] at weight bits w with 8-bit activations, times act16 for
     * 16-bit activations (act16_w16 when the weights are 16-bit too), times depthwise for
     * depthwise convolutions (depthwise_16 when weights or activations are 16-bit); per byte
     * moved; per layer; per output element of layers without MACs (pools, adds, clamps) at 8
     * and at 16 bits. Optional keys default to: act16_w16 = act16, depthwise_16 = depthwise,
     * per_element_16 = per_element * act16. per_output(_16): per output element of layers with
     * MACs (requantization), at 8 and 16-bit activations or weights; default 0. */
    double mac_cycles[17], act16, act16_w16, depthwise, depthwise_16;
    double per_byte, per_layer, per_element, per_element_16, per_output, per_output_16;
    /* cycles per weight byte per pass, where a layer's weights are read once per output row
     * and tile of tile_pixels pixels (SIMD kernels that keep a tile in registers); default 0 */
    double weight_pass, tile_pixels;
    double pj_mac[17], pj_byte; /* energy per MAC at each weight bitwidth; per byte moved */
};

qd_err qd_device_load(const char *name_or_path, struct qd_device *d);
/* The profiles of real parts in etc/devices (not `host`), QD_DEVICE_PARTS of them: what fleets
 * are simulated over and gates are trained across. */
#define QD_DEVICE_PARTS 6
extern const char *const qd_device_parts[QD_DEVICE_PARTS];
/* "512k" -> 524288; plain numbers are bytes. */
qd_err qd_parse_size(const char *s, double *bytes);

#endif
