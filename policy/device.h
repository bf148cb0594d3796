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

/* Features of the host kernel model, and the [kernels] keys of their coefficients. */
#define QD_KF_MAP(X)                                                                               \
    X(SIMD_CALL, "simd_call")               /* tile calls */                                      \
    X(SIMD_WLOAD, "simd_weight_load")       /* weight vectors loaded by the tiles */              \
    X(SIMD_MAC, "simd_mac")                 /* dot-product instructions */                       \
    X(SIMD_PREP, "simd_prep")               /* padded input bytes laid out per pixel */           \
    X(SIMD_OUT, "simd_output")              /* outputs requantized */                             \
    X(FAST_LAYER, "fast_layer")             /* per SIMD or depthwise layer */                     \
    X(DW_MAC2, "dw_mac_w2")                 /* depthwise MACs by weight bits */                   \
    X(DW_MAC4, "dw_mac_w4")                                                                        \
    X(DW_MAC8, "dw_mac_w8")                                                                        \
    X(DW_OUT, "dw_output")                                                                         \
    X(DW_CHAN, "dw_channel")                                                                       \
    X(DW_ROW, "dw_row")                     /* output rows of all channels */                     \
    X(DW_IN, "dw_input")                    /* input elements read (outputs x stride^2) */        \
    X(REF_MAC, "ref_mac")                   /* reference kernels (16-bit weights or inputs) */    \
    X(REF_ROW, "ref_row")                   /* MACs / taps: (output, input channel) pairs */      \
    X(REF_DW_MAC, "ref_dw_mac")                                                                    \
    X(REF_OUT, "ref_output")                                                                       \
    X(REF_LAYER, "ref_layer")                                                                      \
    X(ELEM_LAYER, "elem_layer")             /* layers without MACs, 8-bit */                      \
    X(ELEM_LAYER16, "elem_layer_16")                                                               \
    X(ADD, "add")                           /* per output */                                      \
    X(ADD16, "add_16")                                                                             \
    X(POOL, "pool")                         /* pools and clamps, per output */                    \
    X(POOL16, "pool_16")
#define QD_KF_ENUM(name, key) QD_KF_##name,
enum { QD_KF_MAP(QD_KF_ENUM) QD_KF_COUNT };
#undef QD_KF_ENUM
extern const char *const qd_kf_keys[QD_KF_COUNT];

/* Features of the microcontroller kernel model (the runtime's kernels on a Cortex-M with the
 * DSP extension: runtime/rt_dsp.c, else the portable ones), and the [mcu_kernels] keys of
 * their coefficients (instructions each; quantlab calibrate-device fits them under QEMU). */
#define QD_MF_MAP(X)                                                                               \
    X(DSP_W8, "dsp_word_w8")          /* weight words x channel pairs x pixel pairs, 8-bit */     \
    X(DSP_W4, "dsp_word_w4")                                                                       \
    X(DSP_W2, "dsp_word_w2")                                                                       \
    X(DSP_PASS, "dsp_pass")           /* channel pairs x pixel pairs: sums stored */             \
    X(DSP_COL, "dsp_column")          /* column values built, pixel pairs x padded row */        \
    X(DSP_BORDER, "dsp_border")       /* of them, in pairs whose window crosses the border */    \
    X(DSP_IN, "dsp_input")            /* input values centred, table entries, unpacked weights */ \
    X(DSP_LAYER, "dsp_layer")                                                                      \
    X(S8_MAC, "s8_mac")               /* portable fast kernel (rt_conv_s8_fast) */               \
    X(S8_ROW, "s8_row")               /* its row passes: (channel, tap, output row) */           \
    X(S8_UNPACK8, "s8_unpack_w8")     /* weights unpacked per run: 8-bit */                      \
    X(S8_UNPACK, "s8_unpack")         /* sub-byte and 16-bit */                                  \
    X(S8_OUT, "s8_output")                                                                         \
    X(S8_LAYER, "s8_layer")                                                                        \
    X(REF_MAC, "ref_mac")             /* reference kernel (16-bit activations or weights) */    \
    X(REF_KX, "ref_kx_loop")          /* its kx loops: MACs / K */                              \
    X(REF_CI, "ref_ci_loop")          /* its ci loops: MACs / K^2 */                            \
    X(REF_UNPACK, "ref_unpack")       /* weights unpacked per run */                             \
    X(REF_OUT, "ref_output")                                                                       \
    X(MAXPOOL_IN, "maxpool_input")    /* 8-bit max pooling, per input value */                  \
    X(POOL_TAP, "pool_tap")           /* other pools, per output x window */                    \
    X(ADD8, "add_s8")                 /* 8-bit adds (rt_add_s8), per output */                   \
    X(ELEM, "element")                /* other adds and clamps, per output */                   \
    X(ELEM_LAYER, "element_layer")
#define QD_MF_ENUM(name, key) QD_MF_##name,
enum { QD_MF_MAP(QD_MF_ENUM) QD_MF_COUNT };
#undef QD_MF_ENUM
extern const char *const qd_mf_keys[QD_MF_COUNT];

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
    double pj_mac[17], pj_byte; /* energy per MAC at each weight bitwidth; per byte moved */
    /* Host kernel model (section [kernels], written by quantlab calibrate-host): where present,
     * each layer's cycles are the dot product of kcoef with the features of the runtime's host
     * kernel that runs it (qd_cost_kernel_features: SIMD tile calls, weight vector loads, dot
     * products and input preparation; depthwise per MAC, output, channel, row and input;
     * reference kernels per MAC, per tap row and output; adds and pools per output), instead
     * of the per-MAC model above; energy = time x watts. simd_lanes, simd_group and simd_tile
     * give the SIMD kernel's geometry: output channels per block, input channels per dot
     * product, and pixels per tile when a tile holds 1..4 blocks. */
    int kernels;
    int k_lanes, k_group, k_tile[5];
    double kcoef[QD_KF_COUNT], k_watts;
    /* Microcontroller kernel model (section [mcu_kernels], written by quantlab
     * calibrate-device): where present, each layer's instructions are the dot product of mcoef
     * with qd_cost_mcu_features, and its cycles those instructions times cpi (cycles per
     * instruction: a datasheet estimate, QEMU counts instructions); energy stays the [energy]
     * per-MAC model. */
    int mcu;
    double mcoef[QD_MF_COUNT], cpi;
};

qd_err qd_device_load(const char *name_or_path, struct qd_device *d);
/* The profiles of real parts in etc/devices (not `host`), QD_DEVICE_PARTS of them: what fleets
 * are simulated over and gates are trained across. */
#define QD_DEVICE_PARTS 7
extern const char *const qd_device_parts[QD_DEVICE_PARTS];
/* "512k" -> 524288; plain numbers are bytes. */
qd_err qd_parse_size(const char *s, double *bytes);

#endif
