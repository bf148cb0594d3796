/* Notifications on PUB: for a device's current version, its id, version, sha256 and size, with
 * topic = device id; no model bytes (the device fetches them, authenticated, with the signed
 * manifest). A device stays in pend[] until it acks that version; every tick notifies again
 * those whose time has come (ack_timeout_ms, backing off to 8x with jitter) and refills the
 * byte budget that paces notifications to push_rate (PUB drops what a subscriber cannot take
 * at once). Loop thread. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include <sodium.h>

#include "core/log.h"
#include "daemon/daemon_impl.h"

void qdd_push_pending(struct qd_daemon *d, struct qdd_dev *x)
{
    if (x->pending)
        return;
    if (d->npend == d->cappend) {
        int cap = d->cappend ? 2 * d->cappend : 256;
        int *v = realloc(d->pend, cap * sizeof *v);
        if (!v)
            return; /* the device can still fetch; logged by the caller's next push */
        d->pend = v, d->cappend = cap;
    }
    d->pend[d->npend++] = qdd_dev_index(d, x);
    x->pending = 1;
}

void qdd_push(struct qd_daemon *d, struct qdd_dev *x)
{
    if (x->blob < 0)
        return;
    const uint8_t *qm;
    size_t len;
    if (qdd_blob_bytes(d, x->blob, &qm, &len)) { /* its size; the fetch will need them too */
        qd_log(QD_LOG_ERROR, "notify %s: %s", x->id, qd_errmsg());
        return;
    }
    struct qdd_blob *b = qdd_blob(d, x->blob);
    struct qd_proto_note note = {.version = x->version, .size = (int64_t)len};
    snprintf(note.id, sizeof note.id, "%s", x->id);
    snprintf(note.sha, sizeof note.sha, "%s", b->sha);
    uint8_t *frame;
    size_t n;
    if (qd_proto_note_encode(&note, &frame, &n)) {
        qd_log(QD_LOG_ERROR, "notify %s: %s", x->id, qd_errmsg());
        return;
    }
    /* pacing: PUB drops what a subscriber cannot take at once, so notifications beyond this
     * tick's share of push_rate wait for the next tick (the device stays pending) */
    if (d->push_tokens < (double)n && d->push_tokens < d->cfg.push_rate * 1e6 * TICK_MS / 1e3) {
        free(frame);
        x->push_due = qdd_now_ms();
        qdd_push_pending(d, x);
        return;
    }
    d->push_tokens -= (double)n;
    if (qd_tp_pub(d->pub, frame, n))
        qd_log(QD_LOG_WARN, "notify %s: %s", x->id, qd_errmsg());
    free(frame);
    if (x->tries++)
        d->n_repush++;
    else
        d->n_push++, x->pushed_s = qdd_now_s();
    /* back off to 8x, with jitter so that re-pushes of one burst do not burst again */
    int back = x->tries < 4 ? 1 << (x->tries - 1) : 8;
    double jitter = 0.75 + 0.5 * randombytes_uniform(1000) / 1000.0;
    x->push_due = qdd_now_ms() + (int64_t)(d->cfg.ack_timeout_ms * back * jitter);
    qdd_push_pending(d, x);
}

void qdd_push_tick(uv_timer_t *t)
{
    struct qd_daemon *d = t->data;
    int64_t now = qdd_now_ms();
    int w = 0;
    double share = d->cfg.push_rate * 1e6 * TICK_MS / 1e3;
    d->push_tokens = fmin(d->push_tokens + share, 2 * share);
    double rate = d->cfg.unauth_rate * 1e6; /* bytes/s; up to one second's worth saved up */
    d->unauth_tokens = fmin(d->unauth_tokens + rate * TICK_MS / 1e3, rate);
    for (int i = 0; i < d->npend; i++) {
        struct qdd_dev *x = d->devs[d->pend[i]];
        if (x->acked >= x->version || x->blob < 0 || x->status != QD_STATE_ACTIVE) {
            x->pending = 0;
            x->push_due = 0;
            continue;
        }
        d->pend[w++] = d->pend[i];
        if (x->push_due && x->push_due <= now)
            qdd_push(d, x); /* still pending: qdd_push() does not add it twice */
    }
    d->npend = w;
    qdd_redecide_pump(d);
    qdd_retain_tick(d, now);
    if (d->metrics && now >= d->metrics_at_ms) {
        d->metrics_at_ms = now + 1000;
        qdd_metrics_tick(d);
    }
}
