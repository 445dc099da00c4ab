/* Tests of the __GLOAM_NAME__ function: `make test`. */
#include <stdio.h>
#include <string.h>

#include "greet.h"

static int expect(const char *in, const char *want) {
    uint8_t out[64];
    size_t n = greet((const uint8_t *)in, strlen(in), out, sizeof out);
    if (n != strlen(want) || memcmp(out, want, n) != 0) {
        fprintf(stderr, "greet(\"%s\") = \"%.*s\", want \"%s\"\n", in, (int)n, (const char *)out, want);
        return 1;
    }
    return 0;
}

int main(void) {
    int failed = expect("Ada", "Hello, Ada!") + expect("", "Hello, World!");
    puts(failed ? "FAILED" : "ok");
    return failed != 0;
}
