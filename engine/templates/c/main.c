/*
 * The __GLOAM_NAME__ function. `gloam up` builds it (`make`) and serves it; then
 * `gloam invoke __GLOAM_NAME__ --data World` answers `Hello, World!`.
 */
#include <stdlib.h>

#include <gloam.h>

#include "greet.h"

/* Serves one call: returns 0 with the output set, non-zero to fail it (gloam_ctx_fail says why). */
static int handle(void *user_data, gloam_ctx_t *ctx, const uint8_t *in, size_t len) {
    (void)user_data;
    size_t cap = len + 16;
    uint8_t *out = malloc(cap);
    if (out == NULL) {
        gloam_ctx_fail(ctx, "out of memory", 13);
        return 1;
    }
    size_t n = greet(in, len, out, cap);
    gloam_ctx_set_output(ctx, out, n);
    free(out);
    return 0;
}

int main(void) {
    /* Serves the function named by GLOAM_FUNCTION (set by `gloam up`) until the engine stops. */
    gloam_handler_t handlers[] = {{"__GLOAM_NAME__", handle}};
    return gloam_serve(handlers, 1, NULL, NULL) == GLOAM_OK ? 0 : 1;
}
