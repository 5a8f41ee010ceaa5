/* kws front end: int16 PCM -> MFCC / log-mel frames, float32, as docs/frontend.md
 * specifies (periodic Hann, zero-padded real FFT, power, sparse mel weights,
 * ln with a floor, orthonormal DCT-II), one frame per hop, with a rolling
 * window of the last n_frames frames. No malloc: the caller hands in memory
 * of kws_frontend_mem_size() bytes.
 *
 * Memory is what a Nucleo's heap can spare, so the state holds only what must
 * persist: half the (symmetric) window, a quarter-wave cosine table for the
 * twiddles, the mel and DCT tables, the samples of the next frame and the
 * rolling window, int8 when the model's input quantisation is given. A frame's
 * scratch (FFT buffer, power, log-mel: 2.9 KB for the default spec) lives on
 * the C stack when it fits KWS_FRONTEND_STACK_BYTES (on the stm32 port the
 * stack is 30 KB of SRAM2, not GC heap), else in that memory. */
#ifndef KWS_FRONTEND_H
#define KWS_FRONTEND_H

#include <stddef.h>
#include <stdint.h>
#include "kws_model.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    int32_t window_length, hop_length, n_fft, n_mels, n_coeffs, n_frames;
    int32_t logmel;                 /* 1: features are the log-mel energies themselves */
    float pcm_scale, log_floor;
    const int32_t *mel_starts;      /* n_mels first FFT bins */
    const int32_t *mel_lengths;     /* n_mels weight counts */
    const float *mel_weights;       /* all bands' weights, concatenated */
    /* 1: keep the rolling window as int8 quantised with in_scale / in_zero_point
     * (a quarter of the memory; features() is then unavailable) */
    int32_t int8_frames;
    float in_scale;
    int32_t in_zero_point;
} kws_frontend_config;

#ifndef KWS_FRONTEND_STACK_BYTES
#define KWS_FRONTEND_STACK_BYTES 4096
#endif

typedef struct kws_frontend kws_frontend;

/* Bytes of memory the front end needs for cfg; 0 if cfg is invalid. */
size_t kws_frontend_mem_size(const kws_frontend_config *cfg);
int kws_frontend_init(kws_frontend **out, const kws_frontend_config *cfg, void *mem, size_t mem_size, kws_error *err);
void kws_frontend_reset(kws_frontend *fe);
/* Feed samples; returns how many new frames were computed. */
int32_t kws_frontend_push(kws_frontend *fe, const int16_t *samples, size_t n);
/* Frames in the rolling window so far (at most n_frames). */
int32_t kws_frontend_frames_ready(const kws_frontend *fe);
/* The rolling window, oldest frame first: n_frames * n_coeffs values.
 * KWS_ERR_ARG when the window is kept as int8 (cfg.int8_frames). */
int kws_frontend_features(const kws_frontend *fe, float *out);
/* The rolling window quantised with scale / zero_point. KWS_ERR_ARG when it is
 * kept as int8 with another quantisation. */
int kws_frontend_features_int8(const kws_frontend *fe, int8_t *out, float scale, int32_t zero_point);
/* Bytes of frame scratch kws_frontend_mem_size() counts (0: it is on the stack). */
size_t kws_frontend_heap_scratch_bytes(const kws_frontend_config *cfg);
/* One frame from window_length samples (does not touch the rolling window). */
void kws_frontend_frame(kws_frontend *fe, const int16_t *pcm, float *out);
/* q = clamp(floor(((x / scale) + zero_point) + 0.5), -128, 127) in float32 steps. */
void kws_quantize_features(const float *x, int8_t *q, size_t n, float scale, int32_t zero_point);
int32_t kws_frontend_n_coeffs(const kws_frontend *fe);
int32_t kws_frontend_n_frames(const kws_frontend *fe);

#ifdef __cplusplus
}
#endif
#endif
