/* quantd's load benchmark (run by bench/quantd_bench.sh against a running quantd):
 *   decide  K client threads, each a registered device asking `decide` for itself over the
 *           control socket for S seconds: requests/s, p50/p99 latency; then the same K
 *           clients against a bare nanomsg REP echo server on the same transport, in this
 *           process (the peer: what the transport alone allows), and the ratio.
 *   push    N simulated devices get their first models; then each reports a context that
 *           changes its decision, and a receiver thread on its own SUB socket timestamps the
 *           verified pushes: report sent -> model received, p50/p99.
 *   wire    bytes on the wire for a fleet-wide update: N devices get models, then each one's
 *           flash shrinks to 0.9x its model (a policy a few layers narrower) and it fetches
 *           the new one holding the old. Measured: every fetch reply's bytes and the model's
 *           raw, zstd and patched sizes (proto/pack.c, level 3 as the daemon) per device,
 *           alone for those one layer changed. Against broadcast, the delivery before
 *           notify + fetch: PUB filters at the subscriber, so every model went to every
 *           connected device, N x the models' bytes (computed from the measured sizes).
 *   health  `health` every 5 ms on its own connection while K loader threads keep the pool
 *           building: each of N devices (six profiles: the first report of each builds its
 *           cost tables) reports a new free flash (40..100% of its model) again and again, so
 *           decisions change and models are built. Health round trips p50/p99/max against
 *           the same calls on an idle daemon, and the builds done meanwhile (goal: every
 *           health answered within 50 ms).
 *   rss     registers N devices (keys add + hello) and prints quantd's VmRSS.
 *   patch   (no daemon) a checkpoint's models one layer apart: raw, zstd, patch sizes.
 * Usage: quantd_bench patch --ckpt F [--data-dir D]
 *        quantd_bench decide|push|wire|health|rss --control URL [--push URL] --admin-key F [--pid
 * P]
 *        [--clients K] [--seconds S] [--devices N] [--echo URL] */
#include <math.h>
#include <nanomsg/nn.h>
#include <nanomsg/reqrep.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "client/client.h"
#include "client/sim.h"
#include "policy/decide.h"
#include "policy/device.h"
#include "proto/pack.h"
#include "proto/transport.h"

static const char *control, *pushurl, *adminkey, *echo_url = "ipc:///tmp/quantd-bench-echo";
static const char *ckpt, *data_dir = "data";
static int clients = 4, devices = 1000, pid;
static double seconds = 5;

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(double *v, long n, double p)
{
    if (n == 0)
        return NAN;
    long i = (long)(p * (n - 1) + 0.5);
    return v[i];
}

static cJSON *op(const char *name)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "op", name);
    return j;
}

static qd_err provision(struct qd_client *c, struct qd_ident *admin, const char *id,
                        const char *profile, struct qd_ident *who)
{
    for (int attempt = 0; attempt < 2; attempt++) {
        char key[2 * QD_PROTO_KEY_BYTES + 1];
        qd_err e = qd_client_device_key(c, admin, attempt ? "rotate" : "add", id, key);
        if (e == QD_EEXIST)
            continue;
        if (e)
            return e;
        e = qd_ident_init(who, id, key);
        if (e)
            return e;
        if (profile) {
            cJSON *r = NULL;
            e = qd_client_hello(c, who, profile, &r);
            cJSON_Delete(r);
        }
        return e;
    }
    return qd_seterr(QD_EEXIST, "%s", id);
}

struct worker {
    pthread_t t;
    int idx, echo;
    struct qd_ident who;
    double *lat;
    long n, cap, errors;
    volatile int *stop;
};

static void *decide_loop(void *p)
{
    struct worker *w = p;
    struct qd_client c;
    if (qd_client_open(&c, w->echo ? echo_url : control, NULL, 10000)) {
        fprintf(stderr, "bench: %s\n", qd_errmsg());
        return NULL;
    }
    const char *const *profiles = qd_device_parts;
    double battery = 0.3;
    while (!*w->stop) {
        cJSON *j = op("decide");
        cJSON_AddStringToObject(j, "profile", profiles[(w->n + w->idx) % QD_DEVICE_PARTS]);
        battery = battery > 0.95 ? 0.2 : battery + 0.05;
        cJSON_AddNumberToObject(j, "battery", battery);
        double t0 = qd_sim_now();
        qd_err e;
        if (w->echo) { /* the same bytes a signed decide has, echoed back */
            cJSON_AddNumberToObject(j, "v", 1);
            cJSON_AddStringToObject(j, "from", w->who.id);
            cJSON_AddNumberToObject(j, "nonce", (double)qd_proto_now_us());
            char *body = cJSON_PrintUnformatted(j), *m = NULL;
            cJSON_Delete(j);
            qd_proto_seal(body, w->who.key, &m);
            char *rep;
            size_t rn;
            e = qd_client_call_raw(&c, m, strlen(m), &rep, &rn);
            if (!e)
                free(rep);
            free(body);
            free(m);
        } else {
            cJSON *r = NULL;
            e = qd_client_call(&c, &w->who, j, &r, NULL, NULL);
            cJSON_Delete(r);
        }
        double dt = qd_sim_now() - t0;
        if (e) {
            w->errors++;
            if (w->errors < 3)
                fprintf(stderr, "bench: %s: %s\n", qd_err_name(e), qd_errmsg());
            continue;
        }
        if (w->n == w->cap) {
            w->cap = w->cap ? 2 * w->cap : 1 << 16;
            w->lat = realloc(w->lat, w->cap * sizeof *w->lat);
        }
        w->lat[w->n++] = dt;
    }
    qd_client_close(&c);
    return NULL;
}

static void *echo_server(void *p)
{
    int s = nn_socket(AF_SP, NN_REP);
    if (s < 0 || nn_bind(s, echo_url) < 0) {
        fprintf(stderr, "bench: echo bind %s: %s\n", echo_url, nn_strerror(nn_errno()));
        return NULL;
    }
    int to = 200;
    nn_setsockopt(s, NN_SOL_SOCKET, NN_RCVTIMEO, &to, sizeof to);
    volatile int *stop = p;
    while (!*stop) {
        void *b;
        int n = nn_recv(s, &b, NN_MSG, 0);
        if (n < 0)
            continue;
        nn_send(s, &b, NN_MSG, 0);
    }
    nn_close(s);
    return NULL;
}

static void run_clients(struct worker *w, int echo, double *rps, double *p50, double *p99,
                        long *errors)
{
    volatile int stop = 0;
    for (int i = 0; i < clients; i++) {
        w[i].echo = echo;
        w[i].n = w[i].errors = 0;
        w[i].stop = &stop;
        pthread_create(&w[i].t, NULL, decide_loop, &w[i]);
    }
    double t0 = qd_sim_now();
    usleep((useconds_t)(seconds * 1e6));
    stop = 1;
    long total = 0;
    *errors = 0;
    for (int i = 0; i < clients; i++) {
        pthread_join(w[i].t, NULL);
        total += w[i].n;
        *errors += w[i].errors;
    }
    double dt = qd_sim_now() - t0;
    double *all = malloc(sizeof *all * (total ? total : 1));
    long k = 0;
    for (int i = 0; i < clients; i++)
        for (long j = 0; j < w[i].n; j++)
            all[k++] = w[i].lat[j];
    qsort(all, total, sizeof *all, cmp);
    *rps = total / dt;
    *p50 = 1e6 * pct(all, total, 0.5);
    *p99 = 1e6 * pct(all, total, 0.99);
    free(all);
}

static int bench_decide(void)
{
    struct qd_client c;
    struct qd_ident admin;
    if (qd_client_open(&c, control, NULL, 10000) || qd_ident_init(&admin, "admin", adminkey)) {
        fprintf(stderr, "bench: %s\n", qd_errmsg());
        return 1;
    }
    struct worker *w = calloc(clients, sizeof *w);
    for (int i = 0; i < clients; i++) {
        char id[32];
        snprintf(id, sizeof id, "bench-c%02d", i);
        w[i].idx = i;
        if (provision(&c, &admin, id, "esp32", &w[i].who)) {
            fprintf(stderr, "bench: %s: %s\n", id, qd_errmsg());
            return 1;
        }
    }
    qd_client_close(&c);
    volatile int stop_echo = 0;
    pthread_t echo;
    pthread_create(&echo, NULL, echo_server, (void *)&stop_echo);
    usleep(100000);
    double rps, p50, p99, erps, e50, e99;
    long err, eerr;
    run_clients(w, 0, &rps, &p50, &p99, &err);
    run_clients(w, 1, &erps, &e50, &e99, &eerr);
    stop_echo = 1;
    pthread_join(echo, NULL);
    printf("decide, %d clients, %.0f s: quantd %.0f req/s (p50 %.0f us, p99 %.0f us, %ld "
           "errors); bare nanomsg echo %.0f req/s (p50 %.0f us, p99 %.0f us); ratio %.2f\n",
           clients, seconds, rps, p50, p99, err, erps, e50, e99, rps / erps);
    printf("{\"bench\":\"decide\",\"clients\":%d,\"rps\":%.0f,\"p50_us\":%.0f,\"p99_us\":%.0f,"
           "\"errors\":%ld,\"echo_rps\":%.0f,\"echo_p50_us\":%.0f,\"echo_p99_us\":%.0f,"
           "\"ratio\":%.3f}\n",
           clients, rps, p50, p99, err, erps, e50, e99, rps / erps);
    for (int i = 0; i < clients; i++)
        free(w[i].lat);
    free(w);
    return err ? 1 : 0;
}

struct receiver {
    double *t_recv; /* per device, the arrival of its version >= want */
    const int64_t *want;
    struct qd_sim *s;
    volatile int stop;
    long got, rejected, bytes;
    struct qd_client c;
};

/* Notifications, each followed by the fetch of the model it announces (as admin: the main
 * thread's reports use the devices' identities, whose nonces must not race) and its check. */
static void *receive(void *p)
{
    struct receiver *r = p;
    struct qd_ident admin = r->s->admin;
    while (!r->stop) {
        struct qd_proto_note n;
        qd_err e = qd_client_notify_recv(&r->c, 200, &n);
        if (e == QD_ETIMEDOUT)
            continue;
        int i = e ? -1 : atoi(n.id + strlen(r->s->o.prefix) + 1);
        if (i < 0 || i >= r->s->n || n.version < r->want[i] || r->t_recv[i] != 0) {
            r->rejected += e != 0;
            continue;
        }
        struct qd_client_model m;
        e = qd_client_fetch(&r->c, &admin, n.id, n.version, 0, NULL, 0, r->s->pk, &m);
        if (e) {
            r->rejected++;
            continue;
        }
        r->t_recv[i] = qd_sim_now();
        r->got++;
        r->bytes += (long)m.len;
        qd_client_model_fini(&m);
    }
    return NULL;
}

static int bench_push(void)
{
    struct qd_sim s;
    struct qd_sim_opts o = {.control = control,
                            .push = pushurl,
                            .admin_key = adminkey,
                            .devices = devices,
                            .images = 0,
                            .timeout_ms = 20000,
                            .quiet = 1,
                            .prefix = "pushb"};
    if (qd_sim_open(&s, &o) || qd_sim_provision(&s)) {
        fprintf(stderr, "bench: %s\n", qd_errmsg());
        return 1;
    }
    struct qd_client_ctx full = QD_CLIENT_CTX_NONE;
    full.battery = 1.0;
    for (int i = 0; i < s.n; i++)
        if (qd_sim_report(&s, i, &full)) {
            fprintf(stderr, "bench: %s\n", qd_errmsg());
            return 1;
        }
    if (qd_sim_collect(&s, 120000, 1)) {
        fprintf(stderr, "bench: round 1: %s\n", qd_errmsg());
        return 1;
    }
    struct receiver r = {.t_recv = calloc(s.n, sizeof(double)), .s = &s};
    int64_t *want = calloc(s.n, sizeof *want);
    double *t_sent = calloc(s.n, sizeof *t_sent), *lat = calloc(s.n, sizeof *lat);
    r.want = want;
    if (qd_client_open(&r.c, control, pushurl, 10000)) {
        fprintf(stderr, "bench: %s\n", qd_errmsg());
        return 1;
    }
    for (int i = 0; i < s.n; i++)
        qd_client_subscribe(&r.c, s.dev[i].who.id);
    usleep(300000); /* the SUB connection is up */
    pthread_t rt;
    pthread_create(&rt, NULL, receive, &r);
    int rc = 0;
    /* sequential: one device's context changes at a time (its flash shrinks to 60%); the
     * next changes once its model arrived. Burst: every device's flash comes back at once. */
    for (int mode = 0; mode < 2; mode++) {
        int burst = mode == 1, changed = 0;
        for (int i = 0; i < s.n; i++) {
            want[i] = s.dev[i].want + 1;
            r.t_recv[i] = 0;
        }
        r.got = 0;
        double t0 = qd_sim_now();
        for (int i = 0; i < s.n; i++) {
            struct qd_client_ctx c = QD_CLIENT_CTX_NONE;
            c.battery = 1.0;
            if (!burst)
                c.free_flash = 0.6 * s.dev[i].flash;
            int64_t before = s.dev[i].want;
            t_sent[i] = qd_sim_now();
            if (qd_sim_report(&s, i, &c)) {
                fprintf(stderr, "bench: %s\n", qd_errmsg());
                return 1;
            }
            changed += s.dev[i].want > before;
            if (!burst && s.dev[i].want > before)
                for (int k = 0; k < 200000 && r.t_recv[i] == 0; k++)
                    usleep(20);
        }
        double t_reports = qd_sim_now() - t0;
        for (int k = 0; k < 300 && r.got < changed; k++)
            usleep(100000);
        long n = 0;
        for (int i = 0; i < s.n; i++)
            if (r.t_recv[i] > 0)
                lat[n++] = r.t_recv[i] - t_sent[i];
        qsort(lat, n, sizeof *lat, cmp);
        const char *name = burst ? "burst" : "one at a time";
        printf("push (%s), %d devices, %d decisions changed: %ld notified, fetched and verified; "
               "report -> verified model p50 %.2f ms, p99 %.2f ms, max %.2f ms; %d reports "
               "took %.2f s\n",
               name, s.n, changed, n, 1e3 * pct(lat, n, 0.5), 1e3 * pct(lat, n, 0.99),
               n ? 1e3 * lat[n - 1] : NAN, s.n, t_reports);
        printf("{\"bench\":\"push\",\"mode\":\"%s\",\"devices\":%d,\"changed\":%d,"
               "\"received\":%ld,\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"max_ms\":%.3f}\n",
               burst ? "burst" : "sequential", s.n, changed, n, 1e3 * pct(lat, n, 0.5),
               1e3 * pct(lat, n, 0.99), n ? 1e3 * lat[n - 1] : NAN);
        rc |= !(n == changed && changed > 0);
    }
    r.stop = 1;
    pthread_join(rt, NULL);
    qd_client_close(&r.c);
    free(r.t_recv), free(want), free(t_sent), free(lat);
    qd_sim_close(&s);
    return rc;
}

/* Weight widths that differ between two policies ("8,4,2/8,8,8": weights/activations). */
static int layers_changed(const char *a, const char *b)
{
    int n = 0;
    while (*a && *b && *a != '/' && *b != '/') {
        int x = atoi(a), y = atoi(b);
        n += x != y;
        a += strcspn(a, ",/"), b += strcspn(b, ",/");
        a += *a == ',', b += *b == ',';
    }
    return n;
}

/* Bytes on the wire for a fleet-wide update: see the file's opening comment. */
static int bench_wire(void)
{
    struct qd_sim s;
    struct qd_sim_opts o = {.control = control,
                            .push = pushurl,
                            .admin_key = adminkey,
                            .devices = devices,
                            .images = 0,
                            .timeout_ms = 20000,
                            .quiet = 1,
                            .prefix = "wireb"};
    if (qd_sim_open(&s, &o) || qd_sim_provision(&s))
        return fprintf(stderr, "bench: %s\n", qd_errmsg()), 1;
    struct qd_client_ctx full = QD_CLIENT_CTX_NONE;
    full.battery = 1.0;
    for (int i = 0; i < s.n; i++)
        if (qd_sim_report(&s, i, &full))
            return fprintf(stderr, "bench: %s\n", qd_errmsg()), 1;
    if (qd_sim_collect(&s, 300000, 1))
        return fprintf(stderr, "bench: round 1: %s\n", qd_errmsg()), 1;
    uint8_t **old = calloc(s.n, sizeof *old);
    size_t *oldn = calloc(s.n, sizeof *oldn);
    char(*pol)[256] = calloc(s.n, sizeof *pol);
    int64_t *v1 = calloc(s.n, sizeof *v1);
    for (int i = 0; i < s.n; i++) {
        old[i] = malloc(s.dev[i].store->len);
        memcpy(old[i], s.dev[i].store->qm, s.dev[i].store->len);
        oldn[i] = s.dev[i].store->len;
        snprintf(pol[i], sizeof pol[i], "%s", s.dev[i].policy);
        v1[i] = s.dev[i].store->version;
    }
    long reply0 = s.reply_bytes, wire0 = s.wire_bytes;
    for (int i = 0; i < s.n; i++) { /* a little less flash: a few layers narrower */
        struct qd_client_ctx c = QD_CLIENT_CTX_NONE;
        c.battery = 1.0;
        c.free_flash = 0.9 * s.dev[i].flash;
        qd_sim_report(&s, i, &c); /* EBUDGET where nothing smaller fits: it keeps its model */
    }
    if (qd_sim_collect(&s, 300000, 1))
        return fprintf(stderr, "bench: round 2: %s\n", qd_errmsg()), 1;
    double raw = 0, zst = 0, pat = 0, raw1 = 0, zst1 = 0, pat1 = 0;
    int changed = 0, one = 0;
    for (int i = 0; i < s.n; i++) {
        struct qd_sim_dev *d = &s.dev[i];
        if (d->store->version == v1[i])
            continue;
        enum qd_pack k;
        uint8_t *p;
        size_t zn, pn;
        if (qd_pack_best(d->store->qm, d->store->len, NULL, 0, 3, &k, &p, &zn))
            return fprintf(stderr, "bench: %s\n", qd_errmsg()), 1;
        free(p);
        if (qd_pack_best(d->store->qm, d->store->len, old[i], oldn[i], 3, &k, &p, &pn))
            return fprintf(stderr, "bench: %s\n", qd_errmsg()), 1;
        free(p);
        changed++;
        raw += (double)d->store->len, zst += (double)zn, pat += (double)pn;
        if (layers_changed(pol[i], d->policy) == 1) {
            one++;
            raw1 += (double)d->store->len, zst1 += (double)zn, pat1 += (double)pn;
        }
    }
    struct qd_proto_note nt = {.version = 1, .size = 100000};
    snprintf(nt.id, sizeof nt.id, "wireb-00000");
    memset(nt.sha, 'a', 64);
    uint8_t *f;
    size_t fn;
    qd_proto_note_encode(&nt, &f, &fn);
    free(f);
    double N = s.n, bcast = N * raw, notes = N * changed * (double)fn;
    double fetched = (double)(s.reply_bytes - reply0);
    printf("wire, %d devices, %d models changed (%d by one layer): per model %.0f B raw, "
           "%.0f B zstd (%.2f), %.0f B patched against the held version (%.2f); one-layer "
           "changes %.0f B raw, %.0f B zstd, %.0f B patch (%.3f)\n",
           s.n, changed, one, raw / changed, zst / changed, zst / raw, pat / changed, pat / raw,
           one ? raw1 / one : NAN, one ? zst1 / one : NAN, one ? pat1 / one : NAN,
           one ? pat1 / raw1 : NAN);
    printf("fleet-wide update: broadcast (every model to every subscriber) %.1f MB; notify + "
           "fetch %.1f MB (notifications to every subscriber %.1f MB, %d B each; fetch "
           "replies %.1f MB, of which packed models %.1f MB); ratio %.4f\n",
           bcast / 1e6, (notes + fetched) / 1e6, notes / 1e6, (int)fn, fetched / 1e6,
           (double)(s.wire_bytes - wire0) / 1e6, (notes + fetched) / bcast);
    printf("{\"bench\":\"wire\",\"devices\":%d,\"changed\":%d,\"one_layer\":%d,"
           "\"raw_B\":%.0f,\"zstd_B\":%.0f,\"patch_B\":%.0f,\"one_raw_B\":%.0f,"
           "\"one_patch_B\":%.0f,\"broadcast_MB\":%.2f,\"notify_fetch_MB\":%.2f}\n",
           s.n, changed, one, raw / changed, zst / changed, pat / changed, one ? raw1 / one : 0,
           one ? pat1 / one : 0, bcast / 1e6, (notes + fetched) / 1e6);
    for (int i = 0; i < s.n; i++)
        free(old[i]);
    free(old), free(oldn), free(pol), free(v1);
    qd_sim_close(&s);
    return changed > 0 ? 0 : 1;
}

/* Patch against a one-layer change: the checkpoint's models at a base policy and at every
 * policy one layer away from it (that layer's weights at each other width), each packed as
 * the daemon packs (proto/pack.c, level 3): raw, zstd, and a patch against the base. */
static int bench_patch(const char *ckpt, const char *data_dir)
{
    struct qd_decider d;
    struct qd_decider_opts o = {
        .ckpt = ckpt, .dir = data_dir, .sens_n = 100, .calib_n = 256, .quiet = 1};
    if (qd_decider_load(&o, &d))
        return fprintf(stderr, "bench: %s\n", qd_errmsg()), 1;
    static const int widths[] = {2, 4, 8};
    double sum_raw = 0, sum_z = 0, sum_p = 0, worst = 0, best = 1;
    int n = 0;
    for (int b = 0; b < 2; b++) { /* base: all 8-bit; then 4-bit */
        struct qd_policy base;
        qd_policy_uniform(&base, d.g.nq, b ? 4 : 8, 8);
        uint8_t *bq;
        size_t bl;
        if (qd_decider_build(&d, &base, &bq, &bl))
            return fprintf(stderr, "bench: %s\n", qd_errmsg()), 1;
        for (int l = 0; l < d.g.nq; l++)
            for (int k = 0; k < 3; k++) {
                if (widths[k] == base.wbits[l])
                    continue;
                struct qd_policy p = base;
                p.wbits[l] = (uint8_t)widths[k];
                uint8_t *q, *z;
                size_t ql, zl, pl;
                enum qd_pack kind;
                if (qd_decider_build(&d, &p, &q, &ql) ||
                    qd_pack_best(q, ql, NULL, 0, 3, &kind, &z, &zl))
                    return fprintf(stderr, "bench: %s\n", qd_errmsg()), 1;
                free(z);
                if (qd_pack_best(q, ql, bq, bl, 3, &kind, &z, &pl))
                    return fprintf(stderr, "bench: %s\n", qd_errmsg()), 1;
                free(z);
                free(q);
                sum_raw += (double)ql, sum_z += (double)zl, sum_p += (double)pl;
                worst = fmax(worst, (double)pl / (double)ql);
                best = fmin(best, (double)pl / (double)ql);
                n++;
            }
        free(bq);
    }
    printf("patch, %s (%d layers): %d one-layer changes from all-8 and all-4 bases: per model "
           "%.0f B raw, %.0f B zstd (%.3f), %.0f B patch (%.3f of raw; best %.3f, worst %.3f)\n",
           d.m.family, d.g.nq, n, sum_raw / n, sum_z / n, sum_z / sum_raw, sum_p / n,
           sum_p / sum_raw, best, worst);
    printf("{\"bench\":\"patch\",\"changes\":%d,\"raw_B\":%.0f,\"zstd_B\":%.0f,\"patch_B\":%.0f,"
           "\"patch_ratio\":%.4f,\"best\":%.4f,\"worst\":%.4f}\n",
           n, sum_raw / n, sum_z / n, sum_p / n, sum_p / sum_raw, best, worst);
    qd_decider_fini(&d);
    return n > 0 ? 0 : 1;
}

/* Health round trips every 5 ms for `secs` seconds (stops early when *stop is set). */
struct prober {
    pthread_t t;
    double secs, *lat;
    long n, cap, errors;
    volatile int *stop;
};

static void *probe(void *p)
{
    struct prober *h = p;
    struct qd_client c;
    if (qd_client_open(&c, control, NULL, 10000)) {
        h->errors++;
        return NULL;
    }
    double t0 = qd_sim_now();
    while (!*h->stop && qd_sim_now() - t0 < h->secs) {
        cJSON *r = NULL;
        double t = qd_sim_now();
        qd_err e = qd_client_call(&c, NULL, op("health"), &r, NULL, NULL);
        double dt = qd_sim_now() - t;
        cJSON_Delete(r);
        if (e) {
            h->errors++;
            continue;
        }
        if (h->n == h->cap) {
            h->cap = h->cap ? 2 * h->cap : 4096;
            h->lat = realloc(h->lat, h->cap * sizeof *h->lat);
        }
        h->lat[h->n++] = dt;
        usleep(5000);
    }
    qd_client_close(&c);
    return NULL;
}

struct loader {
    pthread_t t;
    struct qd_sim s;
    long reports, errors;
    volatile int *stop;
    unsigned seed;
};

static void *load(void *p)
{
    struct loader *l = p;
    for (int k = 0; !*l->stop; k++) {
        int i = k % l->s.n;
        struct qd_client_ctx c = QD_CLIENT_CTX_NONE;
        c.battery = 1.0;
        if (l->s.dev[i].flash > 0) /* (its first report: no cap, which gives the size) */
            c.free_flash = (0.4 + 0.6 * rand_r(&l->seed) / (double)RAND_MAX) * l->s.dev[i].flash;
        qd_err e = qd_sim_report(&l->s, i, &c);
        if (e && ++l->errors <= 2)
            fprintf(stderr, "bench: %s: %s\n", qd_err_name(e), qd_errmsg());
        l->reports++;
    }
    return NULL;
}

static double stat_of(struct qd_client *c, struct qd_ident *admin, const char *name)
{
    cJSON *r = NULL;
    double v = NAN;
    if (!qd_client_call(c, admin, op("stats"), &r, NULL, NULL) && cJSON_GetObjectItem(r, name))
        v = cJSON_GetObjectItem(r, name)->valuedouble;
    cJSON_Delete(r);
    return v;
}

static void probe_summary(const char *name, struct prober *h)
{
    qsort(h->lat, h->n, sizeof *h->lat, cmp);
    printf("health (%s): %ld calls, p50 %.2f ms, p99 %.2f ms, max %.2f ms, %ld errors\n", name,
           h->n, 1e3 * pct(h->lat, h->n, 0.5), 1e3 * pct(h->lat, h->n, 0.99),
           h->n ? 1e3 * h->lat[h->n - 1] : NAN, h->errors);
}

static int bench_health(void)
{
    volatile int stop = 0;
    struct prober idle = {.secs = 2, .stop = &stop}, busy = {.secs = seconds, .stop = &stop};
    probe(&idle);
    struct qd_client c;
    struct qd_ident admin;
    if (qd_client_open(&c, control, NULL, 10000) || qd_ident_init(&admin, "admin", adminkey)) {
        fprintf(stderr, "bench: %s\n", qd_errmsg());
        return 1;
    }
    struct loader *l = calloc(clients, sizeof *l);
    for (int k = 0; k < clients; k++) {
        char prefix[16];
        snprintf(prefix, sizeof prefix, "hl%d", k);
        struct qd_sim_opts o = {.control = control,
                                .push = pushurl,
                                .admin_key = adminkey,
                                .devices = devices,
                                .timeout_ms = 60000,
                                .quiet = 1,
                                .prefix = strdup(prefix)};
        if (qd_sim_open(&l[k].s, &o) || qd_sim_provision(&l[k].s)) {
            fprintf(stderr, "bench: %s\n", qd_errmsg());
            return 1;
        }
        l[k].stop = &stop;
        l[k].seed = 7u + (unsigned)k;
    }
    double b0 = stat_of(&c, &admin, "builds");
    pthread_create(&busy.t, NULL, probe, &busy);
    for (int k = 0; k < clients; k++)
        pthread_create(&l[k].t, NULL, load, &l[k]);
    pthread_join(busy.t, NULL);
    stop = 1;
    long reports = 0, errors = 0;
    for (int k = 0; k < clients; k++) {
        pthread_join(l[k].t, NULL);
        reports += l[k].reports, errors += l[k].errors;
    }
    double builds = stat_of(&c, &admin, "builds") - b0;
    probe_summary("idle daemon", &idle);
    probe_summary("while building", &busy);
    double worst = busy.n ? 1e3 * busy.lat[busy.n - 1] : NAN;
    printf("meanwhile: %d loaders, %ld reports (%ld refused: busy or nothing fits), %.0f models "
           "built; goal: every health within 50 ms: %s\n",
           clients, reports, errors, builds, worst <= 50 ? "met" : "NOT met");
    printf("{\"bench\":\"health\",\"calls\":%ld,\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"max_ms\":%.3f,"
           "\"idle_p99_ms\":%.3f,\"builds\":%.0f,\"reports\":%ld}\n",
           busy.n, 1e3 * pct(busy.lat, busy.n, 0.5), 1e3 * pct(busy.lat, busy.n, 0.99), worst,
           1e3 * pct(idle.lat, idle.n, 0.99), builds, reports);
    for (int k = 0; k < clients; k++) {
        free((char *)l[k].s.o.prefix);
        qd_sim_close(&l[k].s);
    }
    free(l), free(idle.lat), free(busy.lat);
    qd_client_close(&c);
    return busy.errors || idle.errors || !(builds > 0);
}

static double rss_mib(void)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    double kb = NAN;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "VmRSS:", 6))
            kb = atof(line + 6);
    if (f)
        fclose(f);
    return kb / 1024;
}

static int bench_rss(void)
{
    struct qd_client c;
    struct qd_ident admin;
    if (qd_client_open(&c, control, NULL, 10000) || qd_ident_init(&admin, "admin", adminkey)) {
        fprintf(stderr, "bench: %s\n", qd_errmsg());
        return 1;
    }
    const char *const *profiles = qd_device_parts;
    double r0 = rss_mib(), t0 = qd_sim_now();
    for (int i = 0; i < devices; i++) {
        char id[32];
        snprintf(id, sizeof id, "fleet-%06d", i);
        struct qd_ident who;
        if (provision(&c, &admin, id, profiles[i % QD_DEVICE_PARTS], &who)) {
            fprintf(stderr, "bench: %s: %s\n", id, qd_errmsg());
            return 1;
        }
        if (i && i % 20000 == 0)
            fprintf(stderr, "bench: %d devices registered, RSS %.1f MiB\n", i, rss_mib());
    }
    double dt = qd_sim_now() - t0, r1 = rss_mib();
    cJSON *r = NULL;
    qd_err e = qd_client_call(&c, &admin, op("stats"), &r, NULL, NULL);
    double n = e ? NAN : cJSON_GetObjectItem(r, "devices")->valuedouble;
    cJSON_Delete(r);
    printf("rss: %.0f devices registered (keys add + hello) in %.1f s; quantd RSS %.1f MiB "
           "(%.1f before); goal 200 MiB: %.2fx of it\n",
           n, dt, r1, r0, r1 / 200);
    printf("{\"bench\":\"rss\",\"devices\":%.0f,\"rss_mib\":%.1f,\"rss_before_mib\":%.1f,"
           "\"register_s\":%.1f}\n",
           n, r1, r0, dt);
    qd_client_close(&c);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr,
                "usage: quantd_bench decide|push|wire|health|rss --control URL [--push URL] "
                "--admin-key F [--pid P] [--clients K] [--seconds S] [--devices N]\n");
        return 2;
    }
    for (int i = 2; i + 1 < argc; i += 2) {
        const char *f = argv[i], *v = argv[i + 1];
        if (!strcmp(f, "--control"))
            control = v;
        else if (!strcmp(f, "--push"))
            pushurl = v;
        else if (!strcmp(f, "--admin-key"))
            adminkey = v;
        else if (!strcmp(f, "--pid"))
            pid = atoi(v);
        else if (!strcmp(f, "--clients"))
            clients = atoi(v);
        else if (!strcmp(f, "--seconds"))
            seconds = atof(v);
        else if (!strcmp(f, "--devices"))
            devices = atoi(v);
        else if (!strcmp(f, "--echo"))
            echo_url = v;
        else if (!strcmp(f, "--ckpt"))
            ckpt = v;
        else if (!strcmp(f, "--data-dir"))
            data_dir = v;
        else {
            fprintf(stderr, "quantd_bench: unknown flag %s\n", f);
            return 2;
        }
    }
    if (!strcmp(argv[1], "patch"))
        return ckpt ? bench_patch(ckpt, data_dir) : 2;
    if (!control || !adminkey || clients < 1 || devices < 1) {
        fprintf(stderr, "quantd_bench: --control and --admin-key are required\n");
        return 2;
    }
    if (!strcmp(argv[1], "decide"))
        return bench_decide();
    if (!strcmp(argv[1], "push"))
        return pushurl ? bench_push() : 2;
    if (!strcmp(argv[1], "wire"))
        return pushurl ? bench_wire() : 2;
    if (!strcmp(argv[1], "health"))
        return bench_health();
    if (!strcmp(argv[1], "rss"))
        return pid ? bench_rss() : 2;
    fprintf(stderr, "quantd_bench: unknown bench %s\n", argv[1]);
    return 2;
}
