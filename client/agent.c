/* The agent's model store (see agent.h). Every write is temp + fsync + rename + directory
 * fsync (core/file.c); the state file is the commit point. */
#include "client/agent.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "client/selftest.h"
#include "core/file.h"

static const char *const SLOT[2] = {"slot-a.qm", "slot-b.qm"};

static void path_of(const struct qd_agent_store *s, const char *name, char *out, size_t n)
{
    snprintf(out, n, "%s/%s", s->dir, name);
}

static void forget(struct qd_agent_store *s)
{
    free(s->qm);
    s->qm = NULL, s->len = 0;
    s->slot = -1, s->version = 0;
    s->sha[0] = s->policy[0] = 0;
}

/* current.qm -> slot: a fresh link renamed over the old one, then the directory fsynced. */
static qd_err point(struct qd_agent_store *s, int slot)
{
    char cur[1100], tmp[1120];
    path_of(s, "current.qm", cur, sizeof cur);
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", cur, (int)getpid());
    unlink(tmp);
    if (symlink(SLOT[slot], tmp) || rename(tmp, cur)) {
        unlink(tmp);
        return qd_seterr(QD_EIO, "%s: cannot link (%s)", cur, strerror(errno));
    }
    return qd_file_sync_dir(cur);
}

/* The state file into s (0 when absent or damaged: then nothing is installed). */
static void read_state(struct qd_agent_store *s)
{
    char p[1100];
    uint8_t *b;
    size_t n;
    path_of(s, "state", p, sizeof p);
    if (qd_file_read(p, &b, &n))
        return;
    cJSON *j = cJSON_ParseWithLength((const char *)b, n);
    free(b);
    const char *sha = NULL, *slot = NULL, *pol = "";
    int64_t v = 0;
    if (!qd_proto_int(j, "version", 1, INT64_C(1) << 53, 1, &v) &&
        !qd_proto_str(j, "sha256", 64, 1, &sha) && !qd_proto_str(j, "slot", 1, 1, &slot) &&
        !qd_proto_str(j, "policy", sizeof s->policy - 1, 0, &pol) && strlen(sha) == 64 &&
        (slot[0] == 'a' || slot[0] == 'b')) {
        s->version = v;
        s->slot = slot[0] - 'a';
        snprintf(s->sha, sizeof s->sha, "%s", sha);
        snprintf(s->policy, sizeof s->policy, "%s", pol ? pol : "");
    }
    cJSON_Delete(j);
}

qd_err qd_agent_store_open(struct qd_agent_store *s, const char *dir)
{
    memset(s, 0, sizeof *s);
    forget(s);
    if (!dir)
        return QD_OK; /* in memory */
    if (snprintf(s->dir, sizeof s->dir, "%s", dir) >= (int)sizeof s->dir)
        return qd_seterr(QD_EINVAL, "%.64s...: path too long", dir);
    QD_TRY(qd_file_mkdirs(dir));
    read_state(s);
    if (s->slot < 0)
        return QD_OK;
    char p[1100], got[65];
    path_of(s, SLOT[s->slot], p, sizeof p);
    if (qd_file_read(p, &s->qm, &s->len)) {
        forget(s);
        return QD_OK;
    }
    qd_proto_sha256_hex(s->qm, s->len, got);
    if (strcmp(got, s->sha)) { /* never after a crash (the state comes last); a damaged disk */
        forget(s);
        return QD_OK;
    }
    return point(s, s->slot); /* a crash between the link and the state left it on the other */
}

qd_err qd_agent_store_install(struct qd_agent_store *s, const struct qd_client_model *m)
{
    int next = s->slot == 0 ? 1 : 0;
    if (s->before_step)
        s->before_step(1);
    QD_TRY(qd_selftest_check(m->qm, m->len, &m->m));
    if (!s->dir[0])
        goto held; /* in memory */
    char p[1100];
    path_of(s, SLOT[next], p, sizeof p);
    if (s->before_step)
        s->before_step(2);
    QD_TRY(qd_file_write_atomic(p, m->qm, m->len));
    if (s->before_step)
        s->before_step(3);
    QD_TRY(point(s, next));
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "version", (double)m->m.version);
    cJSON_AddStringToObject(j, "sha256", m->m.sha);
    cJSON_AddStringToObject(j, "slot", next ? "b" : "a");
    cJSON_AddStringToObject(j, "policy", m->m.policy);
    char *t = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    if (!t)
        return qd_seterr(QD_ENOMEM, "agent: out of memory");
    path_of(s, "state", p, sizeof p);
    if (s->before_step)
        s->before_step(4);
    qd_err e = qd_file_write_atomic(p, t, strlen(t));
    free(t);
    if (e) { /* the link may be on the new slot: back to the installed one */
        if (s->slot >= 0)
            point(s, s->slot);
        return e;
    }
held:;
    uint8_t *q = malloc(m->len ? m->len : 1);
    if (!q)
        return qd_seterr(QD_ENOMEM, "agent: out of memory");
    memcpy(q, m->qm, m->len);
    free(s->qm);
    s->qm = q, s->len = m->len;
    s->slot = next, s->version = m->m.version;
    snprintf(s->sha, sizeof s->sha, "%s", m->m.sha);
    snprintf(s->policy, sizeof s->policy, "%s", m->m.policy);
    return QD_OK;
}

void qd_agent_store_close(struct qd_agent_store *s)
{
    forget(s);
}

qd_err qd_agent_take(struct qd_client *c, struct qd_ident *me, const uint8_t pk[QD_PROTO_PUB_BYTES],
                     struct qd_agent_store *s, int64_t v, int ack, struct qd_agent_took *t)
{
    memset(t, 0, sizeof *t);
    if (v <= 0 || v < s->version) /* nothing decided yet, or older than what it holds */
        return QD_OK;
    if (v == s->version) /* held: its ack may have been lost; acks are idempotent */
        return ack ? qd_client_ack(c, me, v, s->sha) : QD_OK;
    struct qd_client_model m;
    qd_err e = qd_client_fetch(c, me, NULL, v, s->version, s->qm, s->len, pk, &m);
    if (e == QD_EAUTH || e == QD_EFOREIGN || e == QD_EROLLBACK || e == QD_EEXPIRED ||
        e == QD_EBASE || e == QD_EFORMAT || e == QD_ECHECKSUM) {
        t->refused = e;
        char why[600];
        snprintf(why, sizeof why, "%s", qd_errmsg());
        qd_client_event(c, me, "refused", v, e, why);
        return qd_seterr(QD_OK, "%s", why), QD_OK;
    }
    QD_TRY(e);
    snprintf(t->encoding, sizeof t->encoding, "%s", m.encoding);
    t->len = m.len, t->wire = m.wire, t->reply_bytes = m.reply_bytes;
    if (s->tamper)
        s->tamper(&m);
    e = qd_agent_store_install(s, &m);
    if (e == QD_ESELFTEST) {
        t->refused = e;
        char why[600];
        snprintf(why, sizeof why, "%s", qd_errmsg());
        qd_client_event(c, me, "selftest-failed", v, e, why);
        qd_client_model_fini(&m);
        return qd_seterr(QD_OK, "%s", why), QD_OK;
    }
    if (!e && ack)
        e = qd_client_ack(c, me, m.m.version, m.m.sha);
    t->installed = !e;
    qd_client_model_fini(&m);
    return e;
}
