/* What the __GLOAM_NAME__ function answers: kept apart from Gloam so it can be tested alone. */
#ifndef GREET_H
#define GREET_H

#include <stddef.h>
#include <stdint.h>

/* Writes the answer for `in` into `out` (at most `cap` bytes); returns its length. */
size_t greet(const uint8_t *in, size_t len, uint8_t *out, size_t cap);

#endif
