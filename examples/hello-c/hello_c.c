/*
 * hello_c.c — Gloam's C example functions, served with gloam_serve().
 *
 * Foo (calls Bar), Bar, Nop, Echo, Fail, Crash, Sleep, Fanout (three concurrent internal
 * calls of Echo on pthreads) and InvokeOther (input "Target:payload" calls Target with payload,
 * split at the first ':', and returns its output; used by the cross-language matrix), PassOn
 * (the same, passing a failure on with its kind by returning the status) and BenchInternal
 * (input "N" or "Target:N": N timed internal calls, the distribution as JSON).
 * The engine picks the handler with GLOAM_HANDLER / GLOAM_FUNCTION.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gloam.h"

/* Fails the call with the error of an internal call, then releases the error. */
static int fail_with(gloam_ctx_t *ctx, const char *what, gloam_error_t *err) {
    char msg[512];
    int n = snprintf(msg, sizeof msg, "%s: %s: %s", what, gloam_status_str(err->status),
                     err->message ? err->message : "");
    gloam_error_free(err);
    (void)gloam_ctx_fail(ctx, msg, n < 0 ? 0 : (size_t)n < sizeof msg ? (size_t)n : sizeof msg - 1);
    return 1;
}

static int foo(void *ud, gloam_ctx_t *ctx, const uint8_t *in, size_t len) {
    (void)ud;
    gloam_buffer_t bar = {0};
    gloam_error_t err = {0};
    if (gloam_ctx_invoke(ctx, "Bar", 3, in, len, &bar, &err) != GLOAM_OK)
        return fail_with(ctx, "calling Bar", &err);
    static const char prefix[] = "From function Bar: ";
    (void)gloam_ctx_set_output(ctx, (const uint8_t *)prefix, sizeof prefix - 1);
    (void)gloam_ctx_append_output(ctx, bar.data, bar.len);
    gloam_buffer_free(&bar);
    return 0;
}

static int bar(void *ud, gloam_ctx_t *ctx, const uint8_t *in, size_t len) {
    (void)ud;
    static const char hello[] = "Hello, ";
    static const char world[] = "World";
    (void)gloam_ctx_set_output(ctx, (const uint8_t *)hello, sizeof hello - 1);
    if (len == 0)
        (void)gloam_ctx_append_output(ctx, (const uint8_t *)world, sizeof world - 1);
    else
        (void)gloam_ctx_append_output(ctx, in, len);
    return 0;
}

static int nop(void *ud, gloam_ctx_t *ctx, const uint8_t *in, size_t len) {
    (void)ud, (void)ctx, (void)in, (void)len;
    return 0;
}

/* Answers the gRPC method the call is for (empty for a plain function). */
static int method(void *ud, gloam_ctx_t *ctx, const uint8_t *in, size_t len) {
    (void)ud, (void)in, (void)len;
    const uint8_t *name = NULL;
    size_t name_len = 0;
    if (gloam_call_method(gloam_ctx_call(ctx), &name, &name_len) != GLOAM_OK) return 1;
    return gloam_ctx_set_output(ctx, name, name_len) == GLOAM_OK ? 0 : 1;
}

static int echo(void *ud, gloam_ctx_t *ctx, const uint8_t *in, size_t len) {
    (void)ud;
    return gloam_ctx_set_output(ctx, in, len) == GLOAM_OK ? 0 : 1;
}

static int fail(void *ud, gloam_ctx_t *ctx, const uint8_t *in, size_t len) {
    (void)ud, (void)in, (void)len;
    static const char msg[] = "Fail was called";
    (void)gloam_ctx_fail(ctx, msg, sizeof msg - 1);
    return 1;
}

static int crash(void *ud, gloam_ctx_t *ctx, const uint8_t *in, size_t len) {
    (void)ud, (void)ctx, (void)in, (void)len;
    abort();
}

static int sleep_ms(void *ud, gloam_ctx_t *ctx, const uint8_t *in, size_t len) {
    (void)ud;
    char buf[32];
    if (len == 0 || len >= sizeof buf) {
        static const char msg[] = "Sleep expects a number of milliseconds";
        (void)gloam_ctx_fail(ctx, msg, sizeof msg - 1);
        return 1;
    }
    memcpy(buf, in, len);
    buf[len] = '\0';
    long ms = strtol(buf, NULL, 10);
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
    char out[64];
    int n = snprintf(out, sizeof out, "slept %ld ms", ms);
    (void)gloam_ctx_set_output(ctx, (const uint8_t *)out, (size_t)n);
    return 0;
}

struct fanout_job {
    gloam_ctx_t *ctx;
    char input[32];
    gloam_buffer_t output;
    gloam_error_t err;
    gloam_status_e status;
};

static void *fanout_thread(void *arg) {
    struct fanout_job *job = arg;
    job->status = gloam_ctx_invoke(job->ctx, "Echo", 4, (const uint8_t *)job->input,
                                   strlen(job->input), &job->output, &job->err);
    return NULL;
}

static int fanout(void *ud, gloam_ctx_t *ctx, const uint8_t *in, size_t len) {
    (void)ud;
    struct fanout_job jobs[3];
    pthread_t threads[3];
    memset(jobs, 0, sizeof jobs);
    for (int i = 0; i < 3; i++) {
        jobs[i].ctx = ctx;
        snprintf(jobs[i].input, sizeof jobs[i].input, "%.*s%d", (int)(len > 16 ? 16 : len),
                 in ? (const char *)in : "", i);
        pthread_create(&threads[i], NULL, fanout_thread, &jobs[i]);
    }
    int rc = 0;
    for (int i = 0; i < 3; i++) {
        pthread_join(threads[i], NULL);
        if (jobs[i].status != GLOAM_OK) {
            if (rc == 0)
                rc = fail_with(ctx, "calling Echo", &jobs[i].err);
            else
                gloam_error_free(&jobs[i].err);
            continue;
        }
        if (i > 0)
            (void)gloam_ctx_append_output(ctx, (const uint8_t *)";", 1);
        (void)gloam_ctx_append_output(ctx, jobs[i].output.data, jobs[i].output.len);
        gloam_buffer_free(&jobs[i].output);
    }
    return rc;
}

static int invoke_other(void *ud, gloam_ctx_t *ctx, const uint8_t *in, size_t len) {
    (void)ud;
    const uint8_t *colon = len ? memchr(in, ':', len) : NULL;
    if (!colon) {
        static const char msg[] = "InvokeOther expects Target:payload";
        (void)gloam_ctx_fail(ctx, msg, sizeof msg - 1);
        return 1;
    }
    size_t name_len = (size_t)(colon - in);
    gloam_buffer_t out = {0};
    gloam_error_t err = {0};
    if (gloam_ctx_invoke(ctx, (const char *)in, name_len, colon + 1, len - name_len - 1, &out, &err) !=
        GLOAM_OK)
        return fail_with(ctx, "InvokeOther", &err);
    int rc = gloam_ctx_set_output(ctx, out.data, out.len) == GLOAM_OK ? 0 : 1;
    gloam_buffer_free(&out);
    return rc;
}

static int fail_msg(gloam_ctx_t *ctx, const char *msg) {
    (void)gloam_ctx_fail(ctx, msg, strlen(msg));
    return 1;
}

/* Input "Target:payload": calls Target and passes a failure on by returning its status, so
 * this call fails with the callee's error kind and message (the callee's TIMEOUT is this
 * call's TIMEOUT, HTTP 504; a crash 502). Compare InvokeOther, which reports the failure with
 * gloam_ctx_fail() and returns 1: a plain HANDLER_FAILED. */
static int pass_on(void *ud, gloam_ctx_t *ctx, const uint8_t *in, size_t len) {
    (void)ud;
    const uint8_t *colon = len ? memchr(in, ':', len) : NULL;
    if (!colon)
        return fail_msg(ctx, "PassOn expects Target:payload");
    size_t name_len = (size_t)(colon - in);
    gloam_buffer_t out = {0};
    gloam_status_e st =
        gloam_ctx_invoke(ctx, (const char *)in, name_len, colon + 1, len - name_len - 1, &out, NULL);
    if (st != GLOAM_OK)
        return (int)st;
    int rc = gloam_ctx_set_output(ctx, out.data, out.len) == GLOAM_OK ? 0 : 1;
    gloam_buffer_free(&out);
    return rc;
}

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Nearest-rank percentile q of the n sorted samples, in µs. */
static double rank_us(const uint64_t *ns, size_t n, double q) {
    double x = q * (double)n;
    size_t rank = (size_t)x;
    if ((double)rank < x) /* ceil without libm */
        rank++;
    rank = rank < 1 ? 1 : rank > n ? n : rank;
    return (double)ns[rank - 1] / 1e3;
}

/* Input "N" or "Target:N" (default 10000 calls to Nop): N/10 (at most 1000) unmeasured internal
 * calls, then N sequential ones timed here with CLOCK_MONOTONIC; answers
 * {"target","count","p50_us","p90_us","p99_us","p999_us","max_us","mean_us","per_s"} like the
 * Rust BenchInternal (nearest-rank percentiles). */
static int bench_internal(void *ud, gloam_ctx_t *ctx, const uint8_t *in, size_t len) {
    (void)ud;
    while (len > 0 && (in[len - 1] == ' ' || in[len - 1] == '\n' || in[len - 1] == '\r' ||
                       in[len - 1] == '\t'))
        len--;
    while (len > 0 && (in[0] == ' ' || in[0] == '\n' || in[0] == '\r' || in[0] == '\t'))
        in++, len--;
    const char *target = "Nop";
    size_t target_len = 3;
    const uint8_t *num = in;
    size_t num_len = len;
    for (size_t i = len; i > 0; i--) {
        if (in[i - 1] == ':') {
            target = (const char *)in;
            target_len = i - 1;
            num = in + i;
            num_len = len - i;
            break;
        }
    }
    size_t n = 10000;
    if (num_len > 0) {
        char buf[24];
        if (num_len >= sizeof buf)
            return fail_msg(ctx, "BenchInternal: N is not a number");
        memcpy(buf, num, num_len);
        buf[num_len] = '\0';
        char *end = NULL;
        errno = 0;
        unsigned long long v = strtoull(buf, &end, 10);
        if (errno != 0 || *end != '\0' || buf[0] < '0' || buf[0] > '9')
            return fail_msg(ctx, "BenchInternal: N is not a number");
        n = (size_t)v;
    }
    if (n == 0)
        return fail_msg(ctx, "BenchInternal: N must be at least 1");
    uint64_t *ns = malloc(n * sizeof *ns);
    if (!ns)
        return fail_msg(ctx, "BenchInternal: out of memory");
    gloam_buffer_t out = {0};
    gloam_error_t err = {0};
    size_t warm = n / 10 < 1000 ? n / 10 : 1000;
    for (size_t i = 0; i < warm; i++) {
        if (gloam_ctx_invoke(ctx, target, target_len, NULL, 0, &out, &err) != GLOAM_OK) {
            free(ns);
            return fail_with(ctx, "BenchInternal", &err);
        }
        gloam_buffer_free(&out);
    }
    uint64_t start = now_ns();
    for (size_t i = 0; i < n; i++) {
        uint64_t t0 = now_ns();
        gloam_status_e st = gloam_ctx_invoke(ctx, target, target_len, NULL, 0, &out, &err);
        ns[i] = now_ns() - t0;
        if (st != GLOAM_OK) {
            free(ns);
            return fail_with(ctx, "BenchInternal", &err);
        }
        gloam_buffer_free(&out);
    }
    double total_s = (double)(now_ns() - start) / 1e9;
    qsort(ns, n, sizeof *ns, cmp_u64);
    double sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += (double)ns[i];
    char json[512];
    int w = snprintf(json, sizeof json,
                     "{\"target\":\"%.*s\",\"count\":%zu,\"p50_us\":%.2f,\"p90_us\":%.2f,"
                     "\"p99_us\":%.2f,\"p999_us\":%.2f,\"max_us\":%.2f,\"mean_us\":%.2f,"
                     "\"per_s\":%.0f}",
                     (int)(target_len > 256 ? 256 : target_len), target, n,
                     rank_us(ns, n, 0.5), rank_us(ns, n, 0.9), rank_us(ns, n, 0.99),
                     rank_us(ns, n, 0.999), rank_us(ns, n, 1.0), sum / (double)n / 1e3,
                     (double)n / total_s);
    free(ns);
    if (w < 0 || (size_t)w >= sizeof json)
        return fail_msg(ctx, "BenchInternal: answer too long");
    return gloam_ctx_set_output(ctx, (const uint8_t *)json, (size_t)w) == GLOAM_OK ? 0 : 1;
}

int main(void) {
    static const gloam_handler_t handlers[] = {
        {"Foo", foo},   {"Bar", bar},           {"Nop", nop},     {"Echo", echo},
        {"Fail", fail}, {"Crash", crash},       {"Sleep", sleep_ms}, {"Fanout", fanout},
        {"InvokeOther", invoke_other}, {"PassOn", pass_on}, {"BenchInternal", bench_internal},
        {"Method", method},
    };
    gloam_error_t err = {0};
    gloam_status_e st = gloam_serve(handlers, sizeof handlers / sizeof handlers[0], NULL, &err);
    if (st != GLOAM_OK) {
        fprintf(stderr, "hello-c: %s: %s\n", gloam_status_str(st), err.message);
        gloam_error_free(&err);
        return 1;
    }
    return 0;
}
