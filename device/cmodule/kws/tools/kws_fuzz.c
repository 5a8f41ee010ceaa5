/* libFuzzer harness for the kws model reader (host-only; never in firmware).
 *
 *   clang -fsanitize=fuzzer,address,undefined -I.. kws_fuzz.c ../kws_model.c ../kws_ops.c ../kws_frontend.c -lm
 *
 * bench/fuzz_model_reader.sh builds and runs it (seeded with zoo models);
 * tests/test_cmodule_libfuzzer.py runs it briefly. Each input is copied into
 * an exact-size buffer (one byte past the end is an ASan report) and loaded;
 * a model that loads is invoked on input bytes taken from the fuzz data, and
 * loaded again into an arena one byte short of what it used, which must fail
 * with the arena error. Every failure must come with a message.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "kws_model.h"

#define ARENA_BYTES (256 * 1024)
#define MAX_MACS 4000000ull /* keep each input fast: bigger models are loaded but not run */

static unsigned char *arena;
static int8_t io[2][1 << 16];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!arena) arena = (unsigned char *)malloc(ARENA_BYTES);
    unsigned char *exact = (unsigned char *)malloc(size ? size : 1);
    if (size) memcpy(exact, data, size);
    kws_model *m = NULL;
    kws_error err;
    int rc = kws_model_load(&m, exact, size, arena, ARENA_BYTES, &err);
    if (rc != KWS_OK) {
        if (err.message[0] == 0 || m != NULL) {
            fprintf(stderr, "kws_model_load returned %d without a message or with a model\n", rc);
            abort();
        }
    } else {
        size_t n_in = kws_model_input_size(m), n_out = kws_model_output_size(m);
        if (kws_model_macs(m) <= MAX_MACS && n_in <= sizeof io[0] && n_out <= sizeof io[1]) {
            for (size_t i = 0; i < n_in; ++i) io[0][i] = (int8_t)(size ? data[(i * 7919u) % size] : 0);
            if (kws_model_invoke(m, io[0], io[1]) != KWS_OK) abort();
        }
        size_t used = kws_model_arena_used(m);
        if (used > 16) {
            /* the same bytes in an arena 1 byte short (16-aligned start, as above) must be refused cleanly */
            kws_model *m2 = NULL;
            int rc2 = kws_model_load(&m2, exact, size, arena, used - 1, &err);
            if (rc2 != KWS_ERR_ARENA || m2 != NULL || err.message[0] == 0) {
                fprintf(stderr, "arena of %zu bytes (used %zu): load returned %d\n", used - 1, used, rc2);
                abort();
            }
        }
    }
    free(exact);
    return 0;
}
