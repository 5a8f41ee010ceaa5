/* MFCC / log-mel front end in float32 (see kws_frontend.h and docs/frontend.md).
 *
 * The real FFT of n_fft points is one complex FFT of n_fft/2 points over the
 * even/odd samples packed as re/im, followed by the usual split step; only the
 * bins some mel band uses are formed. Build with -ffp-contract=off so the int8
 * quantisation rounds every float32 step exactly like the host does. */
#include <math.h>
#include <string.h>
#include "kws_frontend.h"

/* The tables are computed once, in double, without the double libm: the stm32
 * port links MicroPython's float-only libm (no cos/sin/sqrt) and compiles with
 * -fsingle-precision-constant, which turns every unsuffixed literal into a
 * float. So the double constants are built from their bit patterns (or are
 * small integers), and cos/sin/sqrt are evaluated here to (near) double
 * precision: the float tables equal those from the host libm (checked by
 * tests/test_cmodule.py against the golden vectors, bit for bit on the int8
 * features). */
static double bits_to_double(uint64_t b) {
    double d;
    memcpy(&d, &b, sizeof d);
    return d;
}
#define KWS_PI bits_to_double(UINT64_C(0x400921FB54442D18))       /* pi */
/* pi/2 in four pieces (fdlibm's split): HI1..HI3 have 33 significant bits, so
 * q * HIi is exact for |q| < 2^20 */
#define KWS_PIO2_HI1 bits_to_double(UINT64_C(0x3FF921FB54400000))
#define KWS_PIO2_HI2 bits_to_double(UINT64_C(0x3DD0B4611A600000))
#define KWS_PIO2_HI3 bits_to_double(UINT64_C(0x3BA3198A2E000000))
#define KWS_PIO2_LO bits_to_double(UINT64_C(0x397B839A252049C1))
#define KWS_2_OVER_PI bits_to_double(UINT64_C(0x3FE45F306DC9C883)) /* 2/pi */

/* cos and sin of x, |x| < 2^20, to about 1 ulp of double, also next to the
 * zeros (x near a multiple of pi/2): the reduced argument r = x - q*pi/2 in
 * [-pi/4, pi/4] is formed to ~2^-100 relative with an error-free sum, then
 * Taylor series summed until the terms vanish. */
static void cos_sin_d(double x, double *c, double *s) {
    const double half = (double)1 / 2;
    double qd = x * KWS_2_OVER_PI;
    int32_t q = (int32_t)(qd >= 0 ? qd + half : qd - half);
    const double qq = (double)q;
    double t = x - qq * KWS_PIO2_HI1;          /* exact */
    double b = -(qq * KWS_PIO2_HI2);           /* exact product */
    double hi = t + b, bv = hi - t;
    double lo = (t - (hi - bv)) + (b - bv);    /* two-sum: hi + lo = t + b exactly */
    lo = lo - qq * KWS_PIO2_HI3 - qq * KWS_PIO2_LO;
    double r = hi + lo;
    /* terms smallest first, then one rounding when the leading 1 (or r) is added */
    double r2 = r * r, tc[14], ts[14], cs = 0, sn = 0;
    tc[0] = 1;
    ts[0] = r;
    for (int32_t k = 1; k < 14; ++k) {
        tc[k] = -tc[k - 1] * r2 / (double)((2 * k - 1) * (2 * k));
        ts[k] = -ts[k - 1] * r2 / (double)((2 * k) * (2 * k + 1));
    }
    for (int32_t k = 13; k >= 1; --k) {
        cs += tc[k];
        sn += ts[k];
    }
    cs += tc[0];
    sn += ts[0];
    switch (q & 3) {
    case 0: *c = cs; *s = sn; break;
    case 1: *c = -sn; *s = cs; break;
    case 2: *c = -cs; *s = -sn; break;
    default: *c = sn; *s = -cs; break;
    }
}

static double cos_d(double x) { double c, s; cos_sin_d(x, &c, &s); return c; }

/* Correctly rounded sqrt(v) for 0 < v < 2^500: Newton from sqrtf, then the
 * exact residual v - y*y (Dekker's product, no fused multiply-add needed)
 * decides between y and its neighbours. */
static double split_hi(double a) {
    const double k = (double)((1 << 27) + 1);
    double t = k * a;
    return t - (t - a);
}
static double sqr_residual(double v, double y) { /* v - y*y, exact when small */
    double yh = split_hi(y), yl = y - yh, p = y * y;
    double err = ((yh * yh - p) + (double)2 * yh * yl) + yl * yl;
    return (v - p) - err;
}
static double next_d(double y, int up) {
    uint64_t b;
    memcpy(&b, &y, sizeof b);
    b = up ? b + 1 : b - 1;
    return bits_to_double(b);
}
static double sqrt_d(double v) {
    double y = (double)sqrtf((float)v);
    const double half = (double)1 / 2;
    for (int i = 0; i < 3; ++i) y = half * (y + v / y);
    /* pick the neighbour whose square is closest to v (midpoint-free: the
     * square root of a double is never exactly halfway between two doubles) */
    for (int i = 0; i < 2; ++i) {
        double r = sqr_residual(v, y);
        double up = next_d(y, 1), dn = next_d(y, 0);
        double ru = sqr_residual(v, up), rd = sqr_residual(v, dn);
        double a = r < 0 ? -r : r, au = ru < 0 ? -ru : ru, ad = rd < 0 ? -rd : rd;
        if (au < a) y = up;
        else if (ad < a) y = dn;
        else break;
    }
    return y;
}

struct kws_frontend {
    kws_frontend_config cfg;
    int32_t bins_used, n_weights, fill, skip, head, total;
    float *window;        /* hann * pcm_scale, n <= window_length / 2 (w[n] == w[wl - n], checked bit for bit) */
    float *quarter_cos;   /* cos(2*pi*j/n_fft), j <= n_fft / 4: every twiddle (see "Twiddles") */
    float *scratch;       /* frame scratch, NULL: on the stack (see frame_scratch_floats) */
    int16_t *starts, *lengths;
    float *weights;
    float *dct;           /* n_coeffs x n_mels, NULL for log-mel */
    int16_t *samples;     /* window_length */
    float *frames;        /* n_frames x n_coeffs ring, float (NULL when int8) */
    int8_t *frames_q;     /* the same ring, int8 (cfg.int8_frames) */
};

static size_t align8(size_t n) { return (n + 7) & ~(size_t)7; }

static int32_t config_weights(const kws_frontend_config *c, int32_t *bins_used) {
    int32_t total = 0, used = 0, n_bins = c->n_fft / 2 + 1;
    for (int32_t m = 0; m < c->n_mels; ++m) {
        int32_t s = c->mel_starts[m], l = c->mel_lengths[m];
        if (s < 0 || l < 0 || s > n_bins || l > n_bins - s) return -1;
        total += l;
        if (l && s + l > used) used = s + l;
    }
    *bins_used = used;
    return total;
}

static int config_ok(const kws_frontend_config *c) {
    if (!c || !c->mel_starts || !c->mel_lengths || (!c->mel_weights && c->n_mels)) return 0;
    if (c->n_fft < 8 || c->n_fft > 8192 || (c->n_fft & (c->n_fft - 1))) return 0;
    if (c->window_length < 1 || c->window_length > c->n_fft || c->hop_length < 1 || c->hop_length > 1 << 20) return 0;
    if (c->n_mels < 1 || c->n_mels > 512 || c->n_coeffs < 1 || c->n_coeffs > c->n_mels) return 0;
    if (c->logmel && c->n_coeffs != c->n_mels) return 0;
    if (c->n_frames < 1 || c->n_frames > 4096) return 0;
    if (!(c->pcm_scale > 0.0f) || !(c->log_floor > 0.0f)) return 0;
    if (c->int8_frames && !(c->in_scale > 0.0f && c->in_scale < 1e30f)) return 0;
    if (c->int8_frames && (c->in_zero_point < -128 || c->in_zero_point > 127)) return 0;
    int32_t used;
    return config_weights(c, &used) >= 0;
}

/* Floats one frame needs while it is computed: the FFT buffer (n_fft / 2 complex
 * values), the power of the bins the mel bands use, the log-mel energies and the
 * frame's coefficients before they enter the int8 ring. */
static size_t frame_scratch_floats(const kws_frontend_config *c, int32_t bins_used) {
    return (size_t)c->n_fft + (size_t)bins_used + 1 + (size_t)c->n_mels + (size_t)c->n_coeffs;
}

size_t kws_frontend_heap_scratch_bytes(const kws_frontend_config *c) {
    if (!config_ok(c)) return 0;
    int32_t used;
    config_weights(c, &used);
    size_t bytes = 4 * frame_scratch_floats(c, used);
    return bytes <= KWS_FRONTEND_STACK_BYTES ? 0 : align8(bytes);
}

size_t kws_frontend_mem_size(const kws_frontend_config *c) {
    if (!config_ok(c)) return 0;
    int32_t used, nw = config_weights(c, &used);
    size_t s = align8(sizeof(kws_frontend)) + 8;
    s += align8(4 * (size_t)(c->window_length / 2 + 1));
    s += align8(4 * (size_t)(c->n_fft / 4 + 1));
    s += kws_frontend_heap_scratch_bytes(c);
    s += 2 * align8(2 * (size_t)c->n_mels);
    s += align8(4 * (size_t)nw);
    if (!c->logmel) s += align8(4 * (size_t)c->n_coeffs * c->n_mels);
    s += align8(2 * (size_t)c->window_length);
    s += align8((c->int8_frames ? 1 : 4) * (size_t)c->n_frames * c->n_coeffs);
    return s;
}

static void *take(uint8_t **p, size_t bytes) {
    void *r = *p;
    *p += align8(bytes);
    return r;
}

int kws_frontend_init(kws_frontend **out, const kws_frontend_config *c, void *mem, size_t mem_size, kws_error *err) {
    size_t need = kws_frontend_mem_size(c);
    if (!out || !mem) {
        if (err) { err->code = KWS_ERR_ARG; strcpy(err->message, "null argument"); }
        return KWS_ERR_ARG;
    }
    if (!need) {
        if (err) { err->code = KWS_ERR_ARG; strcpy(err->message, "invalid front end configuration"); }
        return KWS_ERR_ARG;
    }
    if (mem_size < need) {
        if (err) { err->code = KWS_ERR_ARENA; strcpy(err->message, "front end memory too small"); }
        return KWS_ERR_ARENA;
    }
    uint8_t *p = (uint8_t *)mem;
    p += (8 - ((uintptr_t)p & 7)) & 7;
    kws_frontend *fe = (kws_frontend *)take(&p, sizeof(kws_frontend));
    memset(fe, 0, sizeof(*fe));
    fe->cfg = *c;
    fe->n_weights = config_weights(c, &fe->bins_used);
    const int32_t wl = c->window_length, nf = c->n_fft;
    const size_t heap_scratch = kws_frontend_heap_scratch_bytes(c);
    fe->window = (float *)take(&p, 4 * (size_t)(wl / 2 + 1));
    fe->quarter_cos = (float *)take(&p, 4 * (size_t)(nf / 4 + 1));
    fe->scratch = heap_scratch ? (float *)take(&p, heap_scratch) : NULL;
    fe->starts = (int16_t *)take(&p, 2 * (size_t)c->n_mels);
    fe->lengths = (int16_t *)take(&p, 2 * (size_t)c->n_mels);
    fe->weights = (float *)take(&p, 4 * (size_t)fe->n_weights);
    fe->dct = c->logmel ? NULL : (float *)take(&p, 4 * (size_t)c->n_coeffs * c->n_mels);
    fe->samples = (int16_t *)take(&p, 2 * (size_t)wl);
    if (c->int8_frames) fe->frames_q = (int8_t *)take(&p, (size_t)c->n_frames * c->n_coeffs);
    else fe->frames = (float *)take(&p, 4 * (size_t)c->n_frames * c->n_coeffs);
    const double pi = KWS_PI, half = (double)1 / 2, one = 1, two = 2;
    for (int32_t n = 0; n <= wl / 2; ++n)
        fe->window[n] = (float)((half - half * cos_d(two * pi * n / wl)) * (double)c->pcm_scale);
    for (int32_t j = 0; j <= nf / 4; ++j) fe->quarter_cos[j] = (float)cos_d(two * pi * j / nf);
    for (int32_t m = 0; m < c->n_mels; ++m) {
        fe->starts[m] = (int16_t)c->mel_starts[m];   /* config_ok: both <= n_fft / 2 + 1 <= 4097 */
        fe->lengths[m] = (int16_t)c->mel_lengths[m];
    }
    if (fe->n_weights) memcpy(fe->weights, c->mel_weights, 4 * (size_t)fe->n_weights);
    fe->cfg.mel_starts = NULL; /* the caller's tables need not outlive init */
    fe->cfg.mel_lengths = NULL;
    fe->cfg.mel_weights = NULL;
    if (fe->dct) {
        for (int32_t k = 0; k < c->n_coeffs; ++k)
            for (int32_t m = 0; m < c->n_mels; ++m) {
                double norm = sqrt_d((k == 0 ? one : two) / c->n_mels);
                fe->dct[k * c->n_mels + m] = (float)(norm * cos_d(pi * k * (two * m + one) / (two * c->n_mels)));
            }
    }
    kws_frontend_reset(fe);
    *out = fe;
    if (err) { err->code = KWS_OK; err->message[0] = 0; }
    return KWS_OK;
}

void kws_frontend_reset(kws_frontend *fe) {
    const size_t n = (size_t)fe->cfg.n_frames * fe->cfg.n_coeffs;
    fe->fill = fe->skip = fe->head = fe->total = 0;
    if (fe->frames_q) { /* rows not yet computed read as quantised zeros, as in the float ring */
        const float zero = 0.0f;
        int8_t q0;
        kws_quantize_features(&zero, &q0, 1, fe->cfg.in_scale, fe->cfg.in_zero_point);
        memset(fe->frames_q, (uint8_t)q0, n);
    } else {
        memset(fe->frames, 0, 4 * n);
    }
}

/* Twiddles from the quarter-wave table qc[j] = cos(2*pi*j/n_fft), j <= quarter =
 * n_fft/4: for 0 <= k <= quarter, cos = qc[k] and sin = qc[quarter - k]; for
 * quarter < k < n_fft/2, cos = -qc[2 quarter - k] and sin = qc[k - quarter].
 * These equal the full tables computed directly (cos_d / sin_d of 2*pi*k/n_fft,
 * then float) bit for bit, except sin(0): cos_d(pi/2) is 6e-17 (pi/2 rounded to
 * double), the direct sin(0) is exactly 0, so k = 0 uses 0. */

/* a macro, not a function: -Os (MicroPython's stm32 build) would not inline it */
#define KWS_BUTTERFLY(a, b, wr_, wi_) do { \
        const float wr = (wr_), wi = (wi_); \
        const float br = (b)[0] * wr - (b)[1] * wi, bi = (b)[0] * wi + (b)[1] * wr; \
        (b)[0] = (a)[0] - br; (b)[1] = (a)[1] - bi; \
        (a)[0] += br; (a)[1] += bi; \
    } while (0)

/* In-place radix-2 complex FFT of m points (interleaved re/im); the quarter-wave
 * table is for 2m points. Within a block the twiddle index k*step runs through
 * the first quarter of the circle (cos = qc[i], sin = qc[quarter - i]) and then
 * the second (cos = -qc[2 quarter - i], sin = qc[i - quarter]): two branch-free
 * loops, with the same float values as a full table (see "Twiddles"). */
static void complex_fft(float *z, int32_t m, const float *qc) {
    for (int32_t i = 1, j = 0; i < m; ++i) {
        int32_t bit = m >> 1;
        for (; j & bit; bit >>= 1) j ^= bit;
        j ^= bit;
        if (i < j) {
            float tr = z[2 * i], ti = z[2 * i + 1];
            z[2 * i] = z[2 * j]; z[2 * i + 1] = z[2 * j + 1];
            z[2 * j] = tr; z[2 * j + 1] = ti;
        }
    }
    const int32_t quarter = m / 2;
    for (int32_t len = 2; len <= m; len <<= 1) {
        const int32_t half = len >> 1, step = m / half; /* k * step indexes the 2m-point circle */
        for (int32_t start = 0; start < m; start += len) {
            float *a = z + 2 * start, *b = z + 2 * (start + half);
            KWS_BUTTERFLY(a, b, 1.0f, -0.0f); /* k = 0: cos 1, sin 0 */
            int32_t k = 1, i = step;
            for (; k <= half / 2; ++k, i += step)
                KWS_BUTTERFLY(a + 2 * k, b + 2 * k, qc[i], -qc[quarter - i]);
            for (; k < half; ++k, i += step)
                KWS_BUTTERFLY(a + 2 * k, b + 2 * k, -qc[2 * quarter - i], -qc[i - quarter]);
        }
    }
}

/* |X[k]|^2 of the real-input split, with Z[a] = Z[k mod m], Z[b] = Z[(m - k) mod m] and
 * the twiddle W^k = wr + i wi (a macro-sized function: -Os inlines it, one call site per range). */
static inline float split_power(const float *z, int32_t a, int32_t b, float wr, float wi) {
    const float zr = z[2 * a], zi = z[2 * a + 1], cr = z[2 * b], ci = -z[2 * b + 1];
    const float er = 0.5f * (zr + cr), ei = 0.5f * (zi + ci);
    const float dr = 0.5f * (zr - cr), di = 0.5f * (zi - ci);
    const float orr = di, oi = -dr; /* O = D / i */
    const float xr = er + (orr * wr - oi * wi), xi = ei + (orr * wi + oi * wr);
    return xr * xr + xi * xi;
}

/* The scratch (frame_scratch_floats floats at z): the FFT buffer (n_fft), the
 * power (bins_used + 1), the log-mel energies (n_mels), the coefficients (n_coeffs). */
static float *scratch_log_mel(const kws_frontend *fe, float *z) {
    return z + fe->cfg.n_fft + fe->bins_used + 1;
}

/* One frame with the scratch at z. */
static void frame_with(kws_frontend *fe, const int16_t *pcm, float *out, float *z) {
    const kws_frontend_config *c = &fe->cfg;
    const int32_t nf = c->n_fft, m = nf / 2, wl = c->window_length, quarter = nf / 4;
    const float *qc = fe->quarter_cos; /* W^k = cos - i sin of 2*pi*k/n_fft ("Twiddles") */
    float *power = z + nf, *log_mel = scratch_log_mel(fe, z);
    const float *w = fe->window;
    int32_t n = 0;
    for (; n <= wl / 2; ++n) z[n] = (float)pcm[n] * w[n];
    for (; n < wl; ++n) z[n] = (float)pcm[n] * w[wl - n];
    for (; n < nf; ++n) z[n] = 0.0f;
    complex_fft(z, m, qc);
    /* split: X[k] = E[k] + W^k O[k] with E, O from Z[k] and conj(Z[m-k]) (indices mod m);
     * the bins run in three ranges so that neither the index wrap nor the twiddle
     * quadrant is decided per bin: k = 0, 1..quarter, quarter+1..m-1, then m */
    const int32_t bins = fe->bins_used;
    if (bins > 0) power[0] = split_power(z, 0, 0, 1.0f, -0.0f);
    int32_t k = 1;
    for (const int32_t end = bins <= quarter ? bins : quarter + 1; k < end; ++k)
        power[k] = split_power(z, k, m - k, qc[k], -qc[quarter - k]);
    for (const int32_t end = bins <= m ? bins : m; k < end; ++k)
        power[k] = split_power(z, k, m - k, -qc[2 * quarter - k], -qc[k - quarter]);
    if (k < bins) power[k] = split_power(z, 0, 0, -1.0f, 0.0f); /* k = m, the Nyquist bin */
    const float *mw = fe->weights;
    for (int32_t b = 0; b < c->n_mels; ++b) {
        float acc = 0.0f;
        const float *p = power + fe->starts[b];
        const int32_t len = fe->lengths[b];
        for (int32_t i = 0; i < len; ++i) acc += mw[i] * p[i];
        mw += len;
        log_mel[b] = logf(acc > c->log_floor ? acc : c->log_floor);
    }
    if (!fe->dct) {
        memcpy(out, log_mel, 4 * (size_t)c->n_mels);
        return;
    }
    for (int32_t k = 0; k < c->n_coeffs; ++k) {
        const float *d = fe->dct + (size_t)k * c->n_mels;
        float acc = 0.0f;
        for (int32_t b = 0; b < c->n_mels; ++b) acc += d[b] * log_mel[b];
        out[k] = acc;
    }
}

/* One frame into the rolling window's newest row. */
static void frame_into_ring(kws_frontend *fe, float *z) {
    const kws_frontend_config *c = &fe->cfg;
    const size_t row = (size_t)fe->head * c->n_coeffs;
    if (fe->frames_q) {
        float *coeffs = scratch_log_mel(fe, z) + c->n_mels;
        frame_with(fe, fe->samples, coeffs, z);
        kws_quantize_features(coeffs, fe->frames_q + row, (size_t)c->n_coeffs, c->in_scale, c->in_zero_point);
    } else {
        frame_with(fe, fe->samples, fe->frames + row, z);
    }
}

void kws_frontend_frame(kws_frontend *fe, const int16_t *pcm, float *out) {
    if (fe->scratch) {
        frame_with(fe, pcm, out, fe->scratch);
    } else {
        float z[KWS_FRONTEND_STACK_BYTES / 4];
        frame_with(fe, pcm, out, z);
    }
}

static int32_t push_with(kws_frontend *fe, const int16_t *samples, size_t n, float *z) {
    const kws_frontend_config *c = &fe->cfg;
    int32_t produced = 0;
    while (n > 0) {
        if (fe->skip > 0) { /* hop longer than the window: drop the gap */
            size_t drop = (size_t)fe->skip < n ? (size_t)fe->skip : n;
            fe->skip -= (int32_t)drop;
            samples += drop;
            n -= drop;
            continue;
        }
        size_t take_n = (size_t)(c->window_length - fe->fill);
        if (take_n > n) take_n = n;
        memcpy(fe->samples + fe->fill, samples, 2 * take_n);
        fe->fill += (int32_t)take_n;
        samples += take_n;
        n -= take_n;
        if (fe->fill == c->window_length) {
            frame_into_ring(fe, z);
            fe->head = (fe->head + 1) % c->n_frames;
            ++fe->total;
            ++produced;
            if (c->hop_length < c->window_length) {
                memmove(fe->samples, fe->samples + c->hop_length, 2 * (size_t)(c->window_length - c->hop_length));
                fe->fill = c->window_length - c->hop_length;
            } else {
                fe->fill = 0;
                fe->skip = c->hop_length - c->window_length;
            }
        }
    }
    return produced;
}

int32_t kws_frontend_push(kws_frontend *fe, const int16_t *samples, size_t n) {
    if (fe->scratch) return push_with(fe, samples, n, fe->scratch);
    float z[KWS_FRONTEND_STACK_BYTES / 4];
    return push_with(fe, samples, n, z);
}

int32_t kws_frontend_frames_ready(const kws_frontend *fe) {
    return fe->total < fe->cfg.n_frames ? fe->total : fe->cfg.n_frames;
}

int kws_frontend_features(const kws_frontend *fe, float *out) {
    const int32_t nc = fe->cfg.n_coeffs, nfr = fe->cfg.n_frames;
    if (!fe->frames) return KWS_ERR_ARG;
    for (int32_t i = 0; i < nfr; ++i) {
        const int32_t row = (fe->head + i) % nfr; /* head is the oldest once the ring is full */
        memcpy(out + (size_t)i * nc, fe->frames + (size_t)row * nc, 4 * (size_t)nc);
    }
    return KWS_OK;
}

void kws_quantize_features(const float *x, int8_t *q, size_t n, float scale, int32_t zero_point) {
    const float zp = (float)zero_point;
    for (size_t i = 0; i < n; ++i) {
        float t = x[i] / scale;
        t = t + zp;
        t = t + 0.5f;
        t = floorf(t);
        q[i] = (int8_t)(t >= 127.0f ? 127 : t >= -128.0f ? (int32_t)t : -128); /* NaN -> -128 */
    }
}

int kws_frontend_features_int8(const kws_frontend *fe, int8_t *out, float scale, int32_t zero_point) {
    const int32_t nc = fe->cfg.n_coeffs, nfr = fe->cfg.n_frames;
    if (fe->frames_q) {
        if (scale != fe->cfg.in_scale || zero_point != fe->cfg.in_zero_point) return KWS_ERR_ARG;
        for (int32_t i = 0; i < nfr; ++i) {
            const int32_t row = (fe->head + i) % nfr;
            memcpy(out + (size_t)i * nc, fe->frames_q + (size_t)row * nc, (size_t)nc);
        }
        return KWS_OK;
    }
    for (int32_t i = 0; i < nfr; ++i) {
        const int32_t row = (fe->head + i) % nfr;
        kws_quantize_features(fe->frames + (size_t)row * nc, out + (size_t)i * nc, (size_t)nc, scale, zero_point);
    }
    return KWS_OK;
}

int32_t kws_frontend_n_coeffs(const kws_frontend *fe) { return fe->cfg.n_coeffs; }
int32_t kws_frontend_n_frames(const kws_frontend *fe) { return fe->cfg.n_frames; }
