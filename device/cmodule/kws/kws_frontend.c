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
static double sin_d(double x) { double c, s; cos_sin_d(x, &c, &s); return s; }

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
    float *window;        /* hann * pcm_scale */
    float *twiddle;       /* cos, sin of 2*pi*k/n_fft, k < n_fft/2, interleaved */
    float *fft;           /* n_fft floats: n_fft/2 complex values */
    float *power;         /* bins_used */
    float *log_mel;       /* n_mels */
    int32_t *starts, *lengths;
    float *weights;
    float *dct;           /* n_coeffs x n_mels, NULL for log-mel */
    int16_t *samples;     /* window_length */
    float *frames;        /* n_frames x n_coeffs ring */
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
    int32_t used;
    return config_weights(c, &used) >= 0;
}

size_t kws_frontend_mem_size(const kws_frontend_config *c) {
    if (!config_ok(c)) return 0;
    int32_t used, nw = config_weights(c, &used);
    size_t s = align8(sizeof(kws_frontend)) + 8;
    s += align8(4 * (size_t)c->window_length);
    s += align8(4 * (size_t)c->n_fft);            /* twiddles */
    s += align8(4 * (size_t)c->n_fft);            /* fft buffer */
    s += align8(4 * (size_t)(used + 1));
    s += align8(4 * (size_t)c->n_mels);
    s += 2 * align8(4 * (size_t)c->n_mels);
    s += align8(4 * (size_t)nw);
    if (!c->logmel) s += align8(4 * (size_t)c->n_coeffs * c->n_mels);
    s += align8(2 * (size_t)c->window_length);
    s += align8(4 * (size_t)c->n_frames * c->n_coeffs);
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
    fe->window = (float *)take(&p, 4 * (size_t)wl);
    fe->twiddle = (float *)take(&p, 4 * (size_t)nf);
    fe->fft = (float *)take(&p, 4 * (size_t)nf);
    fe->power = (float *)take(&p, 4 * (size_t)(fe->bins_used + 1));
    fe->log_mel = (float *)take(&p, 4 * (size_t)c->n_mels);
    fe->starts = (int32_t *)take(&p, 4 * (size_t)c->n_mels);
    fe->lengths = (int32_t *)take(&p, 4 * (size_t)c->n_mels);
    fe->weights = (float *)take(&p, 4 * (size_t)fe->n_weights);
    fe->dct = c->logmel ? NULL : (float *)take(&p, 4 * (size_t)c->n_coeffs * c->n_mels);
    fe->samples = (int16_t *)take(&p, 2 * (size_t)wl);
    fe->frames = (float *)take(&p, 4 * (size_t)c->n_frames * c->n_coeffs);
    const double pi = KWS_PI, half = (double)1 / 2, one = 1, two = 2;
    for (int32_t n = 0; n < wl; ++n)
        fe->window[n] = (float)((half - half * cos_d(two * pi * n / wl)) * (double)c->pcm_scale);
    for (int32_t k = 0; k < nf / 2; ++k) {
        fe->twiddle[2 * k] = (float)cos_d(two * pi * k / nf);
        fe->twiddle[2 * k + 1] = (float)sin_d(two * pi * k / nf);
    }
    memcpy(fe->starts, c->mel_starts, 4 * (size_t)c->n_mels);
    memcpy(fe->lengths, c->mel_lengths, 4 * (size_t)c->n_mels);
    if (fe->n_weights) memcpy(fe->weights, c->mel_weights, 4 * (size_t)fe->n_weights);
    fe->cfg.mel_starts = fe->starts;
    fe->cfg.mel_lengths = fe->lengths;
    fe->cfg.mel_weights = fe->weights;
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
    fe->fill = fe->skip = fe->head = fe->total = 0;
    memset(fe->frames, 0, 4 * (size_t)fe->cfg.n_frames * fe->cfg.n_coeffs);
}

/* In-place radix-2 complex FFT of m points (interleaved re/im); twiddles for 2m points. */
static void complex_fft(float *z, int32_t m, const float *tw) {
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
    for (int32_t len = 2; len <= m; len <<= 1) {
        const int32_t half = len >> 1, step = 2 * (m / len); /* twiddle stride in the 2m-point table */
        for (int32_t start = 0; start < m; start += len) {
            for (int32_t k = 0; k < half; ++k) {
                const float wr = tw[2 * (k * step)], wi = -tw[2 * (k * step) + 1];
                float *a = z + 2 * (start + k), *b = z + 2 * (start + k + half);
                const float br = b[0] * wr - b[1] * wi, bi = b[0] * wi + b[1] * wr;
                b[0] = a[0] - br; b[1] = a[1] - bi;
                a[0] += br; a[1] += bi;
            }
        }
    }
}

void kws_frontend_frame(kws_frontend *fe, const int16_t *pcm, float *out) {
    const kws_frontend_config *c = &fe->cfg;
    const int32_t nf = c->n_fft, m = nf / 2;
    float *z = fe->fft;
    for (int32_t n = 0; n < c->window_length; ++n) z[n] = (float)pcm[n] * fe->window[n];
    for (int32_t n = c->window_length; n < nf; ++n) z[n] = 0.0f;
    complex_fft(z, m, fe->twiddle);
    /* split: X[k] = E[k] + W^k O[k] with E, O from Z[k] and conj(Z[m-k]) */
    for (int32_t k = 0; k < fe->bins_used; ++k) {
        const int32_t a = k % m, b = (m - k) % m;
        const float zr = z[2 * a], zi = z[2 * a + 1], cr = z[2 * b], ci = -z[2 * b + 1];
        const float er = 0.5f * (zr + cr), ei = 0.5f * (zi + ci);
        const float dr = 0.5f * (zr - cr), di = 0.5f * (zi - ci);
        /* O = D / i = (di, -dr) */
        const float orr = di, oi = -dr;
        float wr, wi;
        if (k < m) { wr = fe->twiddle[2 * k]; wi = -fe->twiddle[2 * k + 1]; }
        else { wr = -1.0f; wi = 0.0f; }
        const float xr = er + (orr * wr - oi * wi), xi = ei + (orr * wi + oi * wr);
        fe->power[k] = xr * xr + xi * xi;
    }
    const float *w = fe->weights;
    for (int32_t b = 0; b < c->n_mels; ++b) {
        float acc = 0.0f;
        const float *p = fe->power + fe->starts[b];
        for (int32_t i = 0; i < fe->lengths[b]; ++i) acc += w[i] * p[i];
        w += fe->lengths[b];
        fe->log_mel[b] = logf(acc > c->log_floor ? acc : c->log_floor);
    }
    if (!fe->dct) {
        memcpy(out, fe->log_mel, 4 * (size_t)c->n_mels);
        return;
    }
    for (int32_t k = 0; k < c->n_coeffs; ++k) {
        const float *d = fe->dct + (size_t)k * c->n_mels;
        float acc = 0.0f;
        for (int32_t b = 0; b < c->n_mels; ++b) acc += d[b] * fe->log_mel[b];
        out[k] = acc;
    }
}

int32_t kws_frontend_push(kws_frontend *fe, const int16_t *samples, size_t n) {
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
            kws_frontend_frame(fe, fe->samples, fe->frames + (size_t)fe->head * c->n_coeffs);
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

int32_t kws_frontend_frames_ready(const kws_frontend *fe) {
    return fe->total < fe->cfg.n_frames ? fe->total : fe->cfg.n_frames;
}

void kws_frontend_features(const kws_frontend *fe, float *out) {
    const int32_t nc = fe->cfg.n_coeffs, nfr = fe->cfg.n_frames;
    for (int32_t i = 0; i < nfr; ++i) {
        const int32_t row = (fe->head + i) % nfr; /* head is the oldest once the ring is full */
        memcpy(out + (size_t)i * nc, fe->frames + (size_t)row * nc, 4 * (size_t)nc);
    }
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

void kws_frontend_features_int8(const kws_frontend *fe, int8_t *out, float scale, int32_t zero_point) {
    const int32_t nc = fe->cfg.n_coeffs, nfr = fe->cfg.n_frames;
    for (int32_t i = 0; i < nfr; ++i) {
        const int32_t row = (fe->head + i) % nfr;
        kws_quantize_features(fe->frames + (size_t)row * nc, out + (size_t)i * nc, (size_t)nc, scale, zero_point);
    }
}

int32_t kws_frontend_n_coeffs(const kws_frontend *fe) { return fe->cfg.n_coeffs; }
int32_t kws_frontend_n_frames(const kws_frontend *fe) { return fe->cfg.n_frames; }
