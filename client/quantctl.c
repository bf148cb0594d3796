/* quantctl: the command line of quantd. Query and steer the daemon (status, devices, device,
 * decide, keys), act as a device (hello, report, fetch, ack), and simulate a fleet.
 * Endpoints and the admin key come from flags (--control, --push, --admin-key or --state-dir,
 * whose admin.key is used); --json prints the daemon's replies as they are. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "client/quantctl.h"
#include "client/sim.h"
#include "core/file.h"
#include "nn/kernels.h"
#include "policy/device.h"

static const char USAGE[] =
    "usage: quantctl [--control URL] [--push URL] [--admin-key FILE | --state-dir DIR]\n"
    "                [--json] [--timeout MS] COMMAND ...\n"
    "commands:\n"
    "  status [--wait]               health, progress and counters (--wait: until ready,\n"
    "                                one progress line, updated in place on a terminal)\n"
    "  devices [--offset N] [--limit N] [--group G] [--profile P] [--unacked]\n"
    "          [--unseen S] [--status active|revoked|deleted]   (S: not heard from for S s)\n"
    "  device ID                     one device: versions and decisions\n"
    "  decide --profile P [CONTEXT]  dry run: the policy quantd would choose\n"
    "  keys add ID | keys rotate ID | keys pub\n"
    "  group G ID...                 put devices in group G (G = none: out of their group)\n"
    "  groups                        the groups, their sizes and settings\n"
    "  set ID | --group G SETTINGS   a device's or a group's settings; re-decides at once\n"
    "      [--flash B|P%] [--ram B|P%] [--latency-ms MS|P%] [--energy-mj MJ|P%] (caps; P%:\n"
    "      of the int8 model's figure) [--accuracy-floor F] [--bits 4,8] [--pin N|current]\n"
    "      [--clear all|budgets|flash|...|pin[,...]]\n"
    "  rollback ID | --group G [--to V]  a new version carrying an earlier model (default:\n"
    "                                the last acked before the current); the device stays\n"
    "                                pinned there until set --clear pin\n"
    "  revoke ID | delete ID         its key stops working now (keys rotate brings it back)\n"
    "  events [--device ID] [--group G] [--kind K] [--since UNIX_S] [--limit N]\n"
    "  hello ID --key K --profile P  (as the device)\n"
    "  report ID --key K [CONTEXT]   (as the device) report a context; prints the decision\n"
    "  fetch ID --key K [--version N] -o F.qm   (as the device) fetch and verify a model\n"
    "  ack ID --key K --version N --sha S       (as the device) say it runs that version\n"
    "  watch [ID ...] [--count N]    notifications as they come (all devices when no ID)\n"
    "  pareto PROFILE [--metric flash|ram|latency_ms|energy_mj] [--points N] [-o F.svg|.png]\n"
    "                                the frontier of that figure against predicted accuracy\n"
    "  simulate [--devices N] [--images N] [--data-dir DIR] [--fleet-ops]   a fleet:\n"
    "                                register, receive models, change context (battery 15%,\n"
    "                                free RAM halved); --fleet-ops: then a flash cap on half\n"
    "                                of them (a group) and that group's rollback\n"
    "CONTEXT: [--free-flash B] [--free-ram B] [--latency MS] [--energy MJ] [--battery F]\n"
    "         (sizes take k/M suffixes)\n";

int ctl_bad(const char *fmt, const char *a)
{
    fprintf(stderr, "quantctl: ");
    fprintf(stderr, fmt, a);
    fprintf(stderr, "\n%s", USAGE);
    return 2;
}

int ctl_fail(qd_err e)
{
    fprintf(stderr, "quantctl: %s: %s\n", qd_err_name(e), qd_errmsg());
    return 1;
}

static int parse(int argc, char **argv, struct args *a)
{
    memset(a, 0, sizeof *a);
    a->control = "tcp://127.0.0.1:7411";
    a->push = "tcp://127.0.0.1:7412";
    a->timeout = 10000;
    a->devices = 12;
    a->images = 200;
    a->limit = 1000;
    a->data_dir = "data";
    a->ctx = QD_CLIENT_CTX_NONE;
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i];
        if (f[0] != '-' || f[1] != '-') {
            if (!strcmp(f, "-o") && i + 1 < argc) {
                a->out = argv[++i];
                continue;
            }
            if (a->npos == 64)
                return ctl_bad("too many arguments at %s", f);
            a->pos[a->npos++] = f;
            continue;
        }
        if (!strcmp(f, "--json")) {
            a->json = 1;
            continue;
        }
        if (!strcmp(f, "--help") || !strcmp(f, "-h")) {
            a->help = 1;
            return 0;
        }
        if (!strcmp(f, "--wait")) {
            a->wait = 1;
            continue;
        }
        if (!strcmp(f, "--unacked")) {
            a->unacked = 1;
            continue;
        }
        if (!strcmp(f, "--fleet-ops")) {
            a->fleet_ops = 1;
            continue;
        }
        if (i + 1 >= argc)
            return ctl_bad("flag %s needs a value", f);
        const char *v = argv[++i];
        char *end;
        double num = strtod(v, &end);
        int isnum = end != v && !*end && isfinite(num);
#define STR(name, field)                                                                           \
    if (!strcmp(f, name)) {                                                                        \
        a->field = v;                                                                              \
        continue;                                                                                  \
    }
#define NUM(name, field, lo, hi)                                                                   \
    if (!strcmp(f, name)) {                                                                        \
        if (!isnum || num < (lo) || num > (hi))                                                    \
            return ctl_bad("%s: out of range or not a number", f);                                 \
        a->field = num;                                                                            \
        continue;                                                                                  \
    }
        STR("--control", control)
        STR("--push", push)
        STR("--admin-key", admin_key)
        STR("--state-dir", state_dir)
        STR("--key", key)
        STR("--profile", profile)
        STR("--data-dir", data_dir)
        STR("--sha", sha)
        STR("--group", group)
        STR("--flash", flash)
        STR("--ram", ram)
        STR("--latency-ms", latency_ms)
        STR("--energy-mj", energy_mj)
        STR("--accuracy-floor", floor)
        STR("--bits", bits)
        STR("--pin", pin)
        STR("--clear", clear)
        STR("--kind", kind)
        STR("--status", status)
        STR("--metric", metric)
        NUM("--points", points, 2, 64)
        NUM("--to", to, 1, 1e15)
        NUM("--since", since, 0, 1e12)
        NUM("--unseen", unseen, 1, 1e12)
        NUM("--count", count, 1, 1e9)
        NUM("--timeout", timeout, 1, 3.6e6)
        NUM("--devices", devices, 1, 1e6)
        NUM("--images", images, 0, 1e6)
        NUM("--offset", offset, 0, 1e9)
        NUM("--limit", limit, 1, 10000)
        NUM("--version", version, 1, 1e15)
        NUM("--latency", ctx.latency_ms, 1e-9, 1e9)
        NUM("--energy", ctx.energy_mj, 1e-12, 1e9)
        NUM("--battery", ctx.battery, 0, 1)
        if (!strcmp(f, "--free-flash") || !strcmp(f, "--free-ram")) {
            double b;
            if (qd_parse_size(v, &b))
                return ctl_bad("%s", qd_errmsg());
            *(!strcmp(f, "--free-flash") ? &a->ctx.free_flash : &a->ctx.free_ram) = b;
            continue;
        }
        return ctl_bad("unknown flag %s", f);
    }
    if (!a->npos)
        return ctl_bad("%s", "no command");
    return 0;
}

void ctl_print_json(const cJSON *j)
{
    char *t = cJSON_PrintUnformatted(j);
    puts(t ? t : "null");
    free(t);
}

qd_err ctl_admin_ident(const struct args *a, struct qd_ident *who)
{
    char path[1100];
    if (a->admin_key)
        snprintf(path, sizeof path, "%s", a->admin_key);
    else if (a->state_dir)
        snprintf(path, sizeof path, "%s/admin.key", a->state_dir);
    else if (getenv("QUANTD_ADMIN_KEY"))
        snprintf(path, sizeof path, "%s", getenv("QUANTD_ADMIN_KEY"));
    else
        snprintf(path, sizeof path, "state/admin.key");
    return qd_ident_init(who, "admin", path);
}

cJSON *ctl_op(const char *name)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "op", name);
    return j;
}

double ctl_num(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItem(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

const char *ctl_str(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItem(o, k);
    return cJSON_IsString(v) ? v->valuestring : "";
}

static void print_decision(const cJSON *r)
{
    const cJSON *c = cJSON_GetObjectItem(r, "costs"), *b = cJSON_GetObjectItem(r, "budget");
    printf("policy %s\n", ctl_str(r, "policy"));
    printf("  flash   %10.0f bytes  budget %.0f\n", ctl_num(c, "flash"), ctl_num(b, "flash"));
    printf("  RAM     %10.0f bytes  budget %.0f\n", ctl_num(c, "ram"), ctl_num(b, "ram"));
    printf("  latency %10.3f ms     budget %g\n", ctl_num(c, "latency_ms"),
           ctl_num(b, "latency_ms"));
    printf("  energy  %10.4f mJ     budget %g\n", ctl_num(c, "energy_mj"), ctl_num(b, "energy_mj"));
    printf("  predicted loss %.4f; search %.0f us%s\n", ctl_num(r, "predicted_loss"),
           ctl_num(r, "search_us"),
           cJSON_IsFalse(cJSON_GetObjectItem(r, "proven")) ? " (stopped at the node limit: the "
                                                             "best policy found, not proven)"
                                                           : "");
    if (cJSON_GetObjectItem(r, "version"))
        printf("  version %.0f%s, sha256 %s\n", ctl_num(r, "version"),
               cJSON_IsTrue(cJSON_GetObjectItem(r, "changed")) ? " (new)" : "",
               ctl_str(r, "sha256"));
}

/* Prints an error reply's extra fields (EBUDGET: the smallest achievable figures). */
int ctl_fail_reply(qd_err e, cJSON *r, int json)
{
    if (json && r)
        ctl_print_json(r);
    const cJSON *s = cJSON_GetObjectItem(r, "smallest");
    int rc = ctl_fail(e);
    if (!json && s) {
        char *t = cJSON_PrintUnformatted(s);
        fprintf(stderr, "quantctl: smallest achievable: %s\n", t);
        free(t);
    }
    cJSON_Delete(r);
    return rc;
}

/* Until the backbone is ready (or failed): one progress line, rewritten in place on a terminal,
 * a new line on each change otherwise. */
static qd_err wait_ready(struct qd_client *c, int json)
{
    char last[256] = "";
    int tty = isatty(STDOUT_FILENO) && !json;
    for (;;) {
        cJSON *r = NULL;
        QD_TRY(qd_client_call(c, NULL, ctl_op("health"), &r, NULL, NULL));
        char line[256];
        int n = snprintf(line, sizeof line, "quantd: %s", ctl_str(r, "phase"));
        if (cJSON_GetObjectItem(r, "epoch"))
            snprintf(line + n, sizeof line - (size_t)n, " (epoch %.0f of %.0f done)",
                     ctl_num(r, "epoch"), ctl_num(r, "epochs"));
        int done =
            cJSON_IsTrue(cJSON_GetObjectItem(r, "ready")) || !strcmp(ctl_str(r, "phase"), "failed");
        cJSON_Delete(r);
        if (!json && strcmp(line, last)) {
            if (tty)
                printf("\r\033[K%s", line);
            else
                printf("%s\n", line);
            fflush(stdout);
            snprintf(last, sizeof last, "%s", line);
        }
        if (done)
            break;
        usleep(250000);
    }
    if (tty)
        printf("\n");
    return QD_OK;
}

static int cmd_status(struct args *a, struct qd_client *c)
{
    cJSON *r = NULL;
    qd_err e = a->wait ? wait_ready(c, a->json) : QD_OK;
    if (!e)
        e = qd_client_call(c, NULL, ctl_op("health"), &r, NULL, NULL);
    if (e)
        return ctl_fail_reply(e, r, a->json);
    struct qd_ident admin;
    cJSON *s = NULL;
    if (!ctl_admin_ident(a, &admin)) {
        if ((e = qd_client_call(c, &admin, ctl_op("stats"), &s, NULL, NULL))) {
            cJSON_Delete(r);
            return ctl_fail_reply(e, s, a->json);
        }
    }
    const cJSON *src = s ? s : r;
    if (a->json)
        ctl_print_json(src);
    else {
        printf("quantd: %s", ctl_str(src, "phase"));
        if (cJSON_GetObjectItem(src, "epoch"))
            printf(" (epoch %.0f of %.0f done)", ctl_num(src, "epoch"), ctl_num(src, "epochs"));
        if (*ctl_str(src, "message"))
            printf(": %s", ctl_str(src, "message"));
        printf(", up %.0f s, %.0f devices\n", ctl_num(src, "uptime_s"), ctl_num(src, "devices"));
        if (*ctl_str(src, "model"))
            printf("backbone: %s on %s, %.0f layers (%s)\n", ctl_str(src, "model"),
                   ctl_str(src, "data"), ctl_num(src, "layers"), ctl_str(src, "backbone"));
        if (s)
            printf("requests %.0f, errors %.0f, decisions %.0f, builds %.0f, blobs %.0f, "
                   "notifications %.0f (+%.0f repeated), fetches %.0f (%.0f model bytes), acks "
                   "%.0f, unacked %.0f\n",
                   ctl_num(s, "requests"), ctl_num(s, "errors"), ctl_num(s, "decisions"),
                   ctl_num(s, "builds"), ctl_num(s, "blobs"), ctl_num(s, "pushes"),
                   ctl_num(s, "repushes"), ctl_num(s, "fetches"), ctl_num(s, "fetch_bytes"),
                   ctl_num(s, "acks"), ctl_num(s, "unacked"));
        else
            printf("(no admin key: counters not shown)\n");
    }
    cJSON_Delete(r);
    cJSON_Delete(s);
    return 0;
}

static void print_keys(const cJSON *r)
{
    if (*ctl_str(r, "key"))
        printf("device %s key %s\n", ctl_str(r, "id"), ctl_str(r, "key"));
    printf("model signing key (pin it on devices): %s\n", ctl_str(r, "sign_pub"));
}

/* keys add|rotate ID: the reply as the daemon would give it in clear, made from the sealed one. */
static int keys_sealed(struct args *a, struct qd_client *c, struct qd_ident *admin)
{
    char key[2 * QD_PROTO_KEY_BYTES + 1], pkhex[2 * QD_PROTO_PUB_BYTES + 1];
    uint8_t pk[QD_PROTO_PUB_BYTES];
    qd_err e = qd_client_device_key(c, admin, a->pos[1], a->pos[2], key);
    if (!e)
        e = qd_client_sign_pub(c, admin, pk);
    if (e)
        return ctl_fail(e);
    qd_proto_hex(pk, sizeof pk, pkhex);
    cJSON *r = cJSON_CreateObject();
    cJSON_AddBoolToObject(r, "ok", 1);
    cJSON_AddStringToObject(r, "id", a->pos[2]);
    cJSON_AddStringToObject(r, "key", key);
    cJSON_AddStringToObject(r, "sign_pub", pkhex);
    if (a->json)
        ctl_print_json(r);
    else
        print_keys(r);
    cJSON_Delete(r);
    return 0;
}

static int cmd_admin(struct args *a, struct qd_client *c)
{
    struct qd_ident admin;
    qd_err e = ctl_admin_ident(a, &admin);
    if (e)
        return ctl_fail(e);
    const char *cmd = a->pos[0];
    cJSON *j = ctl_op(cmd), *r = NULL;
    if (!strcmp(cmd, "devices")) {
        cJSON_AddNumberToObject(j, "offset", (double)a->offset);
        cJSON_AddNumberToObject(j, "limit", (double)a->limit);
        if (a->group)
            cJSON_AddStringToObject(j, "group", a->group);
        if (a->profile)
            cJSON_AddStringToObject(j, "profile", a->profile);
        if (a->status)
            cJSON_AddStringToObject(j, "status", a->status);
        if (a->unacked)
            cJSON_AddTrueToObject(j, "unacked");
        if (a->unseen)
            cJSON_AddNumberToObject(j, "unseen_s", (double)a->unseen);
    } else if (!strcmp(cmd, "device")) {
        if (a->npos < 2) {
            cJSON_Delete(j);
            return ctl_bad("%s", "device needs an ID");
        }
        cJSON_AddStringToObject(j, "id", a->pos[1]);
    } else if (!strcmp(cmd, "decide")) {
        if (!a->profile && a->npos < 2) {
            cJSON_Delete(j);
            return ctl_bad("%s", "decide needs --profile P or a device ID");
        }
        if (a->profile)
            cJSON_AddStringToObject(j, "profile", a->profile);
        if (a->npos >= 2)
            cJSON_AddStringToObject(j, "device", a->pos[1]);
        qd_client_ctx_json(j, &a->ctx);
    } else if (!strcmp(cmd, "keys")) {
        if (a->npos < 2 || (strcmp(a->pos[1], "pub") && a->npos < 3)) {
            cJSON_Delete(j);
            return ctl_bad("%s", "keys add ID | keys rotate ID | keys pub");
        }
        cJSON_AddStringToObject(j, "action", a->pos[1]);
        if (strcmp(a->pos[1], "pub")) { /* the device key comes sealed to a one-time key */
            cJSON_Delete(j);
            return keys_sealed(a, c, &admin);
        }
    }
    e = qd_client_call(c, &admin, j, &r, NULL, NULL);
    if (e)
        return ctl_fail_reply(e, r, a->json);
    if (a->json)
        ctl_print_json(r);
    else if (!strcmp(cmd, "devices")) {
        printf("%.0f devices\n%-20s %-16s %-10s %8s %8s %9s  %s\n", ctl_num(r, "total"), "id",
               "profile", "group", "version", "acked", "seen", "policy");
        const cJSON *x;
        double now = (double)qd_proto_now_us() / 1e6;
        cJSON_ArrayForEach(x, cJSON_GetObjectItem(r, "devices"))
        {
            char seen[32] = "never";
            if (!isnan(ctl_num(x, "seen_ms")))
                snprintf(seen, sizeof seen, "%.0fs ago", now - ctl_num(x, "seen_ms") / 1e3);
            printf("%-20s %-16s %-10s %8.0f %8.0f %9s  %s%s%s\n", ctl_str(x, "id"),
                   ctl_str(x, "profile"), *ctl_str(x, "group") ? ctl_str(x, "group") : "-",
                   ctl_num(x, "version"), ctl_num(x, "acked"), seen, ctl_str(x, "policy"),
                   strcmp(ctl_str(x, "status"), "active") ? "  " : "",
                   strcmp(ctl_str(x, "status"), "active") ? ctl_str(x, "status") : "");
        }
    } else if (!strcmp(cmd, "device")) {
        const cJSON *d = cJSON_GetObjectItem(r, "device"), *x;
        printf("%s (%s): version %.0f, acked %.0f, policy %s\n", ctl_str(d, "id"),
               ctl_str(d, "profile"), ctl_num(d, "version"), ctl_num(d, "acked"),
               ctl_str(d, "policy"));
        cJSON_ArrayForEach(x, cJSON_GetObjectItem(d, "versions"))
            printf("  version %3.0f  %s  %s%s\n", ctl_num(x, "version"), ctl_str(x, "sha256"),
                   ctl_str(x, "policy"), cJSON_GetObjectItem(x, "acked_ms") ? "  acked" : "");
    } else if (!strcmp(cmd, "decide"))
        print_decision(r);
    else if (!strcmp(cmd, "keys"))
        print_keys(r);
    cJSON_Delete(r);
    return 0;
}

static int cmd_device(struct args *a, struct qd_client *c)
{
    const char *cmd = a->pos[0];
    if (a->npos < 2 || !a->key)
        return ctl_bad("%s needs ID and --key K", cmd);
    struct qd_ident who;
    qd_err e = qd_ident_init(&who, a->pos[1], a->key);
    if (e)
        return ctl_fail(e);
    cJSON *r = NULL;
    if (!strcmp(cmd, "hello")) {
        if (!a->profile)
            return ctl_bad("%s", "hello needs --profile P");
        e = qd_client_hello(c, &who, a->profile, &r);
    } else if (!strcmp(cmd, "report"))
        e = qd_client_report(c, &who, &a->ctx, &r);
    else if (!strcmp(cmd, "ack")) {
        if (!a->version || !a->sha)
            return ctl_bad("%s", "ack needs --version N and --sha S");
        cJSON *j = ctl_op("ack");
        cJSON_AddNumberToObject(j, "version", (double)a->version);
        cJSON_AddStringToObject(j, "sha256", a->sha);
        e = qd_client_call(c, &who, j, &r, NULL, NULL);
    } else { /* fetch: verify with the daemon's key (admin) */
        if (!a->out)
            return ctl_bad("%s", "fetch needs -o FILE");
        struct qd_ident admin;
        uint8_t pk[QD_PROTO_PUB_BYTES];
        struct qd_client_model m;
        if ((e = ctl_admin_ident(a, &admin)) || (e = qd_client_sign_pub(c, &admin, pk)) ||
            (e = qd_client_fetch(c, &who, NULL, a->version, 0, NULL, 0, pk, &m)))
            return ctl_fail(e);
        e = qd_file_write_atomic(a->out, m.qm, m.len);
        if (e) {
            qd_client_model_fini(&m);
            return ctl_fail(e);
        }
        if (a->json)
            printf("{\"file\":\"%s\",\"bytes\":%zu,\"version\":%lld,\"sha256\":\"%s\","
                   "\"policy\":\"%s\",\"expires\":%lld,\"verified\":true}\n",
                   a->out, m.len, (long long)m.m.version, m.m.sha, m.m.policy,
                   (long long)m.m.expires);
        else
            printf("%s: version %lld, %zu bytes, sha256 %s, manifest signature verified\n", a->out,
                   (long long)m.m.version, m.len, m.m.sha);
        qd_client_model_fini(&m);
        return 0;
    }
    if (e)
        return ctl_fail_reply(e, r, a->json);
    if (a->json)
        ctl_print_json(r);
    else if (!strcmp(cmd, "report"))
        print_decision(r);
    else
        printf("hello: version %.0f, acked %.0f\n", ctl_num(r, "version"), ctl_num(r, "acked"));
    cJSON_Delete(r);
    return 0;
}

/* Notifications as they come: one line each (or the JSON), --count of them or until killed. */
static int cmd_watch(struct args *a)
{
    struct qd_client c;
    qd_err e = qd_client_open(&c, a->control, a->push, a->timeout);
    if (e)
        return ctl_fail(e);
    for (int i = 1; !e && i < a->npos; i++)
        e = qd_client_subscribe(&c, a->pos[i]);
    if (!e && a->npos < 2)
        e = qd_client_subscribe_all(&c);
    for (int got = 0; !e && (!a->count || got < a->count);) {
        struct qd_proto_note n;
        e = qd_client_notify_recv(&c, 1000, &n);
        if (e == QD_ETIMEDOUT || e == QD_EFORMAT) {
            e = QD_OK;
            continue;
        }
        if (e)
            break;
        got++;
        if (a->json)
            printf("{\"device\":\"%s\",\"version\":%lld,\"sha256\":\"%s\",\"size\":%lld}\n", n.id,
                   (long long)n.version, n.sha, (long long)n.size);
        else
            printf("%s: version %lld is out (%lld bytes, sha256 %.16s...)\n", n.id,
                   (long long)n.version, (long long)n.size, n.sha);
        fflush(stdout);
    }
    qd_client_close(&c);
    return e ? ctl_fail(e) : 0;
}

int main(int argc, char **argv)
{
    struct args a;
    int rc = parse(argc, argv, &a);
    if (rc)
        return rc;
    if (a.help || !a.npos) {
        fputs(USAGE, a.help ? stdout : stderr);
        return a.help ? 0 : 2;
    }
    const char *cmd = a.pos[0];
    if (!strcmp(cmd, "watch"))
        return cmd_watch(&a);
    if (!strcmp(cmd, "simulate"))
        return ctl_simulate(&a);
    struct qd_client c;
    qd_err e = qd_client_open(&c, a.control, NULL, a.timeout);
    if (e)
        return ctl_fail(e);
    if (!strcmp(cmd, "status"))
        rc = cmd_status(&a, &c);
    else if (!strcmp(cmd, "devices") || !strcmp(cmd, "device") || !strcmp(cmd, "decide") ||
             !strcmp(cmd, "keys"))
        rc = cmd_admin(&a, &c);
    else if (ctl_fleet_cmd(cmd))
        rc = ctl_fleet(&a, &c);
    else if (!strcmp(cmd, "hello") || !strcmp(cmd, "report") || !strcmp(cmd, "fetch") ||
             !strcmp(cmd, "ack"))
        rc = cmd_device(&a, &c);
    else
        rc = ctl_bad("unknown command %s", cmd);
    qd_client_close(&c);
    return rc;
}
