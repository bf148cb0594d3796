/* quantlab study: the first seed paper's study on one dataset. For each model family, fp32 and
 * the four post-training modes: model size in bytes, test accuracy and speed of the device
 * runtime. Every step is this same binary run as a subprocess with --json (train when the
 * checkpoint is missing, quantize, run), so the study measures exactly what the commands do.
 * Writes study-<data>.md, .csv, .gp and, with gnuplot, .png and .svg (size vs accuracy). */
#include "lab/study.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/file.h"
#include "nn/data.h"

static const char *modes[] = {"fp32", "fp16", "dynamic", "int8", "int16x8"};
#define NMODES 5

struct row {
    char family[32], mode[16], isa[16];
    double bytes, acc, ips;
    int n;
};

/* Runs this binary with argv (argv[0] ignored), stdout captured; the last line is parsed as
 * JSON into *out. stderr passes through (progress). */
static qd_err run_self(const char *const *argv, cJSON **out)
{
    int fd[2];
    if (pipe(fd))
        return qd_seterr(QD_EIO, "study: pipe: %s", strerror(errno));
    pid_t pid = fork();
    if (pid < 0) {
        close(fd[0]), close(fd[1]);
        return qd_seterr(QD_EIO, "study: fork: %s", strerror(errno));
    }
    if (pid == 0) {
        dup2(fd[1], 1);
        close(fd[0]), close(fd[1]);
        execv("/proc/self/exe", (char *const *)argv);
        _exit(127);
    }
    close(fd[1]);
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    ssize_t k;
    while (buf && (k = read(fd[0], buf + len, cap - len - 1)) > 0) {
        len += (size_t)k;
        if (cap - len < 4096) {
            char *nb = realloc(buf, cap *= 2);
            if (!nb)
                free(buf);
            buf = nb;
        }
    }
    close(fd[0]);
    int st = 0;
    waitpid(pid, &st, 0);
    if (!buf)
        return qd_seterr(QD_ENOMEM, "study: out of memory");
    buf[len] = 0;
    while (len && (buf[len - 1] == '\n' || buf[len - 1] == ' '))
        buf[--len] = 0;
    char *last = strrchr(buf, '\n');
    last = last ? last + 1 : buf;
    if (!WIFEXITED(st) || WEXITSTATUS(st)) {
        free(buf);
        return qd_seterr(QD_EEXTERNAL, "study: quantlab %s %s failed (status %d)", argv[1],
                         argv[2] ? argv[2] : "", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    }
    *out = cJSON_Parse(last);
    free(buf);
    return *out ? QD_OK : qd_seterr(QD_EFORMAT, "study: quantlab %s printed no JSON", argv[1]);
}

static double num(const cJSON *j, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, k);
    return cJSON_IsNumber(v) ? v->valuedouble : -1;
}

static int exists(const char *p)
{
    struct stat s;
    return !stat(p, &s);
}


static qd_err one_family(const struct qd_study_opts *o, const char *fam, const char *data,
                         struct row *rows)
{
    char ckpt[4096], qm[4096], ep[16], lim[16], thr[16], sub[16];
    snprintf(ckpt, sizeof ckpt, "%s/%s-%s.qdck", o->ckpt_dir, fam, data);
    snprintf(ep, sizeof ep, "%d", o->epochs);
    snprintf(lim, sizeof lim, "%d", o->limit);
    snprintf(thr, sizeof thr, "%d", o->threads);
    snprintf(sub, sizeof sub, "%d", o->subset);
    cJSON *j;
    if (!exists(ckpt)) {
        const char *tv[] = {"quantlab", "train", "--model", fam, "--data", data, "--dir", o->dir,
                            "--epochs", ep, "--threads", thr, "--out", ckpt, "--no-eval",
                            "--json", o->subset ? "--subset" : NULL, sub, NULL};
        fprintf(stderr, "study: training %s on %s for %d epoch%s%s -> %s\n", fam, data, o->epochs,
                o->epochs > 1 ? "s" : "", o->subset ? " on a subset" : "", ckpt);
        QD_TRY(run_self(tv, &j));
        cJSON_Delete(j);
    }
    for (int m = 0; m < NMODES; m++) {
        snprintf(qm, sizeof qm, "%s/%s-%s-%s.qm", o->ckpt_dir, fam, data, modes[m]);
        const char *qv[] = {"quantlab", "quantize", "--ckpt", ckpt, "--data", data, "--dir",
                            o->dir, "--mode", modes[m], "--out", qm, "--json", NULL};
        QD_TRY(run_self(qv, &j));
        cJSON_Delete(j);
        const char *rv[] = {"quantlab", "run", "--model", qm, "--data", data, "--dir", o->dir,
                            "--limit", lim, "--threads", thr, "--json", NULL};
        QD_TRY(run_self(rv, &j));
        struct row *r = &rows[m];
        snprintf(r->family, sizeof r->family, "%s", fam);
        snprintf(r->mode, sizeof r->mode, "%s", modes[m]);
        const cJSON *isa = cJSON_GetObjectItemCaseSensitive(j, "isa");
        snprintf(r->isa, sizeof r->isa, "%s",
                 cJSON_IsString(isa) && num(j, "accelerated_layers") > 0 ? isa->valuestring : "-");
        r->bytes = num(j, "bytes");
        r->acc = num(j, "test_acc");
        r->ips = num(j, "images_per_s");
        r->n = (int)num(j, "n");
        cJSON_Delete(j);
        fprintf(stderr, "study: %s %s %s: %.0f bytes, %.2f%%, %.0f images/s\n", data, fam,
                modes[m], r->bytes, 100 * r->acc, r->ips);
    }
    return QD_OK;
}

static qd_err write_outputs(const struct qd_study_opts *o, const char *data, const struct row *rows,
                            int nf, const char *cmdline)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/study-%s.csv", o->out_dir, data);
    FILE *f = fopen(path, "w");
    if (!f)
        return qd_seterr(QD_EIO, "study: %s: %s", path, strerror(errno));
    fprintf(f, "family,mode,bytes,test_acc,images_per_s,threads,kernels,test_images\n");
    for (int i = 0; i < nf * NMODES; i++)
        fprintf(f, "%s,%s,%.0f,%.4f,%.0f,%d,%s,%d\n", rows[i].family, rows[i].mode, rows[i].bytes,
                rows[i].acc, rows[i].ips, o->threads, rows[i].isa, rows[i].n);
    fclose(f);

    snprintf(path, sizeof path, "%s/study-%s.md", o->out_dir, data);
    if (!(f = fopen(path, "w")))
        return qd_seterr(QD_EIO, "study: %s: %s", path, strerror(errno));
    fprintf(f, "# Quantization study on %s\n\nMade by `%s`.\n\n", data, cmdline);
    fprintf(f, "Accuracy of the device runtime on the first %d test images; speed on %d "
               "thread%s, one image at a time per thread.\n\n",
            rows[0].n, o->threads, o->threads > 1 ? "s" : "");
    fprintf(f, "| family | mode | bytes | vs fp32 size | accuracy | vs fp32 | images/s | "
               "kernels |\n| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |\n");
    for (int i = 0; i < nf * NMODES; i++) {
        const struct row *r = &rows[i], *base = &rows[i / NMODES * NMODES];
        fprintf(f, "| %s | %s | %.0f | %.2fx | %.2f%% | %+.2f pt | %.0f | %s |\n", r->family,
                r->mode, r->bytes, r->bytes / base->bytes, 100 * r->acc,
                100 * (r->acc - base->acc), r->ips, r->isa);
    }
    fprintf(f, "\n![size vs accuracy](study-%s.svg)\n", data);
    fclose(f);

    snprintf(path, sizeof path, "%s/study-%s.gp", o->out_dir, data);
    if (!(f = fopen(path, "w")))
        return qd_seterr(QD_EIO, "study: %s: %s", path, strerror(errno));
    fprintf(f, "# gnuplot %s  (made by quantlab study; reads study-%s.csv)\n", path, data);
    fprintf(f, "set datafile separator ','\nset logscale x 2\nset grid\nset key outside right\n"
               "set xlabel 'model size (KiB, log scale)'\nset ylabel 'test accuracy (%%)'\n"
               "set title 'Post-training quantization on %s'\n",
            data);
    for (int t = 0; t < 2; t++) {
        fprintf(f, t ? "set terminal svg size 900,560\nset output 'study-%s.svg'\n"
                     : "set terminal png size 900,560\nset output 'study-%s.png'\n",
                data);
        fprintf(f, "plot ");
        for (int k = 0; k < nf; k++)
            fprintf(f, "%s'study-%s.csv' using ($3/1024):(strcol(1) eq '%s' ? 100*$4 : NaN) "
                       "with points pt %d ps 1.5 title '%s', \\\n     '' using ($3/1024):(strcol(1) eq "
                       "'%s' ? 100*$4 : NaN):2 with labels offset 0.8,0.6 font ',7' notitle",
                    k ? ", \\\n     " : "", data, rows[k * NMODES].family, 5 + k,
                    rows[k * NMODES].family, rows[k * NMODES].family);
        fprintf(f, "\n");
    }
    fclose(f);
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "cd '%s' && gnuplot 'study-%s.gp' 2>&1", o->out_dir, data);
    int rc = system(cmd);
    if (rc)
        return qd_seterr(QD_EEXTERNAL, "study: gnuplot failed (status %d); the tables are in %s",
                         rc, o->out_dir);
    return QD_OK;
}

qd_err qd_study_run(const struct qd_study_opts *o, const char *cmdline)
{
    const char *data = qd_data_canonical(o->data);
    if (!data)
        return qd_seterr(QD_EINVAL, "study: unknown dataset %s", o->data);
    QD_TRY(qd_file_mkdirs(o->ckpt_dir));
    QD_TRY(qd_file_mkdirs(o->out_dir));
    int nf = 0;
    const char *fams[16];
    char list[512];
    snprintf(list, sizeof list, "%s", o->models);
    for (char *s = strtok(list, ","); s && nf < 16; s = strtok(NULL, ","))
        fams[nf++] = s;
    if (!nf)
        return qd_seterr(QD_EINVAL, "study: no models");
    struct row *rows = calloc((size_t)nf * NMODES, sizeof *rows);
    if (!rows)
        return qd_seterr(QD_ENOMEM, "out of memory");
    qd_err e = QD_OK;
    for (int k = 0; k < nf && !e; k++)
        e = one_family(o, fams[k], data, rows + k * NMODES);
    if (!e)
        e = write_outputs(o, data, rows, nf, cmdline);
    free(rows);
    return e;
}
