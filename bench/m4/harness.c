/* Bare-metal Cortex-M4F benchmark program for bench/bench_m4_cycles.py (never firmware).
 *
 * Loads the linked-in model, runs two inferences, then the front end over one
 * clip a hop at a time. bench_mark(id) is an empty out-of-line function whose
 * entry the emulator watches, so instruction counts between marks are exact
 * segments of the run. Results land in globals the emulator reads back. */
#include <stdint.h>
#include <stddef.h>
#include "kws_model.h"
#include "kws_frontend.h"

extern const unsigned char bench_model[];
extern const uint32_t bench_model_len;
extern const int8_t bench_input[];
extern const int16_t bench_pcm[];
extern const kws_frontend_config bench_fe_cfg;
extern const float bench_q_scale;
extern const int32_t bench_q_zero_point;

#ifndef BENCH_ARENA_BYTES
#define BENCH_ARENA_BYTES (160 * 1024)
#endif

static uint8_t arena[BENCH_ARENA_BYTES] __attribute__((aligned(16)));
static uint8_t fe_mem[48 * 1024] __attribute__((aligned(16)));

volatile int32_t bench_status;
volatile uint32_t bench_arena_used, bench_out_size;
int8_t bench_output[2][64];
float bench_features[49 * 40];
int8_t bench_features_q[49 * 40];

__attribute__((noinline)) void bench_mark(int32_t id) {
    __asm volatile("" : : "r"(id) : "memory");
}

int main(void) {
    kws_model *m;
    kws_error err;
    bench_mark(1);
    int rc = kws_model_load(&m, bench_model, bench_model_len, arena, sizeof arena, &err);
    bench_mark(2);
    if (rc) return 100 + rc;
    bench_arena_used = (uint32_t)kws_model_arena_used(m);
    bench_out_size = (uint32_t)kws_model_output_size(m);
    if (bench_out_size > sizeof bench_output[0]) return 200;
    bench_mark(3);
    rc = kws_model_invoke(m, bench_input, bench_output[0]);
    bench_mark(4);
    rc |= kws_model_invoke(m, bench_input, bench_output[1]);
    bench_mark(5);
    if (rc) return 300 + rc;

    const kws_frontend_config *c = &bench_fe_cfg;
    if ((size_t)c->n_frames * (size_t)c->n_coeffs > sizeof bench_features_q) return 400;
    kws_frontend *fe;
    if (kws_frontend_init(&fe, c, fe_mem, sizeof fe_mem, &err)) return 401;
    bench_mark(6);
    kws_frontend_push(fe, bench_pcm, (size_t)c->window_length);
    bench_mark(7);
    const int16_t *pcm = bench_pcm + c->window_length;
    for (int32_t i = 1; i < c->n_frames; ++i, pcm += c->hop_length)
        if (kws_frontend_push(fe, pcm, (size_t)c->hop_length) != 1) return 402;
    bench_mark(8);
    kws_frontend_features_int8(fe, bench_features_q, bench_q_scale, bench_q_zero_point);
    bench_mark(9);
    kws_frontend_features(fe, bench_features);
    return 1;
}
