/* kws front end: int16 PCM -> MFCC / log-mel frames, float32, as docs/frontend.md
 * specifies (periodic Hann, zero-padded real FFT, power, sparse mel weights,
 * ln with a floor, orthonormal DCT-II), one frame per hop, with a rolling
 * window of the last n_frames frames. No malloc: the caller hands in memory
 * of kws_frontend_mem_size() bytes. */
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
} kws_frontend_config;

typedef struct kws_frontend kws_frontend;

/* Bytes of memory the front end needs for cfg; 0 if cfg is invalid. */
size_t kws_frontend_mem_size(const kws_frontend_config *cfg);
int kws_frontend_init(kws_frontend **out, const kws_frontend_config *cfg, void *mem, size_t mem_size, kws_error *err);
void kws_frontend_reset(kws_frontend *fe);
/* Feed samples; returns how many new frames were computed. */
int32_t kws_frontend_push(kws_frontend *fe, const int16_t *samples, size_t n);
/* Frames in the rolling window so far (at most n_frames). */
int32_t kws_frontend_frames_ready(const kws_frontend *fe);
/* The rolling window, oldest frame first: n_frames * n_coeffs values. */
void kws_frontend_features(const kws_frontend *fe, float *out);
void kws_frontend_features_int8(const kws_frontend *fe, int8_t *out, float scale, int32_t zero_point);
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
