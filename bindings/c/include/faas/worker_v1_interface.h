/*
 * faas/worker_v1_interface.h — the "v1" C interface of Nightcore function libraries, as served
 * by Gloam's gloam-cworker host, at the path Nightcore's sources include it from
 * (`#include <faas/worker_v1_interface.h>` with `-I` on this `include/` directory). Written for
 * Gloam from the interface's description; Nightcore's example sources build against it
 * unchanged, and a library built against Nightcore's own header loads unchanged.
 *
 * A function library is a shared object exporting the four faas_* symbols below. The host
 * calls faas_init() once after loading it, faas_create_func_worker() once per logical worker,
 * then faas_func_call() for every call that worker receives (never concurrently for one
 * worker handle). Every function returns 0 on success.
 */
#ifndef GLOAM_FAAS_WORKER_V1_INTERFACE_H
#define GLOAM_FAAS_WORKER_V1_INTERFACE_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Calls function `func_name` (NUL-terminated) with `input` and waits for its output. On
 * success (0), *output / *output_length hold the output, owned by the host and valid until
 * the current faas_func_call() returns. `caller_context` is the pointer the host gave to
 * faas_create_func_worker(). Gloam's host allows several of these at once from different
 * threads during one call.
 */
typedef int (*faas_invoke_func_fn_t)(void *caller_context, const char *func_name,
                                     const char *input, size_t input_length,
                                     const char **output, size_t *output_length);

/* Appends `length` bytes to the output of the call being run (may be called many times). */
typedef void (*faas_append_output_fn_t)(void *caller_context, const char *data, size_t length);

/* Once per process, after the library is loaded. */
int faas_init(void);

/* Once per logical worker: keep the callbacks and the context; set *worker_handle. */
int faas_create_func_worker(void *caller_context, faas_invoke_func_fn_t invoke_func_fn,
                            faas_append_output_fn_t append_output_fn, void **worker_handle);

/* When the worker goes away. */
int faas_destroy_func_worker(void *worker_handle);

/* Runs one call; a non-zero return fails it. */
int faas_func_call(void *worker_handle, const char *input, size_t input_length);

#ifdef __cplusplus
}
#endif

#endif /* GLOAM_FAAS_WORKER_V1_INTERFACE_H */
