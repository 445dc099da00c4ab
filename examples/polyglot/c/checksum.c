/*
 * checksum.c — the polyglot stack's C functions, served with gloam_serve():
 *
 * - Checksum: the fourth step of the chain. Takes the order (a JSON object), adds
 *   "checksum":{"lang":"c","crc32":"xxxxxxxx","bytes":N} (the CRC-32 of the input) and passes
 *   it on with an internal call to Store (Rust), whose answer it returns.
 * - Digest: the CRC-32 of the input as 8 hex digits (called by Node's Render, several at once).
 * - Echo: the input back.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gloam.h"

static uint32_t crc32(const uint8_t *p, size_t n) {
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1u)));
    }
    return ~c;
}

static int fail_msg(gloam_ctx_t *ctx, const char *msg) {
    (void)gloam_ctx_fail(ctx, msg, strlen(msg));
    return 1;
}

static int digest(void *ud, gloam_ctx_t *ctx, const uint8_t *in, size_t len) {
    (void)ud;
    char hex[9];
    snprintf(hex, sizeof hex, "%08x", crc32(in, len));
    return gloam_ctx_set_output(ctx, (const uint8_t *)hex, 8) == GLOAM_OK ? 0 : 1;
}

static int checksum(void *ud, gloam_ctx_t *ctx, const uint8_t *in, size_t len) {
    (void)ud;
    size_t end = len;
    while (end > 0 && (in[end - 1] == ' ' || in[end - 1] == '\n' || in[end - 1] == '\r'))
        end--;
    if (end < 2 || in[0] != '{' || in[end - 1] != '}')
        return fail_msg(ctx, "Checksum: the input must be a JSON object");
    char tail[96];
    int n = snprintf(tail, sizeof tail, "%s\"checksum\":{\"lang\":\"c\",\"crc32\":\"%08x\",\"bytes\":%zu}}",
                     end == 2 ? "" : ",", crc32(in, len), len);
    size_t next_len = end - 1 + (size_t)n;
    uint8_t *next = malloc(next_len);
    if (!next)
        return fail_msg(ctx, "Checksum: out of memory");
    memcpy(next, in, end - 1);
    memcpy(next + end - 1, tail, (size_t)n);
    gloam_buffer_t out = {0};
    gloam_error_t err = {0};
    gloam_status_e st = gloam_ctx_invoke(ctx, "Store", 5, next, next_len, &out, &err);
    free(next);
    if (st != GLOAM_OK) {
        char msg[512];
        snprintf(msg, sizeof msg, "Checksum: calling Store: %s: %s", gloam_status_str(err.status),
                 err.message ? err.message : "");
        gloam_error_free(&err);
        return fail_msg(ctx, msg);
    }
    int rc = gloam_ctx_set_output(ctx, out.data, out.len) == GLOAM_OK ? 0 : 1;
    gloam_buffer_free(&out);
    return rc;
}

static int echo(void *ud, gloam_ctx_t *ctx, const uint8_t *in, size_t len) {
    (void)ud;
    return gloam_ctx_set_output(ctx, in, len) == GLOAM_OK ? 0 : 1;
}

int main(void) {
    static const gloam_handler_t handlers[] = {
        {"Checksum", checksum}, {"Digest", digest}, {"Echo", echo}};
    gloam_error_t err = {0};
    gloam_status_e st = gloam_serve(handlers, sizeof handlers / sizeof handlers[0], NULL, &err);
    if (st != GLOAM_OK) {
        fprintf(stderr, "polyglot-c: %s: %s\n", gloam_status_str(st), err.message);
        gloam_error_free(&err);
        return 1;
    }
    return 0;
}
