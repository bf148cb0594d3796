/* Retention: keeps the state directory bounded whatever the fleet reports. Every sweep_s
 * ([retention] in the config), on the loop:
 *   - versions past versions_max per device are deleted, except each device's current one,
 *     the last it acked before it (rollback's default target) and its pinned one;
 *   - decisions and events past their age or count are deleted;
 *   - a blob (its row, its file in models/, its slot in memory) that none of those kept
 *     versions names, that no device holds as current and no decision job holds, is removed;
 *   - files in models/ that nothing knows (a build whose decision never became a version),
 *     an hour old, are removed;
 *   - the directory's size (SQLite files and models/) is measured for stats and metrics.
 * The database work is one transaction; memory and files change only after it commits, so a
 * failure or a kill -9 leaves rows that name files that exist. Each statement is capped
 * (SWEEP_LIMIT rows): a large backlog goes over several sweeps. */
#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "daemon/daemon_impl.h"

#define SWEEP_LIMIT 2000
#define ORPHAN_AGE_S 3600

struct sweep {
    struct qd_daemon *d;
    char (*gone)[65]; /* shas to remove once the transaction commits */
    int ngone, cap;
};

static void add_gone(struct sweep *w, const char *sha)
{
    if (w->ngone == w->cap) {
        int cap = w->cap ? 2 * w->cap : 64;
        char(*g)[65] = realloc(w->gone, cap * sizeof *g);
        if (!g)
            return; /* (a later sweep) */
        w->gone = g, w->cap = cap;
    }
    snprintf(w->gone[w->ngone++], 65, "%s", sha);
}

static void on_blob(void *ctx, const char *sha, int kept)
{
    struct sweep *w = ctx;
    int i = qdd_blob_by_sha(w->d, sha);
    long gen = w->d->sweep_gen;
    if (i < 0) {
        if (!kept)
            add_gone(w, sha);
        return;
    }
    uv_mutex_lock(&w->d->blob_mu);
    struct qdd_blob *b = qdd_blob(w->d, i);
    if (kept)
        b->kept = gen;
    else if (b->kept != gen && !b->held && !b->rebuilding) {
        b->kept = -gen; /* listed */
        add_gone(w, sha);
    }
    uv_mutex_unlock(&w->d->blob_mu);
}

/* The database part, in one transaction: what to keep, what to delete. */
static qd_err sweep_db(struct qd_daemon *d, struct sweep *w)
{
    const struct qd_config *c = &d->cfg;
    const struct qd_state_retain r = {.versions_max = c->versions_max,
                                      .decisions_max = c->decisions_max,
                                      .events_max = c->events_max,
                                      .decisions_ms = (int64_t)(c->decisions_days * 86400e3),
                                      .events_ms = (int64_t)(c->events_days * 86400e3),
                                      .limit = SWEEP_LIMIT};
    QD_TRY(qd_state_keep_begin(d->st));
    for (int i = 0; i < d->ndev; i++) {
        struct qdd_dev *x = d->devs[i];
        struct qdd_settings s;
        qdd_settings_of(d, x, &s);
        if (s.pin > 0)
            QD_TRY(qd_state_keep_pin(d->st, x->id, s.pin));
        if (x->blob >= 0) /* (its current version's: kept below as well) */
            qdd_blob(d, x->blob)->kept = d->sweep_gen;
    }
    struct qd_state_pruned p;
    QD_TRY(qd_state_prune(d->st, &r, &p));
    QD_TRY(qd_state_blobs_kept(d->st, SWEEP_LIMIT, on_blob, w));
    /* blobs in memory only (built, never a version) or of rows not reached above */
    uv_mutex_lock(&d->blob_mu);
    for (int i = 0; i < d->nblob && w->ngone < SWEEP_LIMIT; i++) {
        struct qdd_blob *b = qdd_blob(d, i);
        if (b && b->kept != d->sweep_gen && b->kept != -d->sweep_gen && !b->held && !b->rebuilding)
            add_gone(w, b->sha);
    }
    uv_mutex_unlock(&d->blob_mu);
    for (int k = 0; k < w->ngone; k++)
        QD_TRY(qd_state_blob_forget(d->st, w->gone[k]));
    d->n_pruned_versions += p.versions;
    d->n_pruned_decisions += p.decisions;
    d->n_pruned_events += p.events;
    return QD_OK;
}

static void unlink_model(struct qd_daemon *d, const char *sha)
{
    char path[1300];
    snprintf(path, sizeof path, "%s/models/%s.qm", d->cfg.state_dir, sha);
    unlink(path);
}

static int64_t file_bytes(const char *dir, const char *name)
{
    char path[1300];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return stat(path, &st) ? 0 : (int64_t)st.st_size;
}

/* models/: orphans removed, sizes summed; with the SQLite files, the state's size. */
static void measure(struct qd_daemon *d)
{
    const char *dir = d->cfg.state_dir;
    int64_t total = file_bytes(dir, "state.db") + file_bytes(dir, "state.db-wal") +
                    file_bytes(dir, "state.db-shm");
    char models[1200];
    snprintf(models, sizeof models, "%s/models", dir);
    DIR *dd = opendir(models);
    struct dirent *e;
    time_t now = time(NULL);
    while (dd && (e = readdir(dd))) {
        size_t n = strlen(e->d_name);
        char path[1600], sha[65];
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", models, e->d_name);
        if (stat(path, &st) || !S_ISREG(st.st_mode))
            continue;
        if (n == 67 && !strcmp(e->d_name + 64, ".qm") && now - st.st_mtime > ORPHAN_AGE_S) {
            snprintf(sha, sizeof sha, "%.64s", e->d_name);
            if (qdd_blob_by_sha(d, sha) < 0 && !qd_state_blob_known(d->st, sha) && !unlink(path))
                continue;
        }
        total += st.st_size;
    }
    if (dd)
        closedir(dd);
    d->state_bytes = total;
}

static void sweep(struct qd_daemon *d)
{
    struct sweep w = {.d = d};
    d->sweep_gen++;
    qd_err e = qd_state_batch_begin(d->st);
    if (!e) {
        e = sweep_db(d, &w);
        /* on a failed statement what ran is still consistent (nothing names what it deleted);
         * memory and files are left as they are until a sweep succeeds */
        qd_err c = qd_state_batch_commit(d->st);
        e = e ? e : c;
    }
    if (e) {
        qd_log(QD_LOG_WARN, "retention: %s (the next sweep tries again)", qd_errmsg());
        free(w.gone);
        return;
    }
    for (int k = 0; k < w.ngone; k++) {
        /* under blob_mu: a job that builds the same model again adds it to memory under the
         * lock, then writes its file again if it is gone (jobs.c) */
        uv_mutex_lock(&d->blob_mu);
        int i = qdd_smap_get(&d->blob_by_sha, w.gone[k]);
        if (i < 0 || qdd_blob_drop_locked(d, i)) { /* (held meanwhile: a decision names it) */
            unlink_model(d, w.gone[k]);
            d->n_pruned_blobs++;
        }
        uv_mutex_unlock(&d->blob_mu);
    }
    free(w.gone);
    measure(d);
    d->n_sweep++;
}

void qdd_retain_tick(struct qd_daemon *d, int64_t now_ms)
{
    if (d->cfg.sweep_s <= 0 || now_ms < d->sweep_at_ms || atomic_load(&d->phase) != QDD_PH_READY)
        return;
    d->sweep_at_ms = now_ms + (int64_t)(d->cfg.sweep_s * 1e3);
    sweep(d);
}
