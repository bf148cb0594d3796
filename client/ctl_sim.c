/* quantctl simulate: a fleet of simulated devices (client/sim.h) against a running quantd.
 * Round 1 registers them at full battery; round 2 drops the battery to 15% and halves the free
 * RAM; with --fleet-ops, round 3 restores round 1's context and caps the flash of half of them
 * (group "half") at 50% of the int8 model, and round 4 rolls that group back. Each table row is a
 * decision: its version, the budget that bound it (the one its figure came closest to, as a share
 * of it), its flash, RAM, latency and energy, its accuracy on the test images and its policy; from
 * round 2 on, each changed device shows the row it had before ("was") above the new one. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "client/quantctl.h"
#include "client/sim.h"
#include "nn/kernels.h"
#include "policy/device.h"
#include "policy/search.h"

/* One device's decision as a row shows it. */
struct fig {
    int64_t ver, pinned;
    double cost[4], budget[4], acc;
    char policy[256];
    int nofit;
    char msg[160];
};

static void snap(const struct qd_sim *s, struct fig *f)
{
    for (int i = 0; i < s->n; i++) {
        const struct qd_sim_dev *d = &s->dev[i];
        f[i].ver = d->want, f[i].pinned = d->pinned, f[i].acc = d->acc, f[i].nofit = d->nofit;
        memcpy(f[i].cost, d->cost, sizeof f[i].cost);
        memcpy(f[i].budget, d->budget, sizeof f[i].budget);
        snprintf(f[i].policy, sizeof f[i].policy, "%s", d->policy);
        snprintf(f[i].msg, sizeof f[i].msg, "%s", d->nofit_msg);
    }
}

static void num(double v, int width, int prec)
{
    if (isfinite(v))
        printf(" %*.*f", width, prec, v);
    else
        printf(" %*s", width, "-");
}

static void row(const char *id, const char *profile, const char *tag, const struct fig *f)
{
    if (f->nofit) {
        printf("%-11s %-15s %-4s keeps version %lld: %s\n", id, profile, tag, (long long)f->ver,
               f->msg);
        return;
    }
    struct qd_sim_dev d = {0};
    memcpy(d.cost, f->cost, sizeof d.cost);
    memcpy(d.budget, f->budget, sizeof d.budget);
    double share;
    int k = qd_sim_binding(&d, &share);
    char bound[32] = "-";
    if (f->pinned)
        snprintf(bound, sizeof bound, "pinned v%lld", (long long)f->pinned);
    else if (k >= 0)
        snprintf(bound, sizeof bound, "%s %.0f%%",
                 k == QD_BUDGET_FLASH     ? "flash"
                 : k == QD_BUDGET_LATENCY ? "latency"
                 : k == QD_BUDGET_ENERGY  ? "energy"
                                          : "ram",
                 100 * share);
    printf("%-11s %-15s %-4s %4lld  %-12s", id, profile, tag, (long long)f->ver, bound);
    num(f->cost[QD_BUDGET_FLASH], 8, 0);
    num(f->cost[QD_BUDGET_RAM], 8, 0);
    num(f->cost[QD_BUDGET_LATENCY], 8, 2);
    num(f->cost[QD_BUDGET_ENERGY], 7, 3);
    printf(" %6.2f  %s\n", 100 * f->acc, f->policy);
}

/* All devices (before NULL), or those whose version changed, each under its earlier row. */
static void table(const struct qd_sim *s, const char *title, const struct fig *before)
{
    struct fig *now = calloc((size_t)s->n, sizeof *now);
    if (!now)
        return;
    snap(s, now);
    printf("\n%s\n%-11s %-15s %-4s %4s  %-12s %8s %8s %8s %7s %6s  %s\n", title, "device",
           "profile", "", "ver", "bound by", "flash", "ram", "lat ms", "mJ", "acc%", "policy");
    for (int i = 0; i < s->n; i++) {
        const struct qd_sim_dev *d = &s->dev[i];
        if (before && now[i].ver == before[i].ver && (!now[i].nofit || before[i].nofit))
            continue; /* unchanged, or still finding no policy that fits */
        if (before && !now[i].nofit)
            row(d->who.id, d->profile, "was", &before[i]);
        row(d->who.id, d->profile, before ? "now" : "", &now[i]);
    }
    free(now);
}

/* Reports each device's context again (its reply: the decision it is under now). */
static qd_err report_all(struct qd_sim *s, const struct qd_client_ctx *ctx, int *nofit)
{
    *nofit = 0;
    for (int i = 0; i < s->n; i++) {
        struct qd_client_ctx c = ctx[i];
        s->dev[i].nofit = 0;
        qd_err e = qd_sim_report(s, i, &c);
        if (e == QD_EBUDGET) { /* an answer, not a failure: the device keeps its model */
            s->dev[i].nofit = 1;
            snprintf(s->dev[i].nofit_msg, sizeof s->dev[i].nofit_msg, "%s", qd_errmsg());
            e = QD_OK;
            ++*nofit;
        }
        if (e)
            return e;
    }
    return QD_OK;
}

static qd_err admin_call(struct qd_sim *s, cJSON *req)
{
    cJSON *r = NULL;
    qd_err e = qd_client_call(&s->c, &s->admin, req, &r, NULL, NULL);
    cJSON_Delete(r);
    return e;
}

/* Until the daemon's re-decisions and jobs are done, then every device holds its version. */
static qd_err settle(struct qd_sim *s, int timeout_ms)
{
    for (int k = 0; k < 600; k++) {
        cJSON *j = cJSON_CreateObject(), *r = NULL;
        cJSON_AddStringToObject(j, "op", "stats");
        QD_TRY(qd_client_call(&s->c, &s->admin, j, &r, NULL, NULL));
        int idle = ctl_num(r, "redo_queued") == 0 && ctl_num(r, "inflight") == 0;
        cJSON_Delete(r);
        if (idle)
            break;
        usleep(50000);
    }
    QD_TRY(qd_sim_refresh(s));
    return qd_sim_collect(s, timeout_ms, 1);
}

/* Rounds 3 and 4: the even devices become group "half"; a flash cap of 50% on it, then its
 * rollback (each device back on the model it acked before, pinned there). */
static qd_err fleet_ops(struct qd_sim *s, const struct args *a, struct fig *before)
{
    cJSON *g = ctl_op("group"), *ids = cJSON_AddArrayToObject(g, "devices");
    cJSON_AddStringToObject(g, "group", "half");
    for (int i = 0; i < s->n; i += 2)
        cJSON_AddItemToArray(ids, cJSON_CreateString(s->dev[i].who.id));
    QD_TRY(admin_call(s, g));
    snap(s, before);
    cJSON *j = ctl_op("set");
    cJSON_AddStringToObject(j, "group", "half");
    cJSON_AddStringToObject(j, "flash", "50%");
    QD_TRY(admin_call(s, j));
    QD_TRY(settle(s, a->timeout * 3));
    int nofit;
    struct qd_client_ctx *full = calloc((size_t)s->n, sizeof *full);
    if (!full)
        return qd_seterr(QD_ENOMEM, "out of memory");
    for (int i = 0; i < s->n; i++) /* round 1's context again: the cap is what differs */
        full[i] = QD_CLIENT_CTX_NONE, full[i].battery = 1.0;
    qd_err e = report_all(s, full, &nofit);
    if (!e)
        e = qd_sim_collect(s, a->timeout * 3, 1);
    if (e) {
        free(full);
        return e;
    }
    table(s,
          "round 3: batteries full and RAM free again, and group \"half\" (every other device) "
          "capped at 50% of the int8 model's flash (quantctl set --group half --flash 50%); "
          "the devices whose model changed",
          before);
    snap(s, before);
    j = ctl_op("rollback");
    cJSON_AddStringToObject(j, "group", "half");
    e = admin_call(s, j);
    if (!e)
        e = settle(s, a->timeout * 3);
    if (!e)
        e = report_all(s, full, &nofit);
    free(full);
    QD_TRY(e);
    table(s,
          "round 4: quantctl rollback --group half: each back on the model it acked before, "
          "pinned there",
          before);
    return QD_OK;
}

static int finish(struct qd_sim *s, struct fig *before, qd_err e)
{
    free(before);
    qd_sim_close(s);
    return e ? ctl_fail(e) : 0;
}

int ctl_simulate(struct args *a)
{
    struct qd_sim_opts o = {.control = a->control,
                            .push = a->push,
                            .data_dir = a->data_dir,
                            .devices = a->devices,
                            .images = a->images,
                            .timeout_ms = a->timeout};
    char key[1100];
    if (a->admin_key)
        snprintf(key, sizeof key, "%s", a->admin_key);
    else
        snprintf(key, sizeof key, "%s/admin.key", a->state_dir ? a->state_dir : "state");
    o.admin_key = key;
    qd_kernels_init(1);
    struct qd_sim s;
    qd_err e = qd_sim_open(&s, &o);
    if (e)
        return ctl_fail(e);
    struct fig *before = calloc((size_t)s.n, sizeof *before);
    struct qd_client_ctx *ctx = calloc((size_t)s.n, sizeof *ctx);
    if (!before || !ctx) {
        free(ctx);
        return finish(&s, before, qd_seterr(QD_ENOMEM, "out of memory"));
    }
    double t0 = qd_sim_now();
    if (!a->json)
        printf("simulate: %d devices over %d profiles, each running its model on %d %s test "
               "images\n",
               s.n, s.o.nprofiles, a->images, s.data);
    e = qd_sim_provision(&s);
    int nofit = 0;
    for (int i = 0; i < s.n; i++) {
        ctx[i] = QD_CLIENT_CTX_NONE;
        ctx[i].battery = 1.0;
    }
    if (!e)
        e = report_all(&s, ctx, &nofit);
    if (!e)
        e = qd_sim_collect(&s, a->timeout * 3, 1);
    double t1 = qd_sim_now();
    if (!e && !a->json)
        table(&s, "round 1: registered, full battery; every model verified, run and acked", NULL);
    double acc1 = 0;
    for (int i = 0; i < s.n; i++)
        acc1 += s.dev[i].acc / s.n;
    snap(&s, before);
    /* context change: battery down to 15%, free RAM halved */
    for (int i = 0; i < s.n; i++) {
        struct qd_device dv;
        ctx[i].battery = 0.15;
        if (!qd_device_load(s.dev[i].profile, &dv))
            ctx[i].free_ram = (dv.ram - dv.reserved_ram) / 2;
    }
    if (!e)
        e = report_all(&s, ctx, &nofit);
    if (!e)
        e = qd_sim_collect(&s, a->timeout * 3, 1);
    double acc2 = 0;
    int changed = 0, nofit2 = nofit;
    for (int i = 0; i < s.n; i++) {
        changed += s.dev[i].want != before[i].ver;
        acc2 += s.dev[i].acc / s.n;
    }
    if (!e && !a->json)
        table(&s, "round 2: battery 15%, free RAM halved; the devices whose model changed", before);
    if (!e && a->fleet_ops)
        e = fleet_ops(&s, a, before);
    free(ctx);
    if (e)
        return finish(&s, before, e);
    if (a->json)
        printf("{\"devices\":%d,\"pushes\":%ld,\"verified\":%ld,\"rejected\":%ld,\"acks\":%ld,"
               "\"changed\":%d,\"nofit\":%d,\"mean_acc_round1\":%.4f,\"mean_acc_round2\":%.4f,"
               "\"round1_s\":%.3f,\"total_s\":%.3f}\n",
               s.n, s.pushes, s.verified, s.rejected, s.acks, changed, nofit2, acc1, acc2, t1 - t0,
               qd_sim_now() - t0);
    else
        printf("\nsummary: %d devices, %ld notifications received (%ld models fetched and "
               "verified, %ld refused), %ld acks; %d decisions changed with the context, %d "
               "found no policy that fits; mean accuracy %.2f%% then %.2f%%; %.1f s\n",
               s.n, s.pushes, s.verified, s.rejected, s.acks, changed, nofit2, 100 * acc1,
               100 * acc2, qd_sim_now() - t0);
    return finish(&s, before, QD_OK);
}
