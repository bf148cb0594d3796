/* What state.c and state_fleet.c share: the SQLite handle, its prepared statements (one
 * table, SQL in state.c) and the helpers around them. Nothing here is API (see state.h). */
#ifndef QD_DAEMON_STATE_IMPL_H
#define QD_DAEMON_STATE_IMPL_H

#include <sqlite3.h>

#include "daemon/state.h"

enum {
    S_META_GET,
    S_META_SET,
    S_DEV_ALL,
    S_DEV_ADD,
    S_DEV_KEY,
    S_DEV_HELLO,
    S_DEV_NONCE,
    S_DEC_INS,
    S_VER_INS,
    S_DEV_VER,
    S_BLOB_INS,
    S_ACK_VER,
    S_ACK_DEV,
    S_VER_SHA,
    S_BLOB_META,
    S_BLOB_ALL,
    S_BLOB_BB,
    S_HIST_VER,
    S_HIST_DEC,
    S_HIST_EVT,
    S_EVENT,
    S_DEV_GROUP,
    S_DEV_STATUS,
    S_SET_PUT,
    S_SET_DEL,
    S_SET_ALL,
    S_ROLL_TARGET,
    S_VER_ACKED,
    S_BEGIN,
    S_COMMIT,
    S_ROLLBACK,
    S_SAVE,
    S_RELEASE,
    S_ROLLBACK_TO,
    S_COUNT
};

struct qd_state {
    sqlite3 *db;
    sqlite3_stmt *st[S_COUNT];
    int batch; /* inside qd_state_batch_begin: transactions are savepoints of the batch's */
};

qd_err qds_dberr(qd_state_t *s, const char *what);
int64_t qds_now_ms(void);                                  /* wall clock, ms */
sqlite3_stmt *qds_prep(qd_state_t *s, int i);              /* reset, bindings cleared */
void qds_bind_text(sqlite3_stmt *q, int i, const char *t); /* NULL binds NULL */
/* Runs a statement with no rows to return (a constraint: QD_EEXIST). */
qd_err qds_run(qd_state_t *s, sqlite3_stmt *q, const char *what);
/* A transaction of its own, or a savepoint inside the open batch (S_BEGIN, S_COMMIT). */
qd_err qds_tx(qd_state_t *s, int which);
void qds_tx_rollback(qd_state_t *s);

#endif
