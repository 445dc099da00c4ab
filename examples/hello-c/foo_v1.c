/*
 * foo_v1.c — function Foo written against Nightcore's v1 interface: calls Bar and returns
 * "From function Bar: " + Bar's output. Built as libfoo_v1.so, served by gloam-cworker.
 */
#include <stdlib.h>
#include <string.h>

#include <faas/worker_v1_interface.h>

struct worker {
    void *caller_context;
    faas_invoke_func_fn_t invoke;
    faas_append_output_fn_t append;
};

int faas_init(void) { return 0; }

int faas_create_func_worker(void *caller_context, faas_invoke_func_fn_t invoke_func_fn,
                            faas_append_output_fn_t append_output_fn, void **worker_handle) {
    struct worker *w = malloc(sizeof *w);
    if (w == NULL)
        return -1;
    w->caller_context = caller_context;
    w->invoke = invoke_func_fn;
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
    const char *out = NULL;
    size_t out_len = 0;
    if (w->invoke(w->caller_context, "Bar", input, input_length, &out, &out_len) != 0)
        return -1;
    static const char prefix[] = "From function Bar: ";
    w->append(w->caller_context, prefix, strlen(prefix));
    w->append(w->caller_context, out, out_len);
    return 0;
}
