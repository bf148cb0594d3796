/* What quantctl's files share: the parsed command line and the helpers that print replies and
 * errors. ctl_fleet.c holds the fleet commands (groups, set, rollback, revoke, delete, events). */
#ifndef QD_CLIENT_QUANTCTL_H
#define QD_CLIENT_QUANTCTL_H

#include "client/client.h"

struct args {
    const char *control, *push, *admin_key, *state_dir, *key, *profile, *out, *data_dir, *sha;
    int json, timeout, devices, images, help, wait, count, unacked, fleet_ops;
    long offset, limit, version, to, since, unseen;
    /* fleet ops (ctl_fleet.c) */
    const char *group, *flash, *ram, *latency_ms, *energy_mj, *floor, *bits, *pin, *clear, *kind,
        *status, *metric;
    long points;
    struct qd_client_ctx ctx;
    const char *pos[64];
    int npos;
};

int ctl_bad(const char *fmt, const char *a);      /* usage error: exit status 2 */
int ctl_fail(qd_err e);                           /* prints the error: exit status 1 */
int ctl_fail_reply(qd_err e, cJSON *r, int json); /* also an error reply's extra fields */
void ctl_print_json(const cJSON *j);
qd_err ctl_admin_ident(const struct args *a, struct qd_ident *who);
cJSON *ctl_op(const char *name);
double ctl_num(const cJSON *o, const char *k);      /* NAN when absent */
const char *ctl_str(const cJSON *o, const char *k); /* "" when absent */
/* group, groups, set, rollback, revoke, delete, events: 1 when cmd is one of them. */
int ctl_fleet_cmd(const char *cmd);
int ctl_fleet(struct args *a, struct qd_client *c);
/* simulate (ctl_sim.c): a fleet of simulated devices through two contexts, then (--fleet-ops)
 * a group override and a rollback, each decision with the budget that bound it. */
int ctl_simulate(struct args *a);

#endif
