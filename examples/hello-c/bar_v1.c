/*
 * bar_v1.c — function Bar written against Nightcore's v1 interface: "Hello, " + input, or
 * "Hello, World" for an empty input. Built as libbar_v1.so, served by gloam-cworker.
 */
#include <stdlib.h>
#include <string.h>

#include <faas/worker_v1_interface.h>

struct worker {
    void *caller_context;
    faas_append_output_fn_t append;
};

int faas_init(void) { return 0; }

int faas_create_func_worker(void *caller_context, faas_invoke_func_fn_t invoke_func_fn,
                            faas_append_output_fn_t append_output_fn, void **worker_handle) {
    (void)invoke_func_fn;
    struct worker *w = malloc(sizeof *w);
    if (w == NULL)
        return -1;
    w->caller_context = caller_context;
    w->append = append_output_fn;
    *worker_handle = w;
    return 0;
}

int faas_destroy_func_worker(void *worker_handle) {
    free(worker_handle);
    return 0;
}

int faas_func_call(void *worker_handle, const char *input, size_t input_length) {
    struct worker *w = worker_handle;
    w->append(w->caller_context, "Hello, ", 7);
    if (input_length == 0)
        w->append(w->caller_context, "World", 5);
    else
        w->append(w->caller_context, input, input_length);
    return 0;
}
