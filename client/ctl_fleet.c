/* quantctl's fleet commands: group, groups, set, rollback, revoke, delete, events, pareto. Each
 * builds one admin request from the command line, sends it and prints the reply (as JSON with
 * --json). The daemon checks every field; what is checked here is only what the command line itself
 * must say (a target, a number where one is needed). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client/quantctl.h"
#include "policy/device.h"

static const char *const CMDS[] = {"group",  "groups", "set",    "rollback",
                                   "revoke", "delete", "events", "pareto"};

int ctl_fleet_cmd(const char *cmd)
{
    for (size_t i = 0; i < sizeof CMDS / sizeof *CMDS; i++)
        if (!strcmp(cmd, CMDS[i]))
            return 1;
    return 0;
}

/* A budget flag's value: a number (with k/M/G for sizes) or "P%". */
static int add_budget(cJSON *j, const char *field, const char *v, int size)
{
    if (!v)
        return 0;
    size_t n = strlen(v);
    if (n && v[n - 1] == '%') {
        cJSON_AddStringToObject(j, field, v);
        return 0;
    }
    double x;
    char *end;
    if (size) {
        if (qd_parse_size(v, &x))
            return ctl_bad("%s", qd_errmsg());
    } else if ((x = strtod(v, &end)), end == v || *end)
        return ctl_bad("--%s takes a number or a share like 50%%", field);
    cJSON_AddNumberToObject(j, field, x);
    return 0;
}

/* "4,8" -> [4,8]; "a,b" -> ["a","b"] (strings), into j[field]. */
static int add_list(cJSON *j, const char *field, const char *v, int numbers)
{
    cJSON *a = cJSON_AddArrayToObject(j, field);
    char buf[256];
    snprintf(buf, sizeof buf, "%s", v);
    for (char *save, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        char *end;
        double x = strtod(t, &end);
        if (numbers && (end == t || *end))
            return ctl_bad("--bits takes widths like 4,8 (got %s)", v);
        cJSON_AddItemToArray(a, numbers ? cJSON_CreateNumber(x) : cJSON_CreateString(t));
    }
    return 0;
}

/* The request of a set command. */
static int set_request(struct args *a, cJSON *j)
{
    int rc = add_budget(j, "flash", a->flash, 1) || add_budget(j, "ram", a->ram, 1) ||
             add_budget(j, "latency_ms", a->latency_ms, 0) ||
             add_budget(j, "energy_mj", a->energy_mj, 0);
    if (rc)
        return 2;
    if (a->floor) {
        char *end;
        double f = strtod(a->floor, &end);
        if (end == a->floor || *end)
            return ctl_bad("--accuracy-floor takes a number like 0.9 (got %s)", a->floor);
        cJSON_AddNumberToObject(j, "accuracy_floor", f);
    }
    if (a->bits && add_list(j, "bits", a->bits, 1))
        return 2;
    if (a->pin) {
        char *end;
        double v = strtod(a->pin, &end);
        if (!strcmp(a->pin, "current"))
            cJSON_AddStringToObject(j, "pin", "current");
        else if (end != a->pin && !*end)
            cJSON_AddNumberToObject(j, "pin", v);
        else
            return ctl_bad("--pin takes a version number or current (got %s)", a->pin);
    }
    if (a->clear) {
        if (!strcmp(a->clear, "all"))
            cJSON_AddTrueToObject(j, "clear");
        else if (add_list(j, "clear", a->clear, 0))
            return 2;
    }
    return 0;
}

/* "device" (the first argument) or "group" (--group). */
static int add_target(struct args *a, cJSON *j, const char *cmd)
{
    if ((a->npos >= 2) == (a->group != NULL))
        return ctl_bad("%s names a device ID or --group G (one of them)", cmd);
    if (a->group)
        cJSON_AddStringToObject(j, "group", a->group);
    else
        cJSON_AddStringToObject(j, "device", a->pos[1]);
    return 0;
}

static int request(struct args *a, cJSON *j)
{
    const char *cmd = a->pos[0];
    if (!strcmp(cmd, "group")) {
        if (a->npos < 3)
            return ctl_bad("%s", "group G ID... (G = none: out of their group)");
        cJSON_AddStringToObject(j, "group", strcmp(a->pos[1], "none") ? a->pos[1] : "");
        cJSON *d = cJSON_AddArrayToObject(j, "devices");
        for (int i = 2; i < a->npos; i++)
            cJSON_AddItemToArray(d, cJSON_CreateString(a->pos[i]));
    } else if (!strcmp(cmd, "groups"))
        cJSON_ReplaceItemInObject(j, "op", cJSON_CreateString("group"));
    else if (!strcmp(cmd, "set")) {
        if (add_target(a, j, cmd) || set_request(a, j))
            return 2;
        if (cJSON_GetArraySize(j) <= 2)
            return ctl_bad("%s", "set needs a setting (--flash, --ram, --latency-ms, "
                                 "--energy-mj, --accuracy-floor, --bits, --pin, --clear)");
    } else if (!strcmp(cmd, "rollback")) {
        if (add_target(a, j, cmd))
            return 2;
        if (a->to)
            cJSON_AddNumberToObject(j, "to", (double)a->to);
    } else if (!strcmp(cmd, "revoke") || !strcmp(cmd, "delete")) {
        if (a->npos != 2)
            return ctl_bad("%s needs a device ID", cmd);
        cJSON_AddStringToObject(j, "device", a->pos[1]);
    } else if (!strcmp(cmd, "pareto")) {
        if (a->npos != 2)
            return ctl_bad("%s", "pareto PROFILE [--metric flash|ram|latency_ms|energy_mj] "
                                 "[--points N] [-o PLOT.svg|.png]");
        cJSON_AddStringToObject(j, "profile", a->pos[1]);
        if (a->metric)
            cJSON_AddStringToObject(j, "metric", a->metric);
        if (a->points)
            cJSON_AddNumberToObject(j, "points", (double)a->points);
    } else { /* events */
        if (a->npos >= 2)
            cJSON_AddStringToObject(j, "device", a->pos[1]);
        if (a->group)
            cJSON_AddStringToObject(j, "group", a->group);
        if (a->kind)
            cJSON_AddStringToObject(j, "kind", a->kind);
        if (a->since)
            cJSON_AddNumberToObject(j, "since", (double)a->since);
        if (a->limit != 1000)
            cJSON_AddNumberToObject(j, "limit", (double)a->limit);
    }
    return 0;
}

static void print(const char *cmd, const cJSON *r)
{
    const cJSON *x;
    if (!strcmp(cmd, "group"))
        printf("group %s: %.0f devices moved\n",
               *ctl_str(r, "group") ? ctl_str(r, "group") : "none", ctl_num(r, "moved"));
    else if (!strcmp(cmd, "groups")) {
        printf("%-20s %8s  %s\n", "group", "devices", "settings");
        cJSON_ArrayForEach(x, cJSON_GetObjectItem(r, "groups"))
        {
            char *s = cJSON_PrintUnformatted(cJSON_GetObjectItem(x, "settings"));
            printf("%-20s %8.0f  %s\n", ctl_str(x, "name"), ctl_num(x, "devices"), s);
            free(s);
        }
    } else if (!strcmp(cmd, "set")) {
        char *s = cJSON_PrintUnformatted(cJSON_GetObjectItem(r, "settings"));
        printf("settings now %s; %.0f devices being decided again\n", s, ctl_num(r, "redeciding"));
        free(s);
    } else if (!strcmp(cmd, "rollback")) {
        cJSON_ArrayForEach(x, cJSON_GetObjectItem(r, "devices"))
            printf("%s: version %.0f carries version %.0f's model (was %.0f); pinned to %.0f\n",
                   ctl_str(x, "id"), ctl_num(x, "version"), ctl_num(x, "to"), ctl_num(x, "from"),
                   ctl_num(x, "to"));
    } else if (!strcmp(cmd, "revoke") || !strcmp(cmd, "delete"))
        printf("%s: %s\n", ctl_str(r, "device"), ctl_str(r, "status"));
    else
        cJSON_ArrayForEach(x, cJSON_GetObjectItem(r, "events"))
        {
            time_t t = (time_t)(ctl_num(x, "ts_ms") / 1000);
            char when[32];
            strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", gmtime(&t));
            printf("%s  %-16s %-10s %-16s %s\n", when,
                   *ctl_str(x, "device") ? ctl_str(x, "device") : "-",
                   *ctl_str(x, "group") ? ctl_str(x, "group") : "-", ctl_str(x, "kind"),
                   ctl_str(x, "detail"));
        }
}

/* The frontier as a table, and plotted by gnuplot: in the terminal, or into -o FILE (.svg or
 * .png). Without gnuplot, the table alone (and a note). */
static void pareto_print(const struct args *a, const cJSON *r)
{
    const char *m = ctl_str(r, "metric");
    const cJSON *x;
    printf("pareto frontier of %s on %s: predicted accuracy against %s\n", m, ctl_str(r, "profile"),
           m);
    printf("%12s %9s %9s %9s %9s %7s  %s\n", "budget", "flash", "ram", "lat ms", "mJ", "acc%",
           "policy");
    cJSON_ArrayForEach(x, cJSON_GetObjectItem(r, "points")) printf(
        "%12.4g %9.0f %9.0f %9.3f %9.4f %7.2f  %s\n", ctl_num(x, "budget"), ctl_num(x, "flash"),
        ctl_num(x, "ram"), ctl_num(x, "latency_ms"), ctl_num(x, "energy_mj"),
        100 * ctl_num(x, "predicted_accuracy"), ctl_str(x, "policy"));
    fflush(stdout); /* the table before gnuplot's plot */
    FILE *g = popen("gnuplot 2>/dev/null", "w");
    if (!g) {
        puts("(no plot: gnuplot is not installed)");
        return;
    }
    const char *ext = a->out ? strrchr(a->out, '.') : NULL;
    if (a->out)
        fprintf(g, "set terminal %s size 800,500\nset output '%s'\n",
                ext && !strcmp(ext, ".png") ? "pngcairo" : "svg", a->out);
    else
        fprintf(g, "set terminal dumb size 100,28\n");
    fprintf(g,
            "set title 'quantd pareto: %s, %s'\nset xlabel '%s'\nset ylabel 'predicted "
            "accuracy (%%)'\nset key off\nplot '-' using 1:2 with linespoints pt 7\n",
            ctl_str(r, "profile"), m, m);
    cJSON_ArrayForEach(x, cJSON_GetObjectItem(r, "points"))
        fprintf(g, "%.9g %.4f\n", ctl_num(x, m), 100 * ctl_num(x, "predicted_accuracy"));
    fprintf(g, "e\n");
    if (pclose(g))
        puts("(no plot: gnuplot failed or is not installed)");
    else if (a->out)
        printf("plot: %s\n", a->out);
}

int ctl_fleet(struct args *a, struct qd_client *c)
{
    struct qd_ident admin;
    qd_err e = ctl_admin_ident(a, &admin);
    if (e)
        return ctl_fail(e);
    const char *cmd = a->pos[0];
    cJSON *j = ctl_op(cmd), *r = NULL;
    int rc = request(a, j);
    if (rc) {
        cJSON_Delete(j);
        return rc;
    }
    e = qd_client_call(c, &admin, j, &r, NULL, NULL);
    if (e)
        return ctl_fail_reply(e, r, a->json);
    if (a->json)
        ctl_print_json(r);
    else if (!strcmp(cmd, "pareto"))
        pareto_print(a, r);
    else
        print(cmd, r);
    cJSON_Delete(r);
    return 0;
}
