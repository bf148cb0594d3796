/* The backbone, on the thread pool at start: the checkpoint (and gate) named in the config, or
 * the embedded default trained on the first start (backbone, then supernet, then gate, each
 * saved in the state directory and reused after). Then the decider (sensitivity, calibration);
 * the completion on the loop restores this backbone's blobs and turns the daemon ready. Health
 * reports the phase and epoch as it goes (atomics: the loop reads them). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "daemon/daemon_impl.h"
#include "nn/ckpt.h"
#include "nn/kernels.h"
#include "nn/zoo.h"

static void on_epoch(const struct qd_epoch_stats *s, void *ctx)
{
    struct qd_daemon *d = ctx;
    atomic_store(&d->epoch, s->epoch);
    qd_log(QD_LOG_INFO, "backbone: epoch %d/%d loss %.4f train %.2f%%", s->epoch, s->epochs,
           s->loss, 100 * s->train_acc);
}

static qd_err train_backbone(struct qd_daemon *d, const char *out)
{
    struct qd_config *c = &d->cfg;
    struct qd_dataset tr = {0};
    struct qd_model m = {0};
    char *spec = NULL;
    QD_TRY(qd_data_load(c->data_dir, c->data, 1, &tr));
    if (c->train_subset && c->train_subset < tr.n)
        tr.n = c->train_subset;
    struct qd_zoo_opts zo = {0};
    qd_err e = qd_zoo_spec(c->model, tr.c, tr.h, tr.w, 10, &zo, &spec);
    if (!e)
        e = qd_model_parse(spec, &m);
    free(spec);
    if (!e) {
        qd_model_init_params(&m, 1);
        struct qd_train_opts o;
        qd_train_opts_default(&o, tr.name);
        o.epochs = c->train_epochs;
        o.threads = c->threads;
        atomic_store(&d->epochs, o.epochs);
        struct qd_norm nm;
        qd_norm_fit(&tr, &nm);
        qd_log(QD_LOG_INFO, "backbone: training %s on %s (%d images, %d epochs)", c->model, tr.name,
               tr.n, o.epochs);
        e = qd_train(&m, &tr, NULL, &nm, &o, on_epoch, d);
        if (!e)
            e = qd_ckpt_save(out, &m, tr.name, &nm);
        qd_model_fini(&m);
    }
    qd_dataset_fini(&tr);
    return e;
}

/* The embedded default's supernet: the backbone fine-tuned over sampled policies. */
static qd_err train_supernet(struct qd_daemon *d, const char *from, const char *out)
{
    struct qd_model m;
    struct qd_norm nm;
    char ds[32];
    QD_TRY(qd_ckpt_load(from, &m, ds, &nm));
    struct qd_dataset tr = {0};
    qd_err e = qd_data_load(d->cfg.data_dir, ds, 1, &tr);
    if (!e) {
        if (d->cfg.train_subset && d->cfg.train_subset < tr.n)
            tr.n = d->cfg.train_subset;
        atomic_store(&d->epoch, 0);
        atomic_store(&d->epochs, d->cfg.supernet_epochs);
        struct qd_supernet_opts o = {.epochs = d->cfg.supernet_epochs,
                                     .threads = d->cfg.threads,
                                     .seed = 3,
                                     .sandwich = d->cfg.supernet_sandwich,
                                     .kd = (float)d->cfg.supernet_kd,
                                     .kd_self = d->cfg.supernet_kd_self,
                                     .bn_sets = d->cfg.supernet_bn_sets};
        qd_log(QD_LOG_INFO, "supernet: fine-tuning %s over sampled policies (%d epochs)", m.family,
               o.epochs);
        e = qd_supernet_train(&m, &nm, &tr, NULL, &o, on_epoch, d);
        if (!e)
            e = qd_ckpt_save(out, &m, tr.name, &nm);
        qd_dataset_fini(&tr);
    }
    qd_model_fini(&m);
    return e;
}

void qdd_boot_work(uv_work_t *w)
{
    struct qd_daemon *d = w->data;
    char ckpt[1200], gate[1200] = "";
    qd_kernels_init(d->cfg.threads);
    qd_err e = QD_OK;
    if (d->cfg.ckpt[0]) { /* artifacts named in the config */
        snprintf(ckpt, sizeof ckpt, "%s", d->cfg.ckpt);
        snprintf(gate, sizeof gate, "%s", d->cfg.gate);
    } else { /* the embedded default, trained on the first start: backbone, supernet, gate */
        char base[1200];
        snprintf(base, sizeof base, "%s/backbone.qdck", d->cfg.state_dir);
        snprintf(ckpt, sizeof ckpt, "%s", base);
        if (access(base, R_OK)) {
            atomic_store(&d->phase, QDD_PH_TRAINING);
            e = train_backbone(d, base);
        }
        if (!e && d->cfg.supernet_epochs > 0) {
            snprintf(ckpt, sizeof ckpt, "%s/supernet.qdck", d->cfg.state_dir);
            if (access(ckpt, R_OK)) {
                atomic_store(&d->phase, QDD_PH_SUPERNET);
                e = train_supernet(d, base, ckpt);
            }
        }
        if (!e && d->cfg.gate_steps > 0)
            snprintf(gate, sizeof gate, "%s/backbone.gate", d->cfg.state_dir);
    }
    if (!e) {
        atomic_store(&d->phase, QDD_PH_SENSITIVITY);
        struct qd_decider_opts o = {.ckpt = ckpt,
                                    .dir = d->cfg.data_dir,
                                    .sens_n = d->cfg.sens_n,
                                    .calib_n = d->cfg.calib_n,
                                    .quiet = 1,
                                    .keep_train = gate[0] != 0};
        e = qd_decider_load(&o, &d->dec);
    }
    if (!e && gate[0] && !d->cfg.ckpt[0] && access(gate, R_OK)) {
        atomic_store(&d->phase, QDD_PH_GATE);
        struct qd_gate_train_opts o = {.steps = d->cfg.gate_steps,
                                       .threads = d->cfg.threads,
                                       .probe = d->cfg.gate_probe,
                                       .seed = 5,
                                       .profiles = qd_device_parts,
                                       .nprofiles = QD_DEVICE_PARTS};
        qd_log(QD_LOG_INFO, "gate: training over sampled contexts (%d steps)", o.steps);
        struct qd_gate g;
        e = qd_gate_train(&g, &d->dec, &o);
        if (!e) {
            snprintf(g.ckpt, sizeof g.ckpt, "%.255s", ckpt);
            e = qd_gate_save(&g, gate);
            qd_gate_fini(&g);
        }
    }
    if (!e && gate[0]) {
        e = qd_gate_load(gate, &d->gate);
        if (!e && d->gate.L != d->dec.g.nq)
            e = qd_seterr(QD_EINVAL, "%s has %d layers, the backbone %d", gate, d->gate.L,
                          d->dec.g.nq);
        if (!e && strcmp(d->gate.backbone, d->dec.md5))
            qd_log(QD_LOG_WARN, "%s was trained for another supernet (%s, not %s)", gate,
                   d->gate.backbone, d->dec.md5);
        char path[1300];
        snprintf(path, sizeof path, "%s.bn", ckpt);
        if (!e)
            e = qd_bn_cache_open(&d->bn, path, d->dec.m.nstat, d->dec.md5);
        d->have_gate = !e;
    }
    if (e)
        snprintf(d->phase_msg, sizeof d->phase_msg, "%s: %s", qd_err_name(e), qd_errmsg());
    else
        snprintf(d->backbone_id, sizeof d->backbone_id, "%s", d->dec.md5);
}

void qdd_boot_done(uv_work_t *w, int status)
{
    struct qd_daemon *d = w->data;
    d->boot_running = 0;
    if (d->phase_msg[0]) {
        atomic_store(&d->phase, QDD_PH_FAILED);
        qd_log(QD_LOG_ERROR, "backbone: %s", d->phase_msg);
        qd_state_event(d->st, NULL, "backbone-failed", d->phase_msg);
        qdd_maybe_finish_stop(d);
        return;
    }
    /* blobs of this backbone, so identical policies keep their blob across restarts */
    if (qd_state_blobs_load(d->st, d->backbone_id, qdd_blob_restore, d))
        qd_log(QD_LOG_WARN, "%s", qd_errmsg());
    atomic_store(&d->phase, QDD_PH_READY);
    qd_state_event(d->st, NULL, "backbone-ready", d->backbone_id);
    qd_log(QD_LOG_INFO, "backbone ready: %s on %s, %d layers (%s); decisions by the %s",
           d->dec.m.family, d->dec.ds, d->dec.g.nq, d->backbone_id,
           d->have_gate ? "gate" : "sensitivity search");
    qd_sd_notify("STATUS=ready");
    qdd_maybe_finish_stop(d);
}
