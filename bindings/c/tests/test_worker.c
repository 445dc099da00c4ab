/*
 * test_worker.c — the C worker the conformance tests run inside the engine (built with
 * -fsanitize=address,undefined). Uses the pull API directly: gloam_worker_new_from_env, one
 * pthread per logical worker (GLOAM_WORKERS), recv / complete / fail / invoke.
 *
 * Handlers (GLOAM_HANDLER):
 *   Echo       input back
 *   Fail       fails with "Fail was called"
 *   Crash      aborts when the input is "crash", else answers "alive"
 *   Sleep      sleeps <input> ms, answers "slept N ms"
 *   Big        answers <input> bytes of 'x'
 *   Invoke     input "Target:payload": invokes Target with payload and returns its output, or
 *              "ERR <STATUS>: <message>" when the internal call fails
 *   InvokeSize input "Target:N": invokes Target with N bytes of 'y'; answers the output's
 *              length, or "ERR <STATUS>"
 *   Fanout3    input "Target": three pthreads invoke Target with "a", "b", "c" at once;
 *              answers the outputs joined with ';'
 *   Deadline   answers "deadline" when the call has a deadline, else "none"
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gloam.h"

typedef struct {
    uint8_t *data;
    size_t len;
} out_t;

static void set_out(out_t *o, const void *data, size_t len) {
    free(o->data);
    o->data = len ? malloc(len) : NULL;
    if (len)
        memcpy(o->data, data, len);
    o->len = len;
}

static void set_text(out_t *o, const char *s) { set_out(o, s, strlen(s)); }

/* An internal call; on failure writes "ERR <STATUS>: <message>" into *o and returns non-zero. */
static int invoke(const gloam_worker_t *w, const gloam_call_t *call, const char *name,
                  size_t name_len, const uint8_t *in, size_t in_len, gloam_buffer_t *res,
                  out_t *o) {
    gloam_error_t err = {0};
    gloam_status_e st = gloam_worker_invoke(w, call, name, name_len, in, in_len, res, &err);
    if (st == GLOAM_OK)
        return 0;
    char msg[600];
    snprintf(msg, sizeof msg, "ERR %s: %s", gloam_status_str(st), err.message ? err.message : "");
    if (err.status != st)
        snprintf(msg, sizeof msg, "ERR status mismatch");
    gloam_error_free(&err);
    set_text(o, msg);
    return 1;
}

struct fan_job {
    const gloam_worker_t *w;
    const gloam_call_t *call;
    const char *target;
    size_t target_len;
    char input[2];
    gloam_buffer_t res;
    out_t err;
    int rc;
};

static void *fan_thread(void *arg) {
    struct fan_job *j = arg;
    j->rc = invoke(j->w, j->call, j->target, j->target_len, (const uint8_t *)j->input, 1,
                   &j->res, &j->err);
    return NULL;
}

/* Runs `handler` on `call`; returns 0 with the output in *o, or non-zero with the message. */
static int handle(const char *handler, const gloam_worker_t *w, const gloam_call_t *call,
                  out_t *o) {
    const uint8_t *in = NULL;
    size_t len = 0;
    if (gloam_call_input(call, &in, &len) != GLOAM_OK) {
        set_text(o, "gloam_call_input failed");
        return 1;
    }
    char text[64] = {0};
    if (len > 0)
        memcpy(text, in, len < sizeof text - 1 ? len : sizeof text - 1);

    if (strcmp(handler, "Echo") == 0) {
        set_out(o, in, len);
        return 0;
    }
    if (strcmp(handler, "Fail") == 0) {
        set_text(o, "Fail was called");
        return 1;
    }
    if (strcmp(handler, "Crash") == 0) {
        if (len == 5 && memcmp(in, "crash", 5) == 0)
            abort();
        set_text(o, "alive");
        return 0;
    }
    if (strcmp(handler, "Sleep") == 0) {
        long ms = strtol(text, NULL, 10);
        struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
        while (nanosleep(&ts, &ts) != 0) {
        }
        char buf[64];
        snprintf(buf, sizeof buf, "slept %ld ms", ms);
        set_text(o, buf);
        return 0;
    }
    if (strcmp(handler, "Big") == 0) {
        size_t n = strtoul(text, NULL, 10);
        uint8_t *buf = malloc(n ? n : 1);
        memset(buf, 'x', n);
        free(o->data);
        o->data = buf;
        o->len = n;
        return 0;
    }
    if (strcmp(handler, "Deadline") == 0) {
        set_text(o, gloam_call_deadline_ns(call) != 0 ? "deadline" : "none");
        return 0;
    }
    const uint8_t *colon = len ? memchr(in, ':', len) : NULL;
    if (strcmp(handler, "Invoke") == 0 || strcmp(handler, "InvokeSize") == 0) {
        if (colon == NULL) {
            set_text(o, "expected Target:payload");
            return 1;
        }
        size_t name_len = (size_t)(colon - in);
        const uint8_t *payload = colon + 1;
        size_t payload_len = len - name_len - 1;
        uint8_t *owned = NULL;
        if (strcmp(handler, "InvokeSize") == 0) {
            char num[32] = {0};
            memcpy(num, payload, payload_len < 31 ? payload_len : 31);
            payload_len = strtoul(num, NULL, 10);
            owned = malloc(payload_len ? payload_len : 1);
            memset(owned, 'y', payload_len);
            payload = owned;
        }
        gloam_buffer_t res = {0};
        int rc = invoke(w, call, (const char *)in, name_len, payload, payload_len, &res, o);
        free(owned);
        if (rc == 0) {
            if (strcmp(handler, "Invoke") == 0) {
                set_out(o, res.data, res.len);
            } else {
                char buf[32];
                snprintf(buf, sizeof buf, "%zu", res.len);
                set_text(o, buf);
            }
            gloam_buffer_free(&res);
            gloam_buffer_free(&res); /* a second free is a no-op */
        }
        return 0; /* the outcome travels in the output */
    }
    if (strcmp(handler, "Fanout3") == 0) {
        struct fan_job jobs[3];
        pthread_t th[3];
        memset(jobs, 0, sizeof jobs);
        for (int i = 0; i < 3; i++) {
            jobs[i].w = w;
            jobs[i].call = call;
            jobs[i].target = (const char *)in;
            jobs[i].target_len = len;
            jobs[i].input[0] = (char)('a' + i);
            pthread_create(&th[i], NULL, fan_thread, &jobs[i]);
        }
        char buf[256] = {0};
        for (int i = 0; i < 3; i++) {
            pthread_join(th[i], NULL);
            if (i)
                strcat(buf, ";");
            if (jobs[i].rc == 0)
                strncat(buf, (const char *)jobs[i].res.data, jobs[i].res.len < 64 ? jobs[i].res.len : 64);
            else
                strncat(buf, (const char *)jobs[i].err.data, jobs[i].err.len < 64 ? jobs[i].err.len : 64);
            gloam_buffer_free(&jobs[i].res);
            free(jobs[i].err.data);
        }
        set_text(o, buf);
        return 0;
    }
    set_text(o, "unknown handler");
    return 1;
}

static void *serve_one(void *arg) {
    (void)arg;
    gloam_worker_t *w = NULL;
    gloam_error_t err = {0};
    gloam_status_e st = gloam_worker_new_from_env(NULL, &w, &err);
    if (st != GLOAM_OK) {
        fprintf(stderr, "test_worker: connect: %s: %s\n", gloam_status_str(st), err.message);
        gloam_error_free(&err);
        return (void *)1;
    }
    const char *handler = gloam_worker_handler(w);
    for (;;) {
        gloam_call_t *call = NULL;
        st = gloam_worker_recv(w, &call, &err);
        if (st == GLOAM_E_SHUTDOWN) {
            gloam_error_free(&err);
            break;
        }
        if (st != GLOAM_OK) {
            fprintf(stderr, "test_worker: recv: %s: %s\n", gloam_status_str(st), err.message);
            gloam_error_free(&err);
            continue;
        }
        if (call == NULL)
            continue;
        out_t o = {0};
        int rc = handle(handler, w, call, &o);
        st = rc == 0 ? gloam_worker_complete(w, call, o.data, o.len, &err)
                     : gloam_worker_fail(w, call, (const char *)o.data, o.len, &err);
        free(o.data);
        if (st != GLOAM_OK) {
            fprintf(stderr, "test_worker: answer: %s: %s\n", gloam_status_str(st), err.message);
            gloam_error_free(&err);
        }
    }
    gloam_worker_free(w);
    return NULL;
}

int main(void) {
    size_t n = 0;
    gloam_error_t err = {0};
    if (gloam_workers_from_env(&n, &err) != GLOAM_OK) {
        fprintf(stderr, "test_worker: %s\n", err.message);
        gloam_error_free(&err);
        return 1;
    }
    pthread_t *th = calloc(n, sizeof *th);
    for (size_t i = 1; i < n; i++)
        pthread_create(&th[i], NULL, serve_one, NULL);
    int failed = serve_one(NULL) != NULL;
    for (size_t i = 1; i < n; i++) {
        void *r = NULL;
        pthread_join(th[i], &r);
        failed |= r != NULL;
    }
    free(th);
    return failed;
}
