/* int8 kernels, bit-exact with the TFLite reference kernels.
 *
 * Integer sums are associative, so loops are ordered for speed (patch of
 * input + offset as int16, dot products over the filter) while every rounding
 * step follows TFLite's order exactly. On a Cortex-M4 (or with
 * KWS_DSP_EMULATE on a host, to test that path) the dot product uses the
 * dual 16-bit multiply-accumulate: SXTB16 unpacks 4 weights into two pairs,
 * SMLAD multiplies and accumulates a pair per instruction. That needs the
 * int16 patch stored as x0 x2 x1 x3 within each group of 4.
 */
#include <string.h>
#include <math.h>
#include "kws_internal.h"

#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP && !defined(KWS_NO_DSP)
#include <arm_acle.h>
#define KWS_USE_DSP 1
#define KWS_SXTB16(x) ((uint32_t)__sxtb16((int32_t)(x)))
#define KWS_SMLAD(a, b, acc) __smlad((int16x2_t)(a), (int16x2_t)(b), (acc))
#elif defined(KWS_DSP_EMULATE)
#define KWS_USE_DSP 1
static inline uint32_t KWS_SXTB16(uint32_t v) {
    uint32_t lo = (uint16_t)(int16_t)(int8_t)(v & 0xFFu);
    uint32_t hi = (uint16_t)(int16_t)(int8_t)((v >> 16) & 0xFFu);
    return lo | (hi << 16);
}
static inline int32_t KWS_SMLAD(uint32_t a, uint32_t b, int32_t acc) {
    int32_t p = (int32_t)(int16_t)(a & 0xFFFFu) * (int16_t)(b & 0xFFFFu)
              + (int32_t)(int16_t)(a >> 16) * (int16_t)(b >> 16);
    return (int32_t)((uint32_t)acc + (uint32_t)p);
}
#else
#define KWS_USE_DSP 0
#endif

/* -- fixed point --------------------------------------------------------- */

int32_t kws_srdhm(int32_t a, int32_t b) {
    if (a == b && a == INT32_MIN) return INT32_MAX;
    int64_t ab = (int64_t)a * (int64_t)b;
    int64_t nudge = ab >= 0 ? (1 << 30) : (1 - (1 << 30));
    return (int32_t)((ab + nudge) / ((int64_t)1 << 31));
}

int32_t kws_rdbpot(int32_t x, int exponent) {
    int32_t mask = (int32_t)(((int64_t)1 << exponent) - 1);
    int32_t remainder = x & mask;
    int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

/* Accumulate with two's-complement wrap-around: TFLite's int32 sums wrap the
 * same way on the targets it runs on, and hostile models must not be UB. */
static inline int32_t add_wrap(int32_t a, int32_t b) { return (int32_t)((uint32_t)a + (uint32_t)b); }

static inline int32_t shl_wrap(int32_t x, int s) {
    /* TFLite lets x * (1 << s) wrap (it is built without overflow checks). */
    return (int32_t)((uint32_t)x << s);
}

int32_t kws_mbqm(int32_t x, int32_t multiplier, int shift) {
#ifdef KWS_SINGLE_ROUNDING
    int64_t total = 31 - shift;
    int64_t r = (int64_t)x * multiplier + ((int64_t)1 << (total - 1));
    return (int32_t)(r >> total);
#else
    int left = shift > 0 ? shift : 0;
    int right = shift > 0 ? 0 : -shift;
    return kws_rdbpot(kws_srdhm(shl_wrap(x, left), multiplier), right);
#endif
}

void kws_quantize_multiplier(double m, int32_t *multiplier, int *shift) {
    if (m == 0.0 || !(m == m)) {
        *multiplier = 0;
        *shift = 0;
        return;
    }
    int e = 0;
    double q = frexp(m, &e);
    int64_t fixed = (int64_t)round(q * 2147483648.0);
    if (fixed == ((int64_t)1 << 31)) {
        fixed /= 2;
        ++e;
    }
    if (e < -31) {
        e = 0;
        fixed = 0;
    }
    *multiplier = (int32_t)fixed;
    *shift = e;
}

static inline int8_t clamp8(int32_t v, int32_t lo, int32_t hi) {
    if (v < lo) v = lo;
    if (v > hi) v = hi;
    return (int8_t)v;
}

/* -- dot product of int8 weights with an int16 (input + offset) patch ------ */

size_t kws_conv_patch_bytes(int32_t k_len) {
    return (size_t)((k_len + 3) & ~3) * sizeof(int16_t);
}

static inline void patch_reorder(int16_t *p, int32_t n) {
#if KWS_USE_DSP
    for (int32_t i = 0; i + 4 <= n; i += 4) {
        int16_t t = p[i + 1];
        p[i + 1] = p[i + 2];
        p[i + 2] = t;
    }
#else
    (void)p;
    (void)n;
#endif
}

static inline int32_t dot_s8_s16(const int8_t *w, const int16_t *x, int32_t n) {
    int32_t acc = 0;
#if KWS_USE_DSP
    for (; n >= 4; n -= 4) {
        uint32_t w4, x02, x13;
        memcpy(&w4, w, 4);
        memcpy(&x02, x, 4);
        memcpy(&x13, x + 2, 4);
        acc = KWS_SMLAD(KWS_SXTB16(w4), x02, acc);
        acc = KWS_SMLAD(KWS_SXTB16((w4 >> 8) | (w4 << 24)), x13, acc);
        w += 4;
        x += 4;
    }
#else
    for (; n >= 4; n -= 4) {
        acc = add_wrap(acc, w[0] * x[0] + w[1] * x[1] + w[2] * x[2] + w[3] * x[3]);
        w += 4;
        x += 4;
    }
#endif
    while (n-- > 0) acc = add_wrap(acc, *w++ * *x++);
    return acc;
}

static inline int8_t requant(int32_t acc, const kws_op *op, int32_t ch) {
    int32_t v = add_wrap(kws_mbqm(acc, op->mult[ch], op->shift[ch]), op->out_offset);
    return clamp8(v, op->act_min, op->act_max);
}

/* -- CONV_2D (per-channel) --------------------------------------------------- */

void kws_conv2d(const kws_op *op, const int8_t *in, const int8_t *filter, int8_t *out, int16_t *patch) {
    const int32_t in_h = op->in_h, in_w = op->in_w, in_c = op->in_c;
    const int32_t k_len = op->k_len, out_c = op->out_c;
    const int16_t off = (int16_t)op->in_offset;
    for (int32_t oy = 0; oy < op->out_h; ++oy) {
        const int32_t iy0 = oy * op->stride_h - op->pad_h;
        for (int32_t ox = 0; ox < op->out_w; ++ox) {
            const int32_t ix0 = ox * op->stride_w - op->pad_w;
            int16_t *p = patch;
            /* Taps outside the image contribute nothing in TFLite; a zero
             * (input + offset) value gives exactly that. */
            for (int32_t ky = 0; ky < op->k_h; ++ky) {
                const int32_t iy = iy0 + ky * op->dil_h;
                for (int32_t kx = 0; kx < op->k_w; ++kx) {
                    const int32_t ix = ix0 + kx * op->dil_w;
                    if (iy < 0 || iy >= in_h || ix < 0 || ix >= in_w) {
                        memset(p, 0, (size_t)in_c * sizeof(int16_t));
                        p += in_c;
                    } else {
                        const int8_t *src = in + ((size_t)iy * in_w + ix) * in_c;
                        for (int32_t c = 0; c < in_c; ++c) *p++ = (int16_t)(src[c] + off);
                    }
                }
            }
            patch_reorder(patch, k_len);
            int8_t *dst = out + ((size_t)oy * op->out_w + ox) * out_c;
            const int8_t *w = filter;
            for (int32_t oc = 0; oc < out_c; ++oc, w += k_len) {
                int32_t acc = dot_s8_s16(w, patch, k_len);
                if (op->bias) acc = add_wrap(acc, op->bias[oc]);
                dst[oc] = requant(acc, op, oc);
            }
        }
    }
}

/* -- DEPTHWISE_CONV_2D (per-channel) ----------------------------------------- */

void kws_depthwise(const kws_op *op, const int8_t *in, const int8_t *filter, int8_t *out, int32_t *acc) {
    const int32_t in_h = op->in_h, in_w = op->in_w, in_c = op->in_c, out_c = op->out_c;
    const int32_t mult = op->depth_mult, off = op->in_offset;
    for (int32_t oy = 0; oy < op->out_h; ++oy) {
        const int32_t iy0 = oy * op->stride_h - op->pad_h;
        for (int32_t ox = 0; ox < op->out_w; ++ox) {
            const int32_t ix0 = ox * op->stride_w - op->pad_w;
            for (int32_t c = 0; c < out_c; ++c) acc[c] = 0;
            for (int32_t ky = 0; ky < op->k_h; ++ky) {
                const int32_t iy = iy0 + ky * op->dil_h;
                if (iy < 0 || iy >= in_h) continue;
                for (int32_t kx = 0; kx < op->k_w; ++kx) {
                    const int32_t ix = ix0 + kx * op->dil_w;
                    if (ix < 0 || ix >= in_w) continue;
                    const int8_t *x = in + ((size_t)iy * in_w + ix) * in_c;
                    const int8_t *f = filter + ((size_t)ky * op->k_w + kx) * out_c;
                    if (mult == 1) {
                        for (int32_t c = 0; c < out_c; ++c) acc[c] = add_wrap(acc[c], f[c] * (x[c] + off));
                    } else {
                        for (int32_t ic = 0; ic < in_c; ++ic) {
                            const int32_t xv = x[ic] + off;
                            for (int32_t m = 0; m < mult; ++m) acc[ic * mult + m] = add_wrap(acc[ic * mult + m], f[ic * mult + m] * xv);
                        }
                    }
                }
            }
            int8_t *dst = out + ((size_t)oy * op->out_w + ox) * out_c;
            for (int32_t c = 0; c < out_c; ++c) {
                int32_t a = acc[c];
                if (op->bias) a = add_wrap(a, op->bias[c]);
                dst[c] = requant(a, op, c);
            }
        }
    }
}

/* -- FULLY_CONNECTED ---------------------------------------------------------- */

void kws_fully_connected(const kws_op *op, const int8_t *in, const int8_t *weights, int8_t *out, int16_t *row) {
    const int32_t k = op->k_len, n_out = op->out_c;
    for (int32_t b = 0; b < op->batches; ++b) {
        const int8_t *x = in + (size_t)b * k;
        for (int32_t i = 0; i < k; ++i) row[i] = (int16_t)(x[i] + op->in_offset);
        patch_reorder(row, k);
        const int8_t *w = weights;
        for (int32_t o = 0; o < n_out; ++o, w += k) {
            int32_t acc = dot_s8_s16(w, row, k);
            if (op->bias) acc = add_wrap(acc, op->bias[o]);
            if (op->fc_scale) {
                /* -DKWS_FC_LITERT_REFERENCE: ai-edge-litert's reference kernel for
                 * per-channel FULLY_CONNECTED rescales in double. */
                int32_t v = (int32_t)round((double)acc * op->fc_scale[o]) + op->out_offset;
                out[(size_t)b * n_out + o] = clamp8(v, op->act_min, op->act_max);
            } else {
                out[(size_t)b * n_out + o] = requant(acc, op, op->n_channels > 1 ? o : 0);
            }
        }
    }
}

/* -- pooling -------------------------------------------------------------------- */

void kws_avg_pool(const kws_op *op, const int8_t *in, int8_t *out) {
    const int32_t c_n = op->in_c;
    for (int32_t oy = 0; oy < op->out_h; ++oy) {
        const int32_t iy0 = oy * op->stride_h - op->pad_h;
        const int32_t fy0 = iy0 < 0 ? -iy0 : 0;
        const int32_t fy1 = op->k_h < op->in_h - iy0 ? op->k_h : op->in_h - iy0;
        for (int32_t ox = 0; ox < op->out_w; ++ox) {
            const int32_t ix0 = ox * op->stride_w - op->pad_w;
            const int32_t fx0 = ix0 < 0 ? -ix0 : 0;
            const int32_t fx1 = op->k_w < op->in_w - ix0 ? op->k_w : op->in_w - ix0;
            for (int32_t c = 0; c < c_n; ++c) {
                int64_t acc = 0;
                int32_t count = 0;
                for (int32_t fy = fy0; fy < fy1; ++fy)
                    for (int32_t fx = fx0; fx < fx1; ++fx) {
                        acc += in[((size_t)(iy0 + fy) * op->in_w + (ix0 + fx)) * c_n + c];
                        ++count;
                    }
                int32_t avg = 0;
                if (count > 0) avg = (int32_t)(acc > 0 ? (acc + count / 2) / count : (acc - count / 2) / count);
                out[((size_t)oy * op->out_w + ox) * c_n + c] = clamp8(avg, op->act_min, op->act_max);
            }
        }
    }
}

void kws_max_pool(const kws_op *op, const int8_t *in, int8_t *out) {
    const int32_t c_n = op->in_c;
    for (int32_t oy = 0; oy < op->out_h; ++oy) {
        const int32_t iy0 = oy * op->stride_h - op->pad_h;
        const int32_t fy0 = iy0 < 0 ? -iy0 : 0;
        const int32_t fy1 = op->k_h < op->in_h - iy0 ? op->k_h : op->in_h - iy0;
        for (int32_t ox = 0; ox < op->out_w; ++ox) {
            const int32_t ix0 = ox * op->stride_w - op->pad_w;
            const int32_t fx0 = ix0 < 0 ? -ix0 : 0;
            const int32_t fx1 = op->k_w < op->in_w - ix0 ? op->k_w : op->in_w - ix0;
            for (int32_t c = 0; c < c_n; ++c) {
                int32_t m = -128;
                for (int32_t fy = fy0; fy < fy1; ++fy)
                    for (int32_t fx = fx0; fx < fx1; ++fx) {
                        int32_t v = in[((size_t)(iy0 + fy) * op->in_w + (ix0 + fx)) * c_n + c];
                        if (v > m) m = v;
                    }
                out[((size_t)oy * op->out_w + ox) * c_n + c] = clamp8(m, op->act_min, op->act_max);
            }
        }
    }
}

/* -- ADD (same shapes) ------------------------------------------------------------ */

void kws_add(const kws_op *op, const int8_t *a, const int8_t *b, int8_t *out, int32_t n) {
    for (int32_t i = 0; i < n; ++i) {
        const int32_t x1 = shl_wrap(op->in_offset + a[i], 20);
        const int32_t x2 = shl_wrap(op->in2_offset + b[i], 20);
        const int32_t s1 = kws_rdbpot(kws_srdhm(x1, op->in1_mult), -op->in1_shift);
        const int32_t s2 = kws_rdbpot(kws_srdhm(x2, op->in2_mult), -op->in2_shift);
        const int32_t raw = kws_rdbpot(kws_srdhm(s1 + s2, op->out_mult), -op->out_shift) + op->out_offset;
        out[i] = clamp8(raw, op->act_min, op->act_max);
    }
}

/* -- MEAN over any of the 4 (padded) axes ------------------------------------------- */

void kws_mean(const kws_op *op, const kws_tensor *t, const int8_t *in, int8_t *out, int32_t out_elems, int32_t *sums) {
    int32_t od[4];
    for (int i = 0; i < 4; ++i) od[i] = (op->axis_mask >> i) & 1 ? 1 : t->dims[i];
    for (int32_t i = 0; i < out_elems; ++i) sums[i] = 0;
    size_t flat = 0;
    for (int32_t i0 = 0; i0 < t->dims[0]; ++i0) {
        const int32_t o0 = od[0] == 1 ? 0 : i0;
        for (int32_t i1 = 0; i1 < t->dims[1]; ++i1) {
            const int32_t o1 = od[1] == 1 ? 0 : i1;
            for (int32_t i2 = 0; i2 < t->dims[2]; ++i2) {
                const int32_t o2 = od[2] == 1 ? 0 : i2;
                int32_t *row = sums + ((o0 * od[1] + o1) * od[2] + o2) * od[3];
                if (od[3] == 1) {
                    for (int32_t i3 = 0; i3 < t->dims[3]; ++i3) row[0] = add_wrap(row[0], in[flat++]);
                } else {
                    for (int32_t i3 = 0; i3 < t->dims[3]; ++i3) row[i3] = add_wrap(row[i3], in[flat++]);
                }
            }
        }
    }
    const int32_t zp_total = (int32_t)((uint32_t)-op->in_offset * (uint32_t)op->reduce_count);
    for (int32_t i = 0; i < out_elems; ++i) {
        int32_t v = add_wrap(kws_mbqm(add_wrap(sums[i], -zp_total), op->mult[0], op->shift[0]), op->out_offset);
        out[i] = clamp8(v, -128, 127);
    }
}

/* -- SOFTMAX: gemmlowp fixed-point exp and reciprocal ----------------------------------- */

static inline int32_t sat_shl(int32_t x, int e) {
    const int32_t threshold = (int32_t)((((int64_t)1) << (31 - e)) - 1);
    if (x > threshold) return INT32_MAX;
    if (x < -threshold) return INT32_MIN;
    return shl_wrap(x, e);
}

static inline int32_t wrap_add(int32_t a, int32_t b) { return (int32_t)((uint32_t)a + (uint32_t)b); }
static inline int32_t wrap_sub(int32_t a, int32_t b) { return (int32_t)((uint32_t)a - (uint32_t)b); }

/* exp(a) for a in [-1/4, 0), Q0.31 in and out. */
static int32_t exp_quarter(int32_t a) {
    const int32_t constant_term = 1895147668;  /* exp(-1/8) */
    const int32_t one_third = 715827883;
    const int32_t x = wrap_add(a, 1 << 28);
    const int32_t x2 = kws_srdhm(x, x);
    const int32_t x3 = kws_srdhm(x2, x);
    const int32_t x4 = kws_srdhm(x2, x2);
    const int32_t x4_over_4 = kws_rdbpot(x4, 2);
    const int32_t poly = kws_rdbpot(wrap_add(kws_srdhm(wrap_add(x4_over_4, x3), one_third), x2), 1);
    return wrap_add(constant_term, kws_srdhm(constant_term, wrap_add(x, poly)));
}

/* exp(a) for a <= 0 given in Q5.26; result Q0.31. */
static int32_t exp_negative_q5(int32_t a) {
    static const int32_t factors[7] = {1672461947, 1302514674, 790015084, 290630308, 39332535, 720401, 242};
    const int32_t quarter = 1 << 24;
    const int32_t a_mod = wrap_sub(a & (quarter - 1), quarter);
    int32_t result = exp_quarter(sat_shl(a_mod, 5));
    const int32_t remainder = wrap_sub(a_mod, a);
    for (int i = 0; i < 7; ++i)
        if (remainder & (1 << (24 + i))) result = kws_srdhm(result, factors[i]);
    if (a == 0) result = INT32_MAX;
    return result;
}

/* 1 / (1 + a) for a in [0, 1), Q0.31 in and out (Newton-Raphson, 3 steps). */
static int32_t one_over_one_plus(int32_t a) {
    const int64_t sum = (int64_t)a + INT32_MAX;
    const int32_t half_den = (int32_t)((sum + (sum >= 0 ? 1 : -1)) / 2);
    int32_t x = wrap_add(1515870810, kws_srdhm(half_den, -1010580540));
    for (int i = 0; i < 3; ++i) {
        const int32_t hdx = kws_srdhm(half_den, x);
        const int32_t one_minus = wrap_sub(1 << 29, hdx);
        x = wrap_add(x, sat_shl(kws_srdhm(x, one_minus), 2));
    }
    return sat_shl(x, 1);
}

static inline int count_leading_zeros(uint32_t x) {
#if defined(__GNUC__)
    return x ? __builtin_clz(x) : 32;
#else
    int n = 0;
    if (!x) return 32;
    while (!(x & 0x80000000u)) { x <<= 1; ++n; }
    return n;
#endif
}

void kws_softmax(const kws_op *op, const int8_t *in, int8_t *out, int32_t rows, int32_t depth) {
    for (int32_t r = 0; r < rows; ++r) {
        const int8_t *x = in + (size_t)r * depth;
        int8_t *y = out + (size_t)r * depth;
        int32_t max_v = -128;
        for (int32_t c = 0; c < depth; ++c) if (x[c] > max_v) max_v = x[c];
        int32_t sum = 0;  /* Q12.19 */
        for (int32_t c = 0; c < depth; ++c) {
            const int32_t diff = x[c] - max_v;
            if (diff >= op->diff_min) {
                const int32_t scaled = kws_srdhm(shl_wrap(diff, op->in1_shift), op->in1_mult);
                sum = wrap_add(sum, kws_rdbpot(exp_negative_q5(scaled), 12));
            }
        }
        const int headroom = count_leading_zeros((uint32_t)sum);
        const int bits_over_unit = 12 - headroom;
        const int32_t shifted_minus_one = (int32_t)(((uint32_t)sum << headroom) - (1u << 31));
        const int32_t scale = one_over_one_plus(shifted_minus_one);
        const int exponent = bits_over_unit + 31 - 8;
        for (int32_t c = 0; c < depth; ++c) {
            const int32_t diff = x[c] - max_v;
            if (diff >= op->diff_min && exponent >= 0 && exponent <= 31) {
                const int32_t scaled = kws_srdhm(shl_wrap(diff, op->in1_shift), op->in1_mult);
                const int32_t e = exp_negative_q5(scaled);
                const int32_t v = kws_rdbpot(kws_srdhm(scale, e), exponent) - 128;
                y[c] = clamp8(v, -128, 127);
            } else {
                y[c] = -128;
            }
        }
    }
}
