/*
 * hello_c.c — Gloam's C example functions, served with gloam_serve().
 *
 * Foo (calls Bar), Bar, Nop, Echo, Fail, Crash, Sleep, Fanout (three concurrent internal
 * calls of Echo on pthreads) and InvokeOther (input "Target:payload" calls Target with payload,
 * split at the first ':', and returns its output; used by the cross-language matrix). The engine picks the handler with GLOAM_HANDLER / GLOAM_FUNCTION.
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
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

int main(void) {
    static const gloam_handler_t handlers[] = {
        {"Foo", foo},   {"Bar", bar},           {"Nop", nop},     {"Echo", echo},
        {"Fail", fail}, {"Crash", crash},       {"Sleep", sleep_ms}, {"Fanout", fanout},
        {"InvokeOther", invoke_other},
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
