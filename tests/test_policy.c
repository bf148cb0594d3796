/* Policy: the exact search against brute force on every instance small enough to enumerate
 * (with and without a caller's upper bound on the objective),
 * device profiles, and the cost model against built models. */
#include "testutil.h"

#include <dirent.h>

#include "core/file.h"
#include "policy/cost.h"
#include "policy/decide.h"
#include "policy/device.h"
#include "policy/search.h"
#include "quant/rtsize.h"
#include "quantfix.h"

#define D QD_BUDGET_COUNT

struct inst {
    int L, K;
    double obj[8 * 4], cost[8 * 4 * D];
    struct qd_search s;
};

/* Random instance: L layers, K options; flash in whole bytes, the rest real; 1-3 of the four
 * budgets set between the cheapest and the dearest figure; some options unsupported. */
static void random_inst(struct qd_rng *r, struct inst *in)
{
    in->L = 1 + (int)qd_rng_below(r, 8), in->K = 4;
    memset(&in->s, 0, sizeof in->s);
    for (int l = 0; l < in->L; l++)
        for (int k = 0; k < in->K; k++) {
            int off = l * in->K + k;
            in->obj[off] = qd_rng_below(r, 3) ? qd_rng_uniform(r) : (double)qd_rng_below(r, 4);
            in->cost[off * D + QD_BUDGET_FLASH] = (double)(100 + qd_rng_below(r, 5000));
            in->cost[off * D + QD_BUDGET_LATENCY] = 10 * qd_rng_uniform(r);
            in->cost[off * D + QD_BUDGET_ENERGY] = qd_rng_uniform(r) * qd_rng_uniform(r);
            in->cost[off * D + QD_BUDGET_RAM] = (double)qd_rng_below(r, 300);
            if (k && qd_rng_below(r, 12) == 0) /* an unsupported bitwidth */
                in->obj[off] = INFINITY;
        }
    in->s.L = in->L, in->s.K = in->K, in->s.obj = in->obj, in->s.cost = in->cost;
    for (int d = 0; d < D; d++) {
        in->s.base[d] = d == QD_BUDGET_FLASH ? 96 : d == QD_BUDGET_RAM ? 4096 : 0.5;
        in->s.budget[d] = INFINITY;
    }
    int nb = 1 + (int)qd_rng_below(r, 3);
    for (int b = 0; b < nb; b++) {
        int d = (int)qd_rng_below(r, D);
        double lo = in->s.base[d], hi = in->s.base[d];
        for (int l = 0; l < in->L; l++) {
            double mn = INFINITY, mx = 0;
            for (int k = 0; k < in->K; k++) {
                mn = fmin(mn, in->cost[(l * in->K + k) * D + d]);
                mx = fmax(mx, in->cost[(l * in->K + k) * D + d]);
            }
            lo += mn, hi += mx;
        }
        double t = qd_rng_uniform(r) * 1.1 - 0.05; /* a few below the cheapest: infeasible */
        in->s.budget[d] = lo + t * (hi - lo);
        if (d == QD_BUDGET_FLASH || d == QD_BUDGET_RAM)
            in->s.budget[d] = floor(in->s.budget[d]);
        int tight = (int)qd_rng_below(r, 4);
        if (tight == 0) { /* exactly the figure of some policy: the budget's edge must fit */
            double c = in->s.base[d];
            for (int l = 0; l < in->L; l++)
                c += in->cost[(l * in->K + (int)qd_rng_below(r, in->K)) * D + d];
            in->s.budget[d] = c;
        } else if (tight == 1) { /* exactly the cheapest figure */
            in->s.budget[d] = lo;
        }
    }
}

/* Every choice, costs summed in layer order from the base (as the search sums them). */
static int brute(const struct inst *in, int *best, double *bobj)
{
    int ch[8] = {0}, found = 0;
    long total = 1;
    for (int l = 0; l < in->L; l++)
        total *= in->K;
    for (long code = 0; code < total; code++) {
        long c = code;
        for (int l = 0; l < in->L; l++, c /= in->K)
            ch[l] = (int)(c % in->K);
        double obj = 0, cost[D];
        for (int d = 0; d < D; d++)
            cost[d] = in->s.base[d];
        int ok = 1;
        for (int l = 0; l < in->L && ok; l++) {
            int off = l * in->K + ch[l];
            ok = isfinite(in->obj[off]);
            obj += in->obj[off];
            for (int d = 0; d < D; d++)
                cost[d] += in->cost[off * D + d];
        }
        for (int d = 0; d < D && ok; d++)
            ok = cost[d] <= in->s.budget[d];
        if (ok && (!found || obj < *bobj)) {
            found = 1, *bobj = obj;
            memcpy(best, ch, sizeof ch);
        }
    }
    return found;
}

/* Device names resolve to the source tree's etc/devices. */
static void use_source_devices(void)
{
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/etc/devices", getenv("QD_SOURCE_DIR"));
    setenv("QD_DEVICE_DIR", dir, 1);
}

static void search_equals_brute_force(void **st)
{
    struct qd_rng r;
    qd_rng_seed(&r, 4242);
    int feasible = 0, infeasible = 0;
    for (int t = 0; t < 3000; t++) {
        struct inst in;
        random_inst(&r, &in);
        int want[8], got[8];
        double wobj = 0;
        int found = brute(&in, want, &wobj);
        struct qd_search_result res;
        qd_err e = qd_search_exact(&in.s, got, &res);
        if (!found) {
            if (e != QD_EBUDGET)
                fail_msg("instance %d: brute force finds no policy, search says %s", t,
                         qd_err_name(e));
            assert_true(strstr(qd_errmsg(), "budget") != NULL);
            infeasible++;
            continue;
        }
        if (e)
            fail_msg("instance %d (L=%d): %s", t, in.L, qd_errmsg());
        struct qd_search_result ev;
        qd_search_eval(&in.s, got, &ev);
        for (int d = 0; d < D; d++) {
            assert_true(ev.cost[d] <= in.s.budget[d]);
            assert_true(ev.cost[d] == res.cost[d]);
        }
        if (fabs(ev.obj - wobj) > 1e-12 * (1 + fabs(wobj)))
            fail_msg("instance %d (L=%d): search %.17g, brute force %.17g", t, in.L, ev.obj, wobj);
        /* a caller's upper bound: just above the optimum still finds it, at it finds none */
        struct qd_search up = in.s;
        up.have_upper = 1, up.upper = wobj + 1e-9 * (1 + fabs(wobj));
        if (qd_search_exact(&up, got, &res) || fabs(res.obj - wobj) > 1e-12 * (1 + fabs(wobj)))
            fail_msg("instance %d: with an upper bound above the optimum: %s", t, qd_errmsg());
        up.upper = wobj - 1e-9 * (1 + fabs(wobj));
        if (qd_search_exact(&up, got, &res) != QD_EBUDGET)
            fail_msg("instance %d: a policy below the optimum %.17g: %.17g", t, wobj, res.obj);
        feasible++;
    }
    fprintf(stderr, "%d feasible and %d infeasible instances agree with brute force\n", feasible,
            infeasible);
    assert_true(feasible > 2000 && infeasible > 50);
}

/* A node limit bounds the work: a hard instance stops there with the best policy found so far
 * (within budget, not proven), the same instance without the limit is proven, and a limit
 * reached before any policy fits is QD_ETIMEDOUT. */
static void node_limit_stops_the_search(void **st)
{
    struct qd_rng r;
    qd_rng_seed(&r, 99);
    enum { L = 24, K = 4 };
    double obj[L * K], cost[L * K * D];
    for (int l = 0; l < L; l++) /* near-ties everywhere: many nodes */
        for (int k = 0; k < K; k++) {
            obj[l * K + k] = 1.0 / (1 + k) + 1e-3 * qd_rng_uniform(&r);
            for (int d = 0; d < D; d++)
                cost[(l * K + k) * D + d] =
                    d == QD_BUDGET_RAM ? 0 : (1 + k) * (1 + qd_rng_uniform(&r));
        }
    struct qd_search s = {.L = L, .K = K, .obj = obj, .cost = cost};
    for (int d = 0; d < D; d++)
        s.budget[d] = d == QD_BUDGET_RAM ? INFINITY : 2.5 * L;
    int ch[L];
    struct qd_search_result full, lim;
    assert_int_equal(qd_search_exact(&s, ch, &full), QD_OK);
    assert_true(full.proven && full.states > 200);
    s.max_nodes = full.states / 4;
    qd_err e = qd_search_exact(&s, ch, &lim);
    if (e == QD_ETIMEDOUT) {
        assert_non_null(strstr(qd_errmsg(), "nodes"));
    } else {
        assert_int_equal(e, QD_OK);
        assert_false(lim.proven);
        assert_true(lim.states <= s.max_nodes && lim.obj >= full.obj);
        for (int d = 0; d < D; d++)
            assert_true(lim.cost[d] <= s.budget[d]);
    }
    s.max_nodes = 1; /* a policy must be found by the heuristics, or none at all */
    e = qd_search_exact(&s, ch, &lim);
    assert_true(e == QD_ETIMEDOUT || (e == QD_OK && !lim.proven && lim.obj >= full.obj));
}

/* The error names the budget that cannot be met and the smallest achievable figure. */
static void infeasible_budget_is_named(void **st)
{
    double obj[2 * 2] = {0, 1, 0, 1}, cost[2 * 2 * D] = {0};
    for (int l = 0; l < 2; l++)
        for (int k = 0; k < 2; k++)
            cost[(l * 2 + k) * D + QD_BUDGET_FLASH] = k ? 100 : 400;
    struct qd_search s = {.L = 2, .K = 2, .obj = obj, .cost = cost};
    for (int d = 0; d < D; d++)
        s.budget[d] = INFINITY;
    s.base[QD_BUDGET_FLASH] = 50;
    s.budget[QD_BUDGET_FLASH] = 249;
    int ch[2];
    struct qd_search_result r;
    assert_int_equal(qd_search_exact(&s, ch, &r), QD_EBUDGET);
    assert_non_null(strstr(qd_errmsg(), "flash"));
    assert_non_null(strstr(qd_errmsg(), "250"));
    s.budget[QD_BUDGET_FLASH] = 250;
    assert_int_equal(qd_search_exact(&s, ch, &r), QD_OK);
    assert_true(ch[0] == 1 && ch[1] == 1 && r.cost[QD_BUDGET_FLASH] == 250);
    s.budget[QD_BUDGET_FLASH] = 550; /* one layer can stay at its better option */
    assert_int_equal(qd_search_exact(&s, ch, &r), QD_OK);
    assert_true(r.obj == 1 && r.cost[QD_BUDGET_FLASH] == 550);
}

/* Every profile in etc/devices loads, describes a real part (RAM, flash, clock, costs), and
 * names its sources; broken files are rejected with the key and line. */
static void device_profiles_load_and_bad_ones_are_named(void **st)
{
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/etc/devices", getenv("QD_SOURCE_DIR"));
    DIR *dp = opendir(dir);
    assert_non_null(dp);
    int n = 0;
    struct dirent *de;
    while ((de = readdir(dp))) {
        if (!strstr(de->d_name, ".ini"))
            continue;
        char p[2048];
        snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
        struct qd_device d;
        if (qd_device_load(p, &d))
            fail_msg("%s: %s", p, qd_errmsg());
        assert_true(d.flash > d.reserved_flash && d.ram > d.reserved_ram && d.clock_mhz > 0);
        assert_true(d.wbits_ok[8] && d.abits_ok[8] && d.mac_cycles[8] > 0 && d.pj_mac[8] > 0);
        char *text = NULL;
        size_t len;
        assert_int_equal(qd_file_read(p, (uint8_t **)&text, &len), QD_OK);
        assert_non_null(strstr(text, "Sources")); /* a comment says where the figures come from */
        free(text);
        n++;
    }
    closedir(dp);
    assert_true(n >= 6);
    setenv("QD_DEVICE_DIR", dir, 1);
    struct qd_device d;
    assert_int_equal(qd_device_load("cortex-m4", &d), QD_OK);
    assert_true(d.flash == 512 * 1024 && d.ram == 128 * 1024 && !d.weights_in_ram);
    assert_int_equal(qd_device_load("no-such-board", &d), QD_ENOENT);
    static const char *bad[][2] = {
        {"[device]\nflsh = 1k\n", "flsh"},
        {"[device]\nflash = 12q\n", "flash"},
        {"[device]\nflash = 1M\nram = 1k\nclock_mhz = 10\nweight_bits = 3\n", "weight_bits"},
        {"[device]\nflash = 1M\nram = 1k\nclock_mhz = 10\nweight_bits = 8\nact_bits = 8\n",
         "missing key mac_w2"},
        {"[gpu]\nx = 1\n", "unknown section"},
        {"[kernels]\nsimd_tile = 16,12\n", "simd_tile"},
        {"[device]\nflash = 1M\nram = 1k\nclock_mhz = 10\nweight_bits = 8\nact_bits = 8\n"
         "[cycles]\nmac_w2 = 1\nmac_w4 = 1\nmac_w8 = 1\nmac_w16 = 1\n[energy]\n"
         "pj_per_mac_w2 = 1\npj_per_mac_w4 = 1\npj_per_mac_w8 = 1\npj_per_mac_w16 = 1\n"
         "[kernels]\nsimd_lanes = 16\nsimd_mac = 0.01\n",
         "simd_tile"},
    };
    for (int i = 0; i < 7; i++) {
        char p[1024];
        snprintf(p, sizeof p, "%s/bad%d.ini", tmpdir(), i);
        FILE *f = fopen(p, "w");
        fputs(bad[i][0], f);
        fclose(f);
        assert_int_equal(qd_device_load(p, &d), QD_EFORMAT);
        if (!strstr(qd_errmsg(), bad[i][1]))
            fail_msg("%s: message \"%s\" does not name %s", bad[i][0], qd_errmsg(), bad[i][1]);
    }
    double v;
    assert_int_equal(qd_parse_size("1.5M", &v), QD_OK);
    assert_true(v == 1.5 * 1024 * 1024);
    assert_int_equal(qd_parse_size("10x", &v), QD_EINVAL);
    assert_int_equal(qd_parse_size("-1", &v), QD_EINVAL);
}

/* The cost tables the search sums equal the real figures: flash = the built file's size, RAM =
 * the runtime's arena (plus the model on a weights-in-RAM device), latency and energy = the
 * policy's own cost, for random policies on every family. */
static void cost_tables_equal_built_models(void **st)
{
    use_source_devices();
    struct qd_device dev[3];
    assert_int_equal(qd_device_load("cortex-m4", &dev[0]), QD_OK);
    assert_int_equal(qd_device_load("cortex-a53", &dev[1]), QD_OK);
    assert_int_equal(qd_device_load("host", &dev[2]), QD_OK); /* the host kernel model */
    assert_true(dev[2].kernels);
    struct qd_rng r;
    qd_rng_seed(&r, 606);
    for (int f = 0; qd_zoo_families[f]; f++) {
        struct fixture fx;
        make(&fx, qd_zoo_families[f], 3, 16, 600 + f);
        for (int di = 0; di < 3; di++)
            for (int ab = 8; ab <= 16; ab += 8) {
                struct qd_cost_table t;
                assert_int_equal(qd_cost_table_build(&fx.g, &dev[di], ab, &t), QD_OK);
                assert_int_equal(t.L, fx.g.nq);
                for (int trial = 0; trial < 4; trial++) {
                    struct qd_policy p;
                    int ch[QD_POLICY_MAX];
                    qd_policy_uniform(&p, t.L, 8, ab);
                    for (int l = 0; l < t.L; l++) {
                        ch[l] = (int)qd_rng_below(&r, t.K);
                        p.wbits[l] = (uint8_t)t.wbits[ch[l]];
                    }
                    double obj[QD_POLICY_MAX * 4] = {0};
                    struct qd_search s = {.L = t.L, .K = t.K, .obj = obj, .cost = t.cost};
                    memcpy(s.base, t.base, sizeof s.base);
                    struct qd_search_result sum;
                    qd_search_eval(&s, ch, &sum);
                    struct qd_costs c;
                    assert_int_equal(qd_cost_policy(&fx.g, &p, &dev[di], &c), QD_OK);
                    /* the real thing: build it, load it */
                    struct qd_qm_build b = {&fx.g, &p, QD_QMODE_MIXED, fx.rg, 1, "x"};
                    uint8_t *blob;
                    size_t len, need;
                    assert_int_equal(qd_qm_build(&b, &blob, &len), QD_OK);
                    assert_int_equal(qd_rt_arena_size(blob, len, &need), QD_OK);
                    free(blob);
                    if (sum.cost[QD_BUDGET_FLASH] != (double)len || c.flash != (double)len)
                        fail_msg("%s: flash table %.0f, policy %.0f, built %zu", fx.m.family,
                                 sum.cost[QD_BUDGET_FLASH], c.flash, len);
                    double ram = (double)need + (dev[di].weights_in_ram ? (double)len : 0);
                    if (sum.cost[QD_BUDGET_RAM] != ram || c.ram != ram)
                        fail_msg("%s: RAM table %.0f, policy %.0f, real %.0f", fx.m.family,
                                 sum.cost[QD_BUDGET_RAM], c.ram, ram);
                    assert_true(fabs(sum.cost[QD_BUDGET_LATENCY] - c.latency_ms) <=
                                1e-9 * c.latency_ms);
                    assert_true(fabs(sum.cost[QD_BUDGET_ENERGY] - c.energy_mj) <=
                                1e-9 * c.energy_mj);
                    assert_true(c.latency_ms > 0 && c.energy_mj > 0);
                }
                /* more weight bits never take less flash */
                for (int l = 0; l < t.L; l++)
                    for (int k = 1; k < t.K; k++)
                        assert_true(t.cost[((size_t)l * t.K + k) * QD_BUDGET_COUNT] >=
                                    t.cost[((size_t)l * t.K + k - 1) * QD_BUDGET_COUNT]);
                qd_cost_table_fini(&t);
            }
        unmake(&fx);
    }
}

/* Energy follows each part's arithmetic: on the MCUs and CPUs int8's SIMD path is the
 * cheapest (sub-byte weights must be unpacked), on the bit-serial FPGA overlay energy falls with
 * every bit removed. */
static void energy_follows_the_parts_arithmetic(void **st)
{
    use_source_devices();
    struct fixture fx;
    make(&fx, "custom", 3, 16, 77);
    static const char *parts[] = {"cortex-m4", "raspberry-pi-4", "pynq-z1"};
    for (int di = 0; di < 3; di++) {
        struct qd_device d;
        assert_int_equal(qd_device_load(parts[di], &d), QD_OK);
        double e[17];
        for (int b = 2; b <= 16; b *= 2) {
            struct qd_policy p;
            qd_policy_uniform(&p, fx.g.nq, b, 8);
            struct qd_costs c;
            assert_int_equal(qd_cost_policy(&fx.g, &p, &d, &c), QD_OK);
            e[b] = c.energy_mj;
        }
        int serial = !strcmp(parts[di], "pynq-z1");
        int ok = serial ? e[2] < e[4] && e[4] < e[8] && e[8] < e[16] && e[2] < 0.4 * e[8]
                        : e[8] < e[2] && e[8] < e[4] && e[8] < e[16];
        if (!ok)
            fail_msg("%s: energy at 2/4/8/16 bits %.4g %.4g %.4g %.4g mJ", parts[di], e[2], e[4],
                     e[8], e[16]);
    }
    unmake(&fx);
}

/* The host kernel model's features follow the runtime's kernels: the SIMD kernel's dot
 * products cover every MAC of the padded layer exactly, its tile calls are one per tile of
 * each output row and block group, each loading the group's weights; the reference and
 * depthwise features are the layer's MACs; and a policy's latency is the dot product with the
 * profile's coefficients, its energy that time at the profile's watts. */
static void host_kernel_features_follow_the_kernels(void **st)
{
    use_source_devices();
    struct qd_device d;
    assert_int_equal(qd_device_load("host", &d), QD_OK);
    assert_true(d.kernels && d.k_lanes > 0 && d.k_group > 0 && d.k_watts > 0);
    for (int f = 0; qd_zoo_families[f]; f++) {
        struct fixture fx;
        make(&fx, qd_zoo_families[f], 3, 16, 700 + f);
        struct qd_policy p;
        qd_policy_uniform(&p, fx.g.nq, 8, 8);
        double ns = 0;
        for (int i = 0; i < fx.g.n; i++) {
            const struct qd_inode *n = &fx.g.nodes[i];
            double x[QD_KF_COUNT], macs = qd_cost_node_macs(&fx.g, i);
            qd_cost_kernel_features(&fx.g, i, 8, 8, &d, x);
            for (int k = 0; k < QD_KF_COUNT; k++) {
                assert_true(x[k] >= 0);
                ns += x[k] * d.kcoef[k];
            }
            if (n->qidx < 0)
                continue;
            int dense = n->op == QD_IOP_DENSE, dw = !dense && n->groups > 1;
            if (dw) {
                assert_true(x[QD_KF_DW_MAC8] == macs && x[QD_KF_SIMD_MAC] == 0);
            } else {
                int C = dense ? n->in_len : n->cin, K = dense ? 1 : n->k;
                int OH = dense ? 1 : n->h, OW = dense ? 1 : n->w;
                int cp = (C + d.k_group - 1) / d.k_group * d.k_group;
                int coutp = (n->c + d.k_lanes - 1) / d.k_lanes * d.k_lanes;
                double padded = (double)OH * OW * coutp * K * K * cp;
                assert_true(x[QD_KF_SIMD_MAC] * d.k_lanes * d.k_group == padded);
                assert_true(padded >= macs);
                int groups = (coutp / d.k_lanes + 3) / 4;
                assert_true(x[QD_KF_SIMD_CALL] >= (double)OH * groups);
                assert_true(x[QD_KF_SIMD_CALL] <= (double)OH * OW * groups);
                /* a call loads at most 4 blocks' weights, at least one block's */
                double per_call = (double)K * K * (cp / d.k_group);
                assert_true(x[QD_KF_SIMD_WLOAD] <= 4 * per_call * x[QD_KF_SIMD_CALL]);
                assert_true(x[QD_KF_SIMD_WLOAD] >= per_call * x[QD_KF_SIMD_CALL]);
            }
            /* the same layer with 16-bit weights runs the reference kernel */
            qd_cost_kernel_features(&fx.g, i, 16, 8, &d, x);
            assert_true(x[dw ? QD_KF_REF_DW_MAC : QD_KF_REF_MAC] == macs &&
                        x[QD_KF_SIMD_MAC] == 0 && x[QD_KF_REF_LAYER] == 1);
        }
        struct qd_costs c;
        assert_int_equal(qd_cost_policy(&fx.g, &p, &d, &c), QD_OK);
        assert_true(fabs(c.latency_ms - ns * 1e-6) <= 1e-9 * c.latency_ms);
        assert_true(fabs(c.energy_mj - c.latency_ms * 1e-3 * d.k_watts * 1e3) <=
                    1e-9 * c.energy_mj);
        unmake(&fx);
    }
}

/* The decider: its answer fits every budget, its figures equal the cost model's and the built
 * file's, it is the search's optimum over both activation widths, and an impossible budget is
 * QD_EBUDGET with the smallest figures. The decider is assembled from a fixture (no data). */
static void decide_fits_and_reports_exact_figures(void **st)
{
    use_source_devices();
    struct qd_rng r;
    qd_rng_seed(&r, 77);
    const char *fams[] = {"custom", "resnet_v1"};
    const char *devs[] = {"cortex-m4", "esp32", "raspberry-pi-4"};
    for (int f = 0; f < 2; f++) {
        struct fixture fx;
        make(&fx, fams[f], 3, 16, 900 + f);
        struct qd_decider d = {0};
        d.g = fx.g;
        d.ranges = fx.rg;
        snprintf(d.m.family, sizeof d.m.family, "%s", fams[f]);
        assert_int_equal(qd_sens_alloc(&d.s, fx.g.nq), QD_OK);
        d.have_s = 1;
        for (int l = 0; l < fx.g.nq; l++)
            for (int b = 2; b <= 16; b *= 2)
                d.s.dloss[l][b] = (16.0 / b) * (0.01 + qd_rng_uniform(&r));
        for (int di = 0; di < 3; di++) {
            struct qd_device dev;
            assert_int_equal(qd_device_load(devs[di], &dev), QD_OK);
            struct qd_decide_tables t;
            assert_int_equal(qd_decide_prepare(&d, &dev, &t), QD_OK);
            for (int trial = 0; trial < 6; trial++) {
                double b[QD_BUDGET_COUNT];
                for (int k = 0; k < QD_BUDGET_COUNT; k++)
                    b[k] = t.lo[k] + qd_rng_uniform(&r) * (t.hi[k] - t.lo[k]);
                if (trial == 0)
                    for (int k = 0; k < QD_BUDGET_COUNT; k++)
                        b[k] = INFINITY;
                struct qd_decision x;
                qd_err e = qd_decide(&d, &t, b, &x);
                if (e == QD_EBUDGET) {
                    assert_true(trial > 0);
                    continue;
                }
                assert_int_equal(e, QD_OK);
                struct qd_costs c;
                assert_int_equal(qd_cost_policy(&fx.g, &x.policy, &dev, &c), QD_OK);
                assert_true(c.flash == x.costs.flash && c.ram == x.costs.ram);
                assert_true(fabs(c.latency_ms - x.costs.latency_ms) <= 1e-9 * c.latency_ms);
                assert_true(fabs(c.energy_mj - x.costs.energy_mj) <= 1e-9 * c.energy_mj);
                assert_true(c.arena == x.costs.arena);
                assert_true(c.flash <= b[QD_BUDGET_FLASH] && c.ram <= b[QD_BUDGET_RAM] &&
                            c.latency_ms <= b[QD_BUDGET_LATENCY] * (1 + 1e-9) &&
                            c.energy_mj <= b[QD_BUDGET_ENERGY] * (1 + 1e-9));
                uint8_t *blob;
                size_t len;
                assert_int_equal(qd_decider_build(&d, &x.policy, &blob, &len), QD_OK);
                assert_true((double)len == x.costs.flash);
                free(blob);
                /* no better policy at either width: the search's optimum at each */
                double obj = 0;
                for (int l = 0; l < fx.g.nq; l++)
                    obj += d.s.dloss[l][x.policy.wbits[l]];
                assert_true(fabs(obj - x.r.obj) <= 1e-9 * fabs(obj) + 1e-12);
                assert_true(fabs(x.predicted_loss - (d.s.loss0 + obj)) <= 1e-9);
            }
            /* below the smallest flash: EBUDGET, naming it, with the smallest figures */
            double b[QD_BUDGET_COUNT] = {t.lo[QD_BUDGET_FLASH] - 1, INFINITY, INFINITY, INFINITY};
            struct qd_decision x;
            assert_int_equal(qd_decide(&d, &t, b, &x), QD_EBUDGET);
            assert_non_null(strstr(qd_errmsg(), "flash"));
            assert_true(x.r.cost[QD_BUDGET_FLASH] == t.lo[QD_BUDGET_FLASH]);
            qd_decide_tables_fini(&t);
        }
        qd_sens_fini(&d.s);
        unmake(&fx);
    }
}

/* Limits on a decision (qd_decide_limited): only the allowed weight widths are ever chosen and
 * the optimum among them is found; under an accuracy floor the decision keeps it, and it is
 * QD_EBUDGET naming the floor exactly when no policy within the budgets keeps it (brute force
 * over every policy of a 5-layer fixture at both activation widths). */
static void decide_limits_keep_widths_and_floor(void **st)
{
    use_source_devices();
    struct qd_rng r;
    qd_rng_seed(&r, 91);
    struct fixture fx;
    make(&fx, "custom", 3, 16, 905);
    struct qd_decider d = {0};
    d.g = fx.g;
    d.ranges = fx.rg;
    snprintf(d.m.family, sizeof d.m.family, "custom");
    int L = fx.g.nq;
    assert_int_equal(qd_sens_alloc(&d.s, L), QD_OK);
    d.have_s = 1;
    d.s.acc0 = 0.9;
    for (int l = 0; l < L; l++)
        for (int b = 2; b <= 16; b *= 2) {
            d.s.dloss[l][b] = (16.0 / b) * (0.01 + qd_rng_uniform(&r));
            d.s.acc[l][b] = d.s.acc0 - (16.0 / b) * 0.004 * qd_rng_uniform(&r);
        }
    struct qd_device dev;
    assert_int_equal(qd_device_load("esp32", &dev), QD_OK);
    struct qd_decide_tables t;
    assert_int_equal(qd_decide_prepare(&d, &dev, &t), QD_OK);
    int checked_floor = 0, refused = 0, n = 1;
    for (int l = 0; l < L; l++)
        n *= 4;
    double *flash = malloc(2 * (size_t)n * sizeof *flash); /* every policy's, once (the oracle) */
    assert_non_null(flash);
    for (int a = 0; a < 2; a++)
        for (int code = 0; code < n; code++) {
            struct qd_policy p;
            qd_policy_uniform(&p, L, 8, a ? 16 : 8);
            int ok = t.have[a], c = code;
            for (int l = 0; l < L; l++, c /= 4) {
                p.wbits[l] = (uint8_t)(2 << (c % 4));
                ok &= dev.wbits_ok[p.wbits[l]];
            }
            struct qd_costs cs;
            flash[a * n + code] = ok && !qd_cost_policy(&fx.g, &p, &dev, &cs) ? cs.flash : INFINITY;
        }
    for (int trial = 0; trial < 40; trial++) {
        double b[QD_BUDGET_COUNT] = {INFINITY, INFINITY, INFINITY, INFINITY};
        b[QD_BUDGET_FLASH] = t.lo[QD_BUDGET_FLASH] +
                             qd_rng_uniform(&r) * (t.hi[QD_BUDGET_FLASH] - t.lo[QD_BUDGET_FLASH]);
        struct qd_decide_limits lim = {.wbits = trial % 2 ? (1u << 4) | (1u << 8) : 0,
                                       .floor = trial % 2 ? NAN : 0.9 - 0.02 * qd_rng_uniform(&r)};
        /* brute force: the best objective among allowed policies, the best accuracy */
        double best_obj = INFINITY, best_acc = -INFINITY;
        for (int a = 0; a < 2; a++)
            for (int code = 0; code < n; code++) {
                struct qd_policy p;
                qd_policy_uniform(&p, L, 8, a ? 16 : 8);
                int ok = flash[a * n + code] <= b[QD_BUDGET_FLASH], c = code;
                double obj = 0;
                for (int l = 0; l < L; l++, c /= 4) {
                    int w = 2 << (c % 4);
                    ok &= !lim.wbits || (lim.wbits & (1u << w));
                    p.wbits[l] = (uint8_t)w;
                    obj += d.s.dloss[l][w];
                }
                if (!ok)
                    continue;
                best_obj = fmin(best_obj, obj);
                best_acc = fmax(best_acc, qd_decide_accuracy(&d, &p));
            }
        struct qd_decision x;
        qd_err e = qd_decide_under(&d, &t, b, &lim, &x);
        if (!isinf(best_acc) && !isnan(lim.floor) && best_acc < lim.floor) {
            assert_int_equal(e, QD_EBUDGET);
            assert_non_null(strstr(qd_errmsg(), "accuracy_floor"));
            refused++;
            continue;
        }
        if (isinf(best_obj)) {
            assert_int_equal(e, QD_EBUDGET);
            continue;
        }
        assert_int_equal(e, QD_OK);
        assert_true(x.costs.flash <= b[QD_BUDGET_FLASH]);
        for (int l = 0; l < L; l++)
            assert_true(!lim.wbits || (lim.wbits & (1u << x.policy.wbits[l])));
        if (lim.wbits) /* the optimum among the allowed widths */
            assert_true(fabs(x.r.obj - best_obj) <= 1e-9 * fabs(best_obj) + 1e-12);
        else {
            assert_true(qd_decide_accuracy(&d, &x.policy) >= lim.floor);
            checked_floor++;
        }
    }
    assert_true(checked_floor > 0 && refused > 0); /* both sides of the floor were seen */
    free(flash);
    qd_decide_tables_fini(&t);
    qd_sens_fini(&d.s);
    unmake(&fx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(search_equals_brute_force),
        cmocka_unit_test(host_kernel_features_follow_the_kernels),
        cmocka_unit_test(node_limit_stops_the_search),
        cmocka_unit_test(infeasible_budget_is_named),
        cmocka_unit_test(device_profiles_load_and_bad_ones_are_named),
        cmocka_unit_test(cost_tables_equal_built_models),
        cmocka_unit_test(energy_follows_the_parts_arithmetic),
        cmocka_unit_test(decide_fits_and_reports_exact_figures),
        cmocka_unit_test(decide_limits_keep_widths_and_floor),
    };
    return cmocka_run_group_tests(tests, tmpdir_setup, tmpdir_teardown);
}
