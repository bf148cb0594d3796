/* Prometheus metrics: the text exposition format (version 0.0.4) on `metrics`
 * (tcp://HOST:PORT; empty: off), served by libmicrohttpd on its own thread.
 *
 * The loop renders the text from its counters once a second (qdd_metrics_tick, from the push
 * tick) into a buffer under a mutex; the HTTP thread only copies the latest buffer. So a scrape
 * never touches the loop's state (no locks on the hot path, nothing for TSan to find), and costs
 * the loop nothing; the figures are at most a second old. No per-device labels: the series are
 * bounded by the op table, the error codes and the device states. */
#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "daemon/daemon_impl.h"

#ifndef QUANTD_VERSION
#define QUANTD_VERSION "0.4"
#endif

const double QDD_HIST_SECONDS[QDD_HIST_BUCKETS] = {
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300};

void qdd_hist_observe(struct qdd_hist *h, double v)
{
    for (int i = 0; i < QDD_HIST_BUCKETS; i++)
        if (v <= QDD_HIST_SECONDS[i])
            h->b[i]++;
    h->count++;
    h->sum += v;
}

/* ---------------------------------------------------------------- rendering (loop thread) */

struct buf {
    char *p;
    size_t n, cap;
    int oom;
};

static void put(struct buf *b, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(b->p ? b->p + b->n : NULL, b->p ? b->cap - b->n : 0, fmt, ap);
        va_end(ap);
        if (k < 0 || b->oom)
            return;
        if (b->p && b->n + (size_t)k < b->cap) {
            b->n += (size_t)k;
            return;
        }
        size_t cap = b->cap ? 2 * b->cap : 16384;
        while (cap <= b->n + (size_t)k)
            cap *= 2;
        char *q = realloc(b->p, cap);
        if (!q) {
            b->oom = 1;
            return;
        }
        b->p = q, b->cap = cap;
    }
}

static void head(struct buf *b, const char *name, const char *type, const char *help)
{
    put(b, "# HELP quantd_%s %s\n# TYPE quantd_%s %s\n", name, help, name, type);
}

static void counter(struct buf *b, const char *name, const char *help, double v)
{
    head(b, name, "counter", help);
    put(b, "quantd_%s %.17g\n", name, v);
}

static void gauge(struct buf *b, const char *name, const char *help, double v)
{
    head(b, name, "gauge", help);
    put(b, "quantd_%s %.17g\n", name, v);
}

static void hist(struct buf *b, const char *name, const char *help, const struct qdd_hist *h)
{
    head(b, name, "histogram", help);
    for (int i = 0; i < QDD_HIST_BUCKETS; i++)
        put(b, "quantd_%s_bucket{le=\"%g\"} %ld\n", name, QDD_HIST_SECONDS[i], h->b[i]);
    put(b, "quantd_%s_bucket{le=\"+Inf\"} %ld\nquantd_%s_sum %.17g\nquantd_%s_count %ld\n", name,
        h->count, name, h->sum, name, h->count);
}

static void render_requests(struct qd_daemon *d, struct buf *b)
{
    head(b, "requests_total", "counter", "Control requests by op (\"none\": not parsed).");
    for (int i = 0; i <= qdd_op_count(); i++)
        if (d->n_op[i] || i)
            put(b, "quantd_requests_total{op=\"%s\"} %ld\n", i ? qdd_op_name(i - 1) : "none",
                d->n_op[i]);
    head(b, "errors_total", "counter", "Error replies by op and code.");
    for (int i = 0; i <= qdd_op_count(); i++)
        for (int e = 1; e < QD_ERR_COUNT; e++)
            if (d->n_op_err[i][e])
                put(b, "quantd_errors_total{op=\"%s\",code=\"%s\"} %ld\n",
                    i ? qdd_op_name(i - 1) : "none", qd_err_name(e), d->n_op_err[i][e]);
    head(b, "refusals_total", "counter",
         "Models a device refused (manifest or bytes) or whose self-test failed, by reason.");
    for (int e = 1; e < QD_ERR_COUNT; e++)
        if (d->n_refusal[e])
            put(b, "quantd_refusals_total{reason=\"%s\"} %ld\n", qd_err_name(e), d->n_refusal[e]);
}

static void render_fleet(struct qd_daemon *d, struct buf *b)
{
    long by[3] = {0, 0, 0}, unacked = 0;
    for (int i = 0; i < d->ndev; i++) {
        struct qdd_dev *x = d->devs[i];
        by[x->status >= 0 && x->status < 3 ? x->status : 0]++;
        unacked += x->status == QD_STATE_ACTIVE && x->version > x->acked;
    }
    head(b, "devices", "gauge", "Registered devices by state.");
    static const char *const st[] = {"active", "revoked", "deleted"};
    for (int s = 0; s < 3; s++)
        put(b, "quantd_devices{state=\"%s\"} %ld\n", st[s], by[s]);
    gauge(b, "unacked_versions", "Active devices whose current version is not acked yet.",
          (double)unacked);
    gauge(b, "groups", "Device groups.", d->ngroup);
    gauge(b, "blobs", "Built models held (content-addressed, shared by devices).",
          qdd_blob_count(d));
    gauge(b, "state_bytes", "The state directory's size (SQLite and models/), last sweep.",
          (double)d->state_bytes);
    gauge(b, "jobs_inflight", "Decision and build jobs queued or running.", d->inflight);
    gauge(b, "ready", "1 when the backbone is loaded and decisions are served.",
          atomic_load(&d->phase) == QDD_PH_READY);
    gauge(b, "uptime_seconds", "Seconds since the start.", qdd_now_s() - d->started);
}

static void render(struct qd_daemon *d, struct buf *b)
{
    /* the backbone's fields are the boot job's until it is ready (then the loop's) */
    int ready = atomic_load(&d->phase) == QDD_PH_READY;
    head(b, "build_info", "gauge", "quantd's version, its backbone and how it decides.");
    put(b, "quantd_build_info{version=\"%s\",backbone=\"%s\",decider=\"%s\"} 1\n", QUANTD_VERSION,
        ready ? d->backbone_id : "", !ready ? "" : d->have_gate ? "gate" : "sensitivity");
    render_requests(d, b);
    counter(b, "decisions_total", "Decisions made (reports, dry runs, re-decisions).",
            (double)d->n_dec);
    counter(b, "builds_total", "Models built.", (double)d->n_build);
    counter(b, "build_cache_hits_total", "Decisions that reused a built model.",
            (double)d->n_cache_hit);
    counter(b, "pushes_total", "First notifications of a version.", (double)d->n_push);
    counter(b, "repushes_total", "Notifications repeated while a version waited for its ack.",
            (double)d->n_repush);
    counter(b, "acks_total", "Versions acknowledged by devices.", (double)d->n_ack);
    counter(b, "fetches_total", "Fetch replies (chunks).", (double)d->n_fetch);
    counter(b, "fetch_bytes_total", "Model bytes sent in fetch replies.", (double)d->n_fetch_bytes);
    counter(b, "redecisions_total", "Decisions made again after a setting changed.",
            (double)d->n_redecide);
    counter(b, "reverts_total", "Versions carrying an earlier model (rollback, pin).",
            (double)d->n_revert);
    head(b, "retention_removed_total", "counter", "What retention sweeps removed, by kind.");
    put(b,
        "quantd_retention_removed_total{kind=\"blob\"} %ld\n"
        "quantd_retention_removed_total{kind=\"version\"} %ld\n"
        "quantd_retention_removed_total{kind=\"decision\"} %ld\n"
        "quantd_retention_removed_total{kind=\"event\"} %ld\n",
        d->n_pruned_blobs, d->n_pruned_versions, d->n_pruned_decisions, d->n_pruned_events);
    hist(b, "decide_seconds", "A decision job from its queueing to its reply.", &d->h_decide);
    hist(b, "build_seconds", "Building, signing and storing one model.", &d->h_build);
    hist(b, "push_to_ack_seconds", "From a version's first notification to its ack.",
         &d->h_push_ack);
    render_fleet(d, b);
}

/* ---------------------------------------------------------------- serving (MHD's thread) */

static enum MHD_Result serve(void *cls, struct MHD_Connection *conn, const char *url,
                             const char *method, const char *version, const char *upload,
                             size_t *upload_len, void **state)
{
    struct qd_daemon *d = cls;
    (void)version, (void)upload, (void)upload_len, (void)state;
    struct MHD_Response *r;
    unsigned code = MHD_HTTP_OK;
    if (strcmp(method, "GET") && strcmp(method, "HEAD")) {
        static const char m[] = "only GET\n";
        code = MHD_HTTP_METHOD_NOT_ALLOWED;
        r = MHD_create_response_from_buffer(sizeof m - 1, (void *)m, MHD_RESPMEM_PERSISTENT);
    } else if (strcmp(url, "/metrics")) {
        static const char m[] = "quantd: metrics are at /metrics\n";
        code = MHD_HTTP_NOT_FOUND;
        r = MHD_create_response_from_buffer(sizeof m - 1, (void *)m, MHD_RESPMEM_PERSISTENT);
    } else {
        uv_mutex_lock(&d->metrics_mu);
        r = MHD_create_response_from_buffer(d->metrics_len, d->metrics_text, MHD_RESPMEM_MUST_COPY);
        uv_mutex_unlock(&d->metrics_mu);
        if (r)
            MHD_add_response_header(r, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
    }
    if (!r)
        return MHD_NO;
    enum MHD_Result ok = MHD_queue_response(conn, code, r);
    MHD_destroy_response(r);
    return ok;
}

void qdd_metrics_tick(struct qd_daemon *d)
{
    if (!d->metrics)
        return;
    struct buf b = {0};
    render(d, &b);
    if (b.oom) {
        free(b.p);
        return;
    }
    uv_mutex_lock(&d->metrics_mu);
    free(d->metrics_text);
    d->metrics_text = b.p, d->metrics_len = b.n;
    uv_mutex_unlock(&d->metrics_mu);
}

qd_err qdd_metrics_start(struct qd_daemon *d)
{
    const char *url = d->cfg.metrics;
    if (!url[0])
        return QD_OK;
    char host[256];
    int port = 0;
    if (strncmp(url, "tcp://", 6) || sscanf(url + 6, "%255[^:]:%d", host, &port) != 2 ||
        port <= 0 || port > 65535)
        return qd_seterr(QD_EINVAL, "metrics = %s: want tcp://HOST:PORT", url);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, host, &a.sin_addr) != 1)
        return qd_seterr(QD_EINVAL, "metrics = %s: HOST must be an IPv4 address", url);
    uv_mutex_init(&d->metrics_mu);
    d->metrics_mu_init = 1;
    d->metrics = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, 0, NULL,
                                  NULL, serve, d, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&a,
                                  MHD_OPTION_CONNECTION_LIMIT, 16, MHD_OPTION_CONNECTION_TIMEOUT,
                                  10u, MHD_OPTION_END);
    if (!d->metrics)
        return qd_seterr(QD_EIO, "metrics: cannot serve on %s (in use?)", url);
    qdd_metrics_tick(d);
    qd_log(QD_LOG_INFO, "metrics on http://%s:%d/metrics", host, port);
    return QD_OK;
}

void qdd_metrics_stop(struct qd_daemon *d)
{
    if (d->metrics)
        MHD_stop_daemon(d->metrics);
    d->metrics = NULL;
    if (d->metrics_mu_init)
        uv_mutex_destroy(&d->metrics_mu);
    d->metrics_mu_init = 0;
    free(d->metrics_text);
    d->metrics_text = NULL;
}
