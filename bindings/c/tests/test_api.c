/*
 * test_api.c — case `invalid_arguments` and friends: the C ABI's argument checks, status
 * strings and no-op frees, without an engine. Built with -fsanitize=address,undefined.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gloam.h"

static int failures = 0, passes = 0;

#define CHECK(cond)                                                                        \
    do {                                                                                   \
        if (cond) {                                                                        \
            passes++;                                                                      \
        } else {                                                                           \
            failures++;                                                                    \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);      \
        }                                                                                  \
    } while (0)

/* The status is INVALID_ARGUMENT, the record agrees, and the message names `param`. */
static void expect_invalid(gloam_status_e st, gloam_error_t *err, const char *param) {
    CHECK(st == GLOAM_E_INVALID_ARGUMENT);
    CHECK(err->status == GLOAM_E_INVALID_ARGUMENT);
    CHECK(err->message != NULL && strstr(err->message, param) != NULL);
    if (err->message && !strstr(err->message, param))
        fprintf(stderr, "  message was: %s (wanted %s)\n", err->message, param);
    gloam_error_free(err);
    CHECK(err->message == NULL && err->status == GLOAM_OK);
}

int main(void) {
    gloam_error_t err = {0};
    gloam_buffer_t buf = {0};
    gloam_call_t *call = NULL;
    gloam_worker_t *w = NULL;

    /* status strings */
    CHECK(strcmp(gloam_status_str(GLOAM_OK), "OK") == 0);
    CHECK(strcmp(gloam_status_str(GLOAM_E_FUNCTION_NOT_FOUND), "FUNCTION_NOT_FOUND") == 0);
    CHECK(strcmp(gloam_status_str(GLOAM_E_INTERNAL), "INTERNAL") == 0);
    CHECK(strcmp(gloam_status_str(GLOAM_E_FUNCTION_UNAVAILABLE), "FUNCTION_UNAVAILABLE") == 0);
    CHECK(strcmp(gloam_status_str(14), "UNKNOWN") == 0);
    CHECK(strcmp(gloam_status_str(-1), "UNKNOWN") == 0);
    CHECK(GLOAM_E_INVALID_ARGUMENT == 1 && GLOAM_E_SHUTDOWN == 10 && GLOAM_E_INTERNAL == 12 &&
          GLOAM_E_FUNCTION_UNAVAILABLE == 13);

    /* NULL handles and out-pointers */
    expect_invalid(gloam_worker_recv(NULL, &call, &err), &err, "worker");
    CHECK(call == NULL);
    expect_invalid(gloam_worker_try_recv(NULL, &call, &err), &err, "worker");
    expect_invalid(gloam_worker_recv_timeout(NULL, 1, &call, &err), &err, "worker");
    expect_invalid(gloam_worker_recv(NULL, NULL, &err), &err, "call");
    expect_invalid(gloam_worker_complete(NULL, NULL, NULL, 0, &err), &err, "worker");
    expect_invalid(gloam_worker_fail(NULL, NULL, "x", 1, &err), &err, "worker");
    expect_invalid(gloam_worker_fail_with_status(NULL, NULL, GLOAM_E_TIMEOUT, "x", 1, &err), &err,
                   "worker");
    expect_invalid(gloam_worker_invoke(NULL, NULL, "Bar", 3, NULL, 0, &buf, &err), &err, "worker");
    CHECK(buf.data == NULL && buf.len == 0);
    expect_invalid(gloam_worker_invoke(NULL, NULL, "Bar", 3, NULL, 0, NULL, &err), &err, "output");
    expect_invalid(gloam_worker_new(NULL, &w, &err), &err, "opts");
    CHECK(w == NULL);
    gloam_worker_options_t opts;
    memset(&opts, 0, sizeof opts);
    expect_invalid(gloam_worker_new(&opts, &w, &err), &err, "opts->function");
    opts.function = "bad name!";
    expect_invalid(gloam_worker_new(&opts, &w, &err), &err, "opts->function");
    expect_invalid(gloam_worker_new(&opts, NULL, &err), &err, "out");
    expect_invalid(gloam_worker_new_from_env(NULL, NULL, &err), &err, "out");
    expect_invalid(gloam_workers_from_env(NULL, &err), &err, "n");
    CHECK(gloam_call_input(NULL, NULL, NULL) == GLOAM_E_INVALID_ARGUMENT);
    expect_invalid(gloam_serve(NULL, 2, NULL, &err), &err, "handlers");
    expect_invalid(gloam_ctx_invoke(NULL, "Bar", 3, NULL, 0, &buf, &err), &err, "ctx");
    CHECK(gloam_ctx_set_output(NULL, NULL, 0) == GLOAM_E_INVALID_ARGUMENT);
    CHECK(gloam_ctx_fail(NULL, "x", 1) == GLOAM_E_INVALID_ARGUMENT);

    /* a NULL err is fine: the status alone comes back */
    CHECK(gloam_worker_recv(NULL, &call, NULL) == GLOAM_E_INVALID_ARGUMENT);

    /* unset GLOAM_FUNCTION is a configuration error, not a crash */
    unsetenv("GLOAM_FUNCTION");
    CHECK(gloam_worker_new_from_env(NULL, &w, &err) == GLOAM_E_INVALID_CONFIG);
    CHECK(err.message != NULL && strstr(err.message, "GLOAM_FUNCTION") != NULL);
    gloam_error_free(&err);
    setenv("GLOAM_WORKERS", "0", 1);
    size_t n = 0;
    CHECK(gloam_workers_from_env(&n, &err) == GLOAM_E_INVALID_CONFIG);
    gloam_error_free(&err);
    setenv("GLOAM_WORKERS", "3", 1);
    CHECK(gloam_workers_from_env(&n, NULL) == GLOAM_OK && n == 3);

    /* no-op frees and accessors on NULL */
    gloam_worker_free(NULL);
    gloam_buffer_free(NULL);
    gloam_buffer_free(&buf);
    gloam_error_free(NULL);
    gloam_error_free(&err);
    gloam_worker_wake(NULL);
    gloam_worker_close(NULL);
    CHECK(gloam_call_id(NULL) == 0);
    CHECK(gloam_call_deadline_ns(NULL) == 0);
    CHECK(gloam_worker_function(NULL) == NULL);
    CHECK(gloam_ctx_call(NULL) == NULL);

    printf("test_api: %d passed, %d failed\n", passes, failures);
    return failures ? 1 : 0;
}
