/* The gateway agent's model store: what quantd-agent (and the simulator) run on a gateway to
 * hold the installed model so that a crash at any instant leaves a complete, verified one.
 *
 * A directory with two slots, slot-a.qm and slot-b.qm; current.qm, a symbolic link to the
 * installed slot (what local applications open: swapped atomically by rename); and `state`, a
 * JSON file naming the installed version, its sha256 and slot (written atomically, last). An
 * install of a verified model (qd_client_fetch) goes:
 *   1. the self-test (client/selftest.h) on the bytes in memory: a failure installs nothing;
 *   2. the bytes into the slot not in use: temp file, fsync, rename, directory fsync;
 *   3. current.qm -> that slot: a new link renamed over it, directory fsync;
 *   4. the state file: temp, fsync, rename, directory fsync (the commit point).
 * Opening the store recovers: the state file says which slot holds the installed model; that
 * slot's bytes must have its sha256 (else the store is empty: the device fetches again), and
 * current.qm is pointed back at it (a crash between 3 and 4 left it on the new slot). The state
 * never names a slot before the slot's bytes are durable, so killed at any step the agent comes
 * back on the old model or the new one, whole.
 *
 * Usage:
 *     struct qd_agent_store st;
 *     qd_agent_store_open(&st, "/var/lib/quantd-agent");  // st.version 0: nothing installed
 *     ... qd_client_fetch(c, me, NULL, v, st.version, st.qm, st.len, pk, &m) ...
 *     if (qd_agent_store_install(&st, &m) == QD_ESELFTEST) report selftest-failed;
 *     else ack m.m.version;
 *     qd_agent_store_close(&st);
 */
#ifndef QD_CLIENT_AGENT_H
#define QD_CLIENT_AGENT_H

#include <stddef.h>
#include <stdint.h>

#include "client/client.h"

struct qd_agent_store {
    char dir[1024];
    int slot;        /* 0: slot-a, 1: slot-b; -1: nothing installed */
    int64_t version; /* 0: nothing installed */
    char sha[65];
    char policy[2048];
    uint8_t *qm; /* the installed model's bytes (malloc'd): the base of the next patch */
    size_t len;
    /* tests only: called before each install step (1..4); a test kills the process there */
    void (*before_step)(int step);
    /* tests only: may change a fetched model before its install (fault injection) */
    void (*tamper)(struct qd_client_model *m);
};

/* What became of a version (qd_agent_take). */
struct qd_agent_took {
    int installed;      /* installed (and acked when asked) */
    qd_err refused;     /* else why: a refusal's code, or QD_ESELFTEST */
    char encoding[8];   /* how it travelled: raw, zstd, patch */
    size_t len, wire, reply_bytes;
};

/* Opens (creating the directory) and recovers the store. A damaged slot or state is not an
 * error: the store is then empty and the device fetches its model again. dir NULL: a store in
 * memory only (the simulator's devices without a directory). */
qd_err qd_agent_store_open(struct qd_agent_store *s, const char *dir);
/* Installs a verified model (self-test first: QD_ESELFTEST installs nothing). */
qd_err qd_agent_store_install(struct qd_agent_store *s, const struct qd_client_model *m);
void qd_agent_store_close(struct qd_agent_store *s);

/* The device's half of one version v (what quantd-agent and the simulator both run): nothing
 * when the store holds v or newer; else fetch it patched against the held model, verify it
 * (manifest, bytes), install it (self-test first), ack it when `ack` is set. A refused model or
 * a failed self-test is reported to the daemon as the device's event, not acked, and leaves the
 * store as it was (t->refused says why); only a failure to talk to the daemon, or to write the
 * store, is an error. */
qd_err qd_agent_take(struct qd_client *c, struct qd_ident *me, const uint8_t pk[QD_PROTO_PUB_BYTES],
                     struct qd_agent_store *s, int64_t v, int ack, struct qd_agent_took *t);

#endif
