#include <string.h>

#include "greet.h"

size_t greet(const uint8_t *in, size_t len, uint8_t *out, size_t cap) {
    static const char hello[] = "Hello, ";
    if (len == 0) {
        in = (const uint8_t *)"World";
        len = 5;
    }
    size_t n = 0;
    for (size_t i = 0; i < sizeof hello - 1 && n < cap; i++)
        out[n++] = (uint8_t)hello[i];
    for (size_t i = 0; i < len && n < cap; i++)
        out[n++] = in[i];
    if (n < cap)
        out[n++] = '!';
    return n;
}
