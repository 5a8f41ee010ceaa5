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

#if defined(__GNUC__)
#define KWS_INLINE inline __attribute__((always_inline))
#else
#define KWS_INLINE inline
#endif

#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP && !defined(KWS_NO_DSP)
#include <arm_acle.h>
#define KWS_USE_DSP 1
#define KWS_SXTB16(x) ((uint32_t)__sxtb16((int32_t)(x)))
#define KWS_SMLAD(a, b, acc) __smlad((int16x2_t)(a), (int16x2_t)(b), (acc))
#define KWS_SMLABB(a, b, acc) __smlabb((int32_t)(a), (int32_t)(b), (acc))
#define KWS_SMLATT(a, b, acc) __smlatt((int32_t)(a), (int32_t)(b), (acc))
#define KWS_SADD16(a, b) ((uint32_t)__sadd16((int16x2_t)(a), (int16x2_t)(b)))
/* SXTB16 with its own rotate (bytes 1 and 3), one instruction */
static inline uint32_t KWS_SXTB16_ROR8(uint32_t x) {
    uint32_t r;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(x));
    return r;
}
#elif defined(KWS_DSP_EMULATE)
/* C versions of the Cortex-M4 DSP instructions, to test that path on a host. */
#define KWS_USE_DSP 1
static inline uint32_t KWS_SXTB16(uint32_t v) {
    uint32_t lo = (uint16_t)(int16_t)(int8_t)(v & 0xFFu);
    uint32_t hi = (uint16_t)(int16_t)(int8_t)((v >> 16) & 0xFFu);
    return lo | (hi << 16);
}
static inline uint32_t KWS_SXTB16_ROR8(uint32_t v) { return KWS_SXTB16((v >> 8) | (v << 24)); }
static inline int32_t KWS_SMLAD(uint32_t a, uint32_t b, int32_t acc) {
    int32_t p = (int32_t)(int16_t)(a & 0xFFFFu) * (int16_t)(b & 0xFFFFu)
              + (int32_t)(int16_t)(a >> 16) * (int16_t)(b >> 16);
    return (int32_t)((uint32_t)acc + (uint32_t)p);
}
static inline int32_t KWS_SMLABB(uint32_t a, uint32_t b, int32_t acc) {
    return (int32_t)((uint32_t)acc + (uint32_t)((int32_t)(int16_t)(a & 0xFFFFu) * (int16_t)(b & 0xFFFFu)));
}
static inline int32_t KWS_SMLATT(uint32_t a, uint32_t b, int32_t acc) {
    return (int32_t)((uint32_t)acc + (uint32_t)((int32_t)(int16_t)(a >> 16) * (int16_t)(b >> 16)));
}
static inline uint32_t KWS_SADD16(uint32_t a, uint32_t b) {
    uint32_t lo = (uint16_t)((int16_t)(a & 0xFFFFu) + (int16_t)(b & 0xFFFFu));
    uint32_t hi = (uint16_t)((int16_t)(a >> 16) + (int16_t)(b >> 16));
    return lo | (hi << 16);
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

/* TFLite's QuantizeMultiplier (frexp, then round(q * 2^31)) done on the bits of
 * the double, so it needs no double libm: the stm32 port links MicroPython's
 * float-only libm (no frexp/round). Bit-identical with the libm version: for
 * m = mant * 2^(ex - 1075) with the 53-bit mantissa mant, frexp gives
 * q = mant / 2^53 and e = ex - 1022, and round(q * 2^31) = round(mant / 2^22)
 * is an integer shift (half away from zero). Subnormals are normalised first. */
void kws_quantize_multiplier(double m, int32_t *multiplier, int *shift) {
    uint64_t bits;
    memcpy(&bits, &m, sizeof bits);
    const int negative = (int)(bits >> 63);
    int ex = (int)((bits >> 52) & 0x7ff);
    uint64_t mant = bits & (((uint64_t)1 << 52) - 1);
    if ((ex == 0 && mant == 0) || ex == 0x7ff) { /* zero, NaN, infinity */
        *multiplier = 0;
        *shift = 0;
        return;
    }
    if (ex == 0) {
        ex = 1;
        while (!(mant & ((uint64_t)1 << 52))) { mant <<= 1; --ex; }
    } else {
        mant |= (uint64_t)1 << 52;
    }
    int e = ex - 1022;
    int64_t fixed = (int64_t)((mant + ((uint64_t)1 << 21)) >> 22);
    if (negative) fixed = -fixed;
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

#ifdef KWS_FC_LITERT_REFERENCE
/* round(x) (half away from zero) without libm, saturated to +-2^24: enough for
 * the int8 clamp that follows, and no int32 overflow on hostile scales. */
static int32_t round_sat_d(double x) {
    const double lim = (double)(1 << 24);
    if (!(x == x)) return 0;
    if (x >= lim) return 1 << 24;
    if (x <= -lim) return -(1 << 24);
    int32_t t = (int32_t)x;         /* truncates toward zero */
    const double f = x - (double)t; /* exact: the fraction of x */
    const double half = (double)1 / 2;
    if (f >= half) ++t;
    else if (f <= -half) --t;
    return t;
}
#endif

static inline int8_t clamp8(int32_t v, int32_t lo, int32_t hi) {
    if (v < lo) v = lo;
    if (v > hi) v = hi;
    return (int8_t)v;
}

/* -- requantisation, inlined into the kernels ------------------------------- */

/* MultiplyByQuantizedMultiplier for the conv / depthwise / FC multipliers,
 * which QuantizeMultiplier keeps in [0, 2^31) (scales are validated >= 0), so
 * SaturatingRoundingDoublingHighMul never saturates and its nudged division
 * equals (a*b + 2^30) >> 31 for every product of either sign. The rounding
 * right shift is gemmlowp's RoundingDivideByPOT (half away from zero). */
/* SaturatingRoundingDoublingHighMul for b in [0, 2^31): the saturating case
 * (a == b == INT32_MIN) cannot occur, and the nudged division of the 64-bit
 * product equals (a*b + 2^30) >> 31 for products of either sign. */
static KWS_INLINE int32_t srdhm_pos(int32_t a, int32_t b) {
    return (int32_t)(((int64_t)a * b + (1 << 30)) >> 31);
}

/* RoundingDivideByPOT(SaturatingRoundingDoublingHighMul(x, m), r) for
 * m in [0, 2^31) and r in [0, 31]. For r >= 1 both roundings happen in one
 * 64-bit sum: with P = x * m, SRDHM gives h = floor((P + 2^30) / 2^31) and
 * RoundingDivideByPOT rounds h / 2^r half away from zero, which equals
 * floor((P + 2^30 + 2^(30+r) - 2^31 [x < 0]) / 2^(31+r)) (for h >= 0 rounding
 * up needs bit r-1 of h, for h < 0 bit r-1 and a lower one; x < 0 with h = 0
 * gives 0 either way). 31 + r >= 32, so only the high word is shifted.
 * Checked against the two-step form on 3e8 random (x, m, r) including the
 * int32 extremes (and by the bit-exactness tests). */
static KWS_INLINE int32_t mul_round_right(int32_t x, int32_t m, int32_t r) {
    if (r <= 0) return srdhm_pos(x, m);
    const int32_t rm1 = r - 1;
    const int64_t preset = ((int64_t)((uint32_t)1 << rm1) << 31) + (1 << 30) - (x < 0 ? ((int64_t)1 << 31) : 0);
    const int64_t t = preset + (int64_t)x * m;
    return (int32_t)(t >> 32) >> rm1;
}

static KWS_INLINE int32_t requant_ch(int32_t acc, int32_t mult, int32_t shift) {
#ifdef KWS_SINGLE_ROUNDING
    return kws_mbqm(acc, mult, shift);
#else
    /* MultiplyByQuantizedMultiplier for the conv / depthwise / FC multipliers,
     * which QuantizeMultiplier keeps in [0, 2^31) (scales are validated >= 0,
     * shift in [-31, 30]). */
    if (shift < 0) return mul_round_right(acc, mult, -shift);
    return srdhm_pos(shl_wrap(acc, shift), mult);
#endif
}

static KWS_INLINE int8_t requant(int32_t acc, const kws_op *op, int32_t ch) {
    int32_t v = add_wrap(requant_ch(acc, op->u.conv.mult[ch], op->u.conv.shift[ch]), op->out_offset);
    return clamp8(v, op->act_min, op->act_max);
}

/* A little-endian int32 at any alignment (the model's biases, read in place). */
static KWS_INLINE int32_t ld_le32(const uint8_t *p) {
#if defined(__BYTE_ORDER__) && defined(__ORDER_BIG_ENDIAN__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    return (int32_t)((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24);
#else
    int32_t v;
    memcpy(&v, p, 4); /* one LDR on a Cortex-M4 (unaligned loads allowed) and on x86 */
    return v;
#endif
}

/* -- int16 (input + offset) vectors and dot products with int8 weights ------- */

size_t kws_conv_patch_bytes(int32_t k_len) {
    return (size_t)((k_len + 3) & ~3) * sizeof(int16_t);
}

/* dst = src + off as int16. On the DSP path each group of 4 is stored
 * x0 x2 x1 x3, the order SXTB16 unpacks 4 int8 weights into; a tail of
 * fewer than 4 stays in natural order (the dot products agree). */
static KWS_INLINE void widen_s8(const int8_t *src, int16_t *dst, int32_t n, int16_t off) {
#if KWS_USE_DSP
    const uint32_t off2 = (uint32_t)(uint16_t)off * 0x10001u;
    for (; n >= 4; n -= 4) {
        uint32_t v;
        memcpy(&v, src, 4);
        const uint32_t lo = KWS_SADD16(KWS_SXTB16(v), off2), hi = KWS_SADD16(KWS_SXTB16_ROR8(v), off2);
        memcpy(dst, &lo, 4);
        memcpy(dst + 2, &hi, 4);
        src += 4;
        dst += 4;
    }
#endif
    for (int32_t i = 0; i < n; ++i) dst[i] = (int16_t)(src[i] + off);
}

static KWS_INLINE int32_t dot_s8_s16(const int8_t *w, const int16_t *x, int32_t n) {
    int32_t acc = 0;
#if KWS_USE_DSP
    for (; n >= 4; n -= 4) {
        uint32_t w4, x02, x13;
        memcpy(&w4, w, 4);
        memcpy(&x02, x, 4);
        memcpy(&x13, x + 2, 4);
        acc = KWS_SMLAD(KWS_SXTB16(w4), x02, acc);
        acc = KWS_SMLAD(KWS_SXTB16_ROR8(w4), x13, acc);
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

/* -- CONV_2D (per-channel) --------------------------------------------------- */

/* Output pixels go in pairs: the (input + offset) vectors of the two pixels
 * p and q are interleaved into one "pair patch", so a dot-product step loads
 * both pixels' values with one pointer. Layout: portable, p0 q0 p1 q1 ...;
 * DSP path, per group of 4 taps p0 p2 q0 q2 p1 p3 q1 q3 (the SXTB16 order of
 * the weights), a tail of fewer than 4 as p q pairs. */

size_t kws_conv_scratch_bytes(int32_t k_len) { return 2 * kws_conv_patch_bytes(k_len); }

/* widen two int8 vectors (+ offset) straight into a pair patch */
static void widen_pair(const int8_t *s0, const int8_t *s1, int16_t *dst, int32_t n, int16_t off) {
#if KWS_USE_DSP
    const uint32_t off2 = (uint32_t)(uint16_t)off * 0x10001u;
    for (; n >= 4; n -= 4) {
        uint32_t v0, v1, w[4];
        memcpy(&v0, s0, 4);
        memcpy(&v1, s1, 4);
        w[0] = KWS_SADD16(KWS_SXTB16(v0), off2);
        w[1] = KWS_SADD16(KWS_SXTB16(v1), off2);
        w[2] = KWS_SADD16(KWS_SXTB16_ROR8(v0), off2);
        w[3] = KWS_SADD16(KWS_SXTB16_ROR8(v1), off2);
        memcpy(dst, w, 16);
        s0 += 4;
        s1 += 4;
        dst += 8;
    }
#endif
    for (int32_t i = 0; i < n; ++i) {
        dst[2 * i] = (int16_t)(s0[i] + off);
        dst[2 * i + 1] = (int16_t)(s1[i] + off);
    }
}

/* Slot of tap i of pixel `which` (0 = p, 1 = q) in a pair patch of n taps. */
static inline int32_t pair_slot(int32_t i, int32_t n, int32_t which) {
#if KWS_USE_DSP
    if (i < (n & ~3)) return 8 * (i >> 2) + ((i & 1) << 2) + ((i & 3) >> 1) + 2 * which;
#else
    (void)n;
#endif
    return 2 * i + which;
}

/* The (input + offset) values of output pixel (oy, ox), written into its
 * half of the pair patch. Taps outside the image contribute nothing in
 * TFLite; a zero (input + offset) value gives exactly that. */
static void conv_patch(const kws_op *op, const int8_t *in, int32_t oy, int32_t ox, int16_t *pair, int32_t which) {
    const kws_conv_params *g = &op->u.conv;
    const int32_t in_h = g->in_h, in_w = g->in_w, in_c = g->in_c, n = g->k_len;
    const int16_t off = (int16_t)op->in_offset;
    const int32_t iy0 = oy * g->stride_h - g->pad_h, ix0 = ox * g->stride_w - g->pad_w;
    int32_t i = 0;
    for (int32_t ky = 0; ky < g->k_h; ++ky) {
        const int32_t iy = iy0 + ky * g->dil_h;
        for (int32_t kx = 0; kx < g->k_w; ++kx) {
            const int32_t ix = ix0 + kx * g->dil_w;
            if (iy < 0 || iy >= in_h || ix < 0 || ix >= in_w) {
                for (int32_t c = 0; c < in_c; ++c, ++i) pair[pair_slot(i, n, which)] = 0;
            } else {
                const int8_t *src = in + ((size_t)iy * in_w + ix) * in_c;
                for (int32_t c = 0; c < in_c; ++c, ++i) pair[pair_slot(i, n, which)] = (int16_t)(src[c] + off);
            }
        }
    }
}

/* Two weight rows (output channels a, b) against a pair patch (pixels p, q):
 * 2x2 register blocking. On the DSP path each step of 4 taps loads 4 weights
 * of each row (SXTB16 unpacks them into two int16 pairs) and both pixels'
 * values (two LDRDs), and does 8 SMLAD: 16 MACs. */
static KWS_INLINE void dot_2x2(const int8_t *wa, const int8_t *wb, const int16_t *x, int32_t n, int32_t ba, int32_t bb,
                               int32_t acc[4]) {
#if KWS_USE_DSP
    int32_t ap = ba, aq = ba, bp = bb, bq = bb;
#if defined(__GNUC__)
    x = (const int16_t *)__builtin_assume_aligned(x, 8); /* pair patches start 8-aligned: LDRD */
#endif
    for (; n >= 4; n -= 4) {
        uint32_t A, B, p02, q02, p13, q13;
        memcpy(&A, wa, 4);
        memcpy(&B, wb, 4);
        memcpy(&p02, x, 4);
        memcpy(&q02, x + 2, 4);
        uint32_t a2 = KWS_SXTB16(A), b2 = KWS_SXTB16(B);
        ap = KWS_SMLAD(a2, p02, ap);
        aq = KWS_SMLAD(a2, q02, aq);
        bp = KWS_SMLAD(b2, p02, bp);
        bq = KWS_SMLAD(b2, q02, bq);
        memcpy(&p13, x + 4, 4);
        memcpy(&q13, x + 6, 4);
        a2 = KWS_SXTB16_ROR8(A);
        b2 = KWS_SXTB16_ROR8(B);
        ap = KWS_SMLAD(a2, p13, ap);
        aq = KWS_SMLAD(a2, q13, aq);
        bp = KWS_SMLAD(b2, p13, bp);
        bq = KWS_SMLAD(b2, q13, bq);
        wa += 4;
        wb += 4;
        x += 8;
    }
    for (int32_t i = 0; i < n; ++i) {
        ap = add_wrap(ap, wa[i] * x[2 * i]);
        aq = add_wrap(aq, wa[i] * x[2 * i + 1]);
        bp = add_wrap(bp, wb[i] * x[2 * i]);
        bq = add_wrap(bq, wb[i] * x[2 * i + 1]);
    }
    acc[0] = ap; acc[1] = aq; acc[2] = bp; acc[3] = bq;
#else
    /* unsigned sums wrap like the int32 sums of TFLite (no undefined overflow) */
    uint32_t ap = (uint32_t)ba, aq = (uint32_t)ba, bp = (uint32_t)bb, bq = (uint32_t)bb;
    for (int32_t i = 0; i < n; ++i) {
        const int32_t p = x[2 * i], q = x[2 * i + 1], u = wa[i], v = wb[i];
        ap += (uint32_t)(u * p);
        aq += (uint32_t)(u * q);
        bp += (uint32_t)(v * p);
        bq += (uint32_t)(v * q);
    }
    acc[0] = (int32_t)ap; acc[1] = (int32_t)aq; acc[2] = (int32_t)bp; acc[3] = (int32_t)bq;
#endif
}

static KWS_INLINE int8_t rq_out(int32_t acc, int32_t mult, int32_t shift, int32_t out_off, int32_t lo, int32_t hi) {
    return clamp8(add_wrap(requant_ch(acc, mult, shift), out_off), lo, hi);
}

/* scratch: kws_conv_scratch_bytes(k_len), the pair patch. A last odd pixel is paired with
 * itself and a last odd channel with itself; the duplicate results are
 * dropped. */
void kws_conv2d(const kws_op *op, const int8_t *in, const int8_t *filter, int8_t *out, int16_t *scratch) {
    const kws_conv_params *g = &op->u.conv;
    const int32_t k_len = g->k_len, out_c = g->out_c, out_w = g->out_w, in_c = g->in_c;
    const int32_t pixels = g->out_h * out_w;
    const int32_t out_off = op->out_offset, lo = op->act_min, hi = op->act_max;
    const int32_t *mult = g->mult;
    const int8_t *shift = g->shift;
    const uint8_t *bias = (const uint8_t *)g->bias;
    const int pointwise = g->k_h == 1 && g->k_w == 1;
    int16_t *pair = scratch;
    const int16_t off = (int16_t)op->in_offset;
    for (int32_t px = 0; px < pixels; px += 2) {
        const int two = px + 1 < pixels;
        const int32_t py = px / out_w, pxx = px % out_w;
        const int32_t qy = two ? (px + 1) / out_w : py, qx = two ? (px + 1) % out_w : pxx;
        if (pointwise) {
            /* 1x1: padding is 0 for both paddings, so the tap is in the image */
            const int8_t *s0 = in + ((size_t)(py * g->stride_h) * g->in_w + (size_t)(pxx * g->stride_w)) * in_c;
            const int8_t *s1 = in + ((size_t)(qy * g->stride_h) * g->in_w + (size_t)(qx * g->stride_w)) * in_c;
            widen_pair(s0, s1, pair, in_c, off);
        } else {
            conv_patch(op, in, py, pxx, pair, 0);
            conv_patch(op, in, qy, qx, pair, 1);
        }
        int8_t *dp = out + (size_t)px * out_c, *dq = dp + out_c;
        const int8_t *w = filter;
        for (int32_t oc = 0; oc < out_c; oc += 2, w += 2 * (size_t)k_len) {
            const int both = oc + 1 < out_c;
            const int32_t ob = both ? oc + 1 : oc;
            int32_t acc[4];
            dot_2x2(w, both ? w + k_len : w, pair, k_len, bias ? ld_le32(bias + 4 * (size_t)oc) : 0,
                    bias ? ld_le32(bias + 4 * (size_t)ob) : 0, acc);
            const int32_t ma = mult[oc], sa = shift[oc];
            dp[oc] = rq_out(acc[0], ma, sa, out_off, lo, hi);
            if (two) dq[oc] = rq_out(acc[1], ma, sa, out_off, lo, hi);
            if (both) {
                const int32_t mb = mult[ob], sb = shift[ob];
                dp[ob] = rq_out(acc[2], mb, sb, out_off, lo, hi);
                if (two) dq[ob] = rq_out(acc[3], mb, sb, out_off, lo, hi);
            }
        }
    }
}

/* -- DEPTHWISE_CONV_2D (per-channel) ----------------------------------------- */

size_t kws_depthwise_scratch_bytes(int32_t taps, int32_t in_c, int32_t out_c) {
    return (size_t)taps * sizeof(const int8_t *) + (size_t)((in_c + 3) & ~3) + 4 * (size_t)out_c;
}

/* Depthwise, 4 output channels from c (multiplier 1): sums in registers over all taps. */
static KWS_INLINE void dw_group4(const int8_t *const *tap, const int8_t *filter, int32_t c, int32_t out_c, int32_t taps,
                                 const int32_t *corr, const int32_t *qm, const int8_t *qs, int32_t out_off, int32_t lo,
                                 int32_t hi, int8_t *dst) {
    const int8_t *f = filter + c;
#if KWS_USE_DSP
    int32_t a0 = corr[c], a1 = corr[c + 1], a2 = corr[c + 2], a3 = corr[c + 3];
    for (int32_t t = 0; t < taps; ++t, f += out_c) {
        uint32_t xv, fv;
        memcpy(&xv, tap[t] + c, 4);
        memcpy(&fv, f, 4);
        const uint32_t x02 = KWS_SXTB16(xv), x13 = KWS_SXTB16_ROR8(xv);
        const uint32_t f02 = KWS_SXTB16(fv), f13 = KWS_SXTB16_ROR8(fv);
        a0 = KWS_SMLABB(x02, f02, a0);
        a2 = KWS_SMLATT(x02, f02, a2);
        a1 = KWS_SMLABB(x13, f13, a1);
        a3 = KWS_SMLATT(x13, f13, a3);
    }
#else
    uint32_t a0 = (uint32_t)corr[c], a1 = (uint32_t)corr[c + 1], a2 = (uint32_t)corr[c + 2], a3 = (uint32_t)corr[c + 3];
    for (int32_t t = 0; t < taps; ++t, f += out_c) {
        const int8_t *x = tap[t] + c;
        a0 += (uint32_t)(x[0] * f[0]);
        a1 += (uint32_t)(x[1] * f[1]);
        a2 += (uint32_t)(x[2] * f[2]);
        a3 += (uint32_t)(x[3] * f[3]);
    }
#endif
    dst[c] = rq_out((int32_t)a0, qm[c], qs[c], out_off, lo, hi);
    dst[c + 1] = rq_out((int32_t)a1, qm[c + 1], qs[c + 1], out_off, lo, hi);
    dst[c + 2] = rq_out((int32_t)a2, qm[c + 2], qs[c + 2], out_off, lo, hi);
    dst[c + 3] = rq_out((int32_t)a3, qm[c + 3], qs[c + 3], out_off, lo, hi);
}

/* First corr[c] = bias[c] + in_offset * (sum of channel c's weights over all
 * taps), so the sums take the raw int8 input (wrapping int32 arithmetic, as
 * the sums). A tap in the padding reads a row of the input zero point
 * z = -in_offset, which adds f * z and cancels its share of the correction:
 * exactly the "contributes nothing" of TFLite. Output channels go 4 at a time
 * with the sums in registers over all taps. scratch: tap pointers, the z row,
 * corr (computed here on every run rather than kept in the arena: taps x
 * channels additions, about 0.1-0.3 % of a DEPTHWISE op). */
void kws_depthwise(const kws_op *op, const int8_t *in, int8_t *out, void *scratch) {
    const kws_conv_params *g = &op->u.conv;
    const int32_t in_h = g->in_h, in_w = g->in_w, in_c = g->in_c, out_c = g->out_c;
    const int32_t k_h = g->k_h, k_w = g->k_w, taps = k_h * k_w, mult = g->depth_mult;
    const int32_t out_off = op->out_offset, lo = op->act_min, hi = op->act_max;
    const int32_t *qm = g->mult;
    const int8_t *qs = g->shift, *filter = g->weights;
    const int8_t **tap = (const int8_t **)scratch;
    int8_t *zrow = (int8_t *)(tap + taps);
    const size_t zrow_bytes = (size_t)((in_c + 3) & ~3);
    memset(zrow, (int8_t)-op->in_offset, zrow_bytes);
    int32_t *corr = (int32_t *)(void *)(zrow + zrow_bytes); /* 4-aligned: tap table and z row are */
    {
        const uint8_t *bias = (const uint8_t *)g->bias;
        const uint32_t in_off = (uint32_t)op->in_offset;
        for (int32_t c = 0; c < out_c; ++c) corr[c] = bias ? ld_le32(bias + 4 * (size_t)c) : 0;
        for (int32_t t = 0; t < taps; ++t) {
            const int8_t *f = filter + (size_t)t * out_c;
            for (int32_t c = 0; c < out_c; ++c) corr[c] = (int32_t)((uint32_t)corr[c] + (uint32_t)(int32_t)f[c] * in_off);
        }
    }
    const int fast = mult == 1 && (out_c & 3) == 0;
    for (int32_t oy = 0; oy < g->out_h; ++oy) {
        const int32_t iy0 = oy * g->stride_h - g->pad_h;
        for (int32_t ox = 0; ox < g->out_w; ++ox) {
            const int32_t ix0 = ox * g->stride_w - g->pad_w;
            const int8_t **tp = tap;
            for (int32_t ky = 0, iy = iy0; ky < k_h; ++ky, iy += g->dil_h)
                for (int32_t kx = 0, ix = ix0; kx < k_w; ++kx, ix += g->dil_w)
                    *tp++ = (iy < 0 || iy >= in_h || ix < 0 || ix >= in_w) ? zrow : in + ((size_t)iy * in_w + ix) * in_c;
            int8_t *dst = out + ((size_t)oy * g->out_w + ox) * out_c;
            int32_t c = 0;
            if (fast) {
                /* 3x3, the common case, gets its tap loop unrolled by the compiler */
                if (taps == 9) {
                    for (; c < out_c; c += 4) dw_group4(tap, filter, c, out_c, 9, corr, qm, qs, out_off, lo, hi, dst);
                } else {
                    for (; c < out_c; c += 4) dw_group4(tap, filter, c, out_c, taps, corr, qm, qs, out_off, lo, hi, dst);
                }
            }
            for (; c < out_c; ++c) {
                const int32_t ic = c / mult;
                uint32_t a = (uint32_t)corr[c];
                const int8_t *f = filter + c;
                for (int32_t t = 0; t < taps; ++t, f += out_c) a += (uint32_t)(tap[t][ic] * *f);
                dst[c] = rq_out((int32_t)a, qm[c], qs[c], out_off, lo, hi);
            }
        }
    }
}

/* -- FULLY_CONNECTED ---------------------------------------------------------- */

void kws_fully_connected(const kws_op *op, const int8_t *in, int8_t *out, int16_t *row) {
    const kws_conv_params *g = &op->u.conv;
    const int32_t k = g->k_len, n_out = g->out_c;
    const int8_t *weights = g->weights;
    const uint8_t *bias = (const uint8_t *)g->bias;
    for (int32_t b = 0; b < g->batches; ++b) {
        const int8_t *x = in + (size_t)b * k;
        widen_s8(x, row, k, (int16_t)op->in_offset);
        const int8_t *w = weights;
        for (int32_t o = 0; o < n_out; ++o, w += k) {
            int32_t acc = dot_s8_s16(w, row, k);
            if (bias) acc = add_wrap(acc, ld_le32(bias + 4 * (size_t)o));
#ifdef KWS_FC_LITERT_REFERENCE
            if (g->fc_scale) {
                /* -DKWS_FC_LITERT_REFERENCE: ai-edge-litert's reference kernel for
                 * per-channel FULLY_CONNECTED rescales in double. */
                int32_t v = round_sat_d((double)acc * g->fc_scale[o]) + op->out_offset;
                out[(size_t)b * n_out + o] = clamp8(v, op->act_min, op->act_max);
                continue;
            }
#endif
            out[(size_t)b * n_out + o] = requant(acc, op, g->per_channel ? o : 0);
        }
    }
}

/* -- pooling -------------------------------------------------------------------- */

void kws_avg_pool(const kws_op *op, const int8_t *in, int8_t *out) {
    const kws_conv_params *g = &op->u.conv;
    const int32_t c_n = g->in_c;
    for (int32_t oy = 0; oy < g->out_h; ++oy) {
        const int32_t iy0 = oy * g->stride_h - g->pad_h;
        const int32_t fy0 = iy0 < 0 ? -iy0 : 0;
        const int32_t fy1 = g->k_h < g->in_h - iy0 ? g->k_h : g->in_h - iy0;
        for (int32_t ox = 0; ox < g->out_w; ++ox) {
            const int32_t ix0 = ox * g->stride_w - g->pad_w;
            const int32_t fx0 = ix0 < 0 ? -ix0 : 0;
            const int32_t fx1 = g->k_w < g->in_w - ix0 ? g->k_w : g->in_w - ix0;
            for (int32_t c = 0; c < c_n; ++c) {
                int64_t acc = 0;
                int32_t count = 0;
                for (int32_t fy = fy0; fy < fy1; ++fy)
                    for (int32_t fx = fx0; fx < fx1; ++fx) {
                        acc += in[((size_t)(iy0 + fy) * g->in_w + (ix0 + fx)) * c_n + c];
                        ++count;
                    }
                int32_t avg = 0;
                if (count > 0) avg = (int32_t)(acc > 0 ? (acc + count / 2) / count : (acc - count / 2) / count);
                out[((size_t)oy * g->out_w + ox) * c_n + c] = clamp8(avg, op->act_min, op->act_max);
            }
        }
    }
}

void kws_max_pool(const kws_op *op, const int8_t *in, int8_t *out) {
    const kws_conv_params *g = &op->u.conv;
    const int32_t c_n = g->in_c;
    for (int32_t oy = 0; oy < g->out_h; ++oy) {
        const int32_t iy0 = oy * g->stride_h - g->pad_h;
        const int32_t fy0 = iy0 < 0 ? -iy0 : 0;
        const int32_t fy1 = g->k_h < g->in_h - iy0 ? g->k_h : g->in_h - iy0;
        for (int32_t ox = 0; ox < g->out_w; ++ox) {
            const int32_t ix0 = ox * g->stride_w - g->pad_w;
            const int32_t fx0 = ix0 < 0 ? -ix0 : 0;
            const int32_t fx1 = g->k_w < g->in_w - ix0 ? g->k_w : g->in_w - ix0;
            for (int32_t c = 0; c < c_n; ++c) {
                int32_t m = -128;
                for (int32_t fy = fy0; fy < fy1; ++fy)
                    for (int32_t fx = fx0; fx < fx1; ++fx) {
                        int32_t v = in[((size_t)(iy0 + fy) * g->in_w + (ix0 + fx)) * c_n + c];
                        if (v > m) m = v;
                    }
                out[((size_t)oy * g->out_w + ox) * c_n + c] = clamp8(m, op->act_min, op->act_max);
            }
        }
    }
}

/* -- ADD (same shapes) ------------------------------------------------------------ */

void kws_add(const kws_op *op, const int8_t *a, const int8_t *b, int8_t *out) {
    /* TFLite's int8 ADD: inputs shifted left by 20, each rescaled, summed,
     * output rescaled. Every multiplier here comes from QuantizeMultiplier of
     * a ratio in (0, 1) (checked at load), so it is in [0, 2^31) with a shift
     * in [-31, 0]; |input + offset| <= 255 keeps the shifted values and the
     * sum far inside int32. */
    const kws_add_params *p = &op->u.add;
    const int32_t n = p->n, o1 = op->in_offset, o2 = p->in2_offset, oo = op->out_offset;
    const int32_t m1 = p->in1_mult, m2 = p->in2_mult, mo = p->out_mult;
    const int32_t r1 = -p->in1_shift, r2 = -p->in2_shift, ro = -p->out_shift;
    const int32_t lo = op->act_min, hi = op->act_max;
    for (int32_t i = 0; i < n; ++i) {
        const int32_t x1 = (o1 + a[i]) * (1 << 20), x2 = (o2 + b[i]) * (1 << 20);
        const int32_t s1 = mul_round_right(x1, m1, r1), s2 = mul_round_right(x2, m2, r2);
        out[i] = clamp8(mul_round_right(s1 + s2, mo, ro) + oo, lo, hi);
    }
}

/* -- MEAN over any of the 4 (padded) axes ------------------------------------------- */

void kws_mean(const kws_op *op, const int8_t *in, int8_t *out, int32_t *sums) {
    const kws_mean_params *t = &op->u.mean;
    const int32_t out_elems = t->n_out;
    int32_t od[4];
    for (int i = 0; i < 4; ++i) od[i] = (t->axis_mask >> i) & 1 ? 1 : t->dims[i];
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
    const int32_t zp_total = (int32_t)((uint32_t)-op->in_offset * (uint32_t)t->reduce_count);
    for (int32_t i = 0; i < out_elems; ++i) {
        int32_t v = add_wrap(kws_mbqm(add_wrap(sums[i], -zp_total), t->mult, t->shift), op->out_offset);
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

void kws_softmax(const kws_op *op, const int8_t *in, int8_t *out) {
    const kws_softmax_params *p = &op->u.softmax;
    const int32_t rows = p->rows, depth = p->depth;
    for (int32_t r = 0; r < rows; ++r) {
        const int8_t *x = in + (size_t)r * depth;
        int8_t *y = out + (size_t)r * depth;
        int32_t max_v = -128;
        for (int32_t c = 0; c < depth; ++c) if (x[c] > max_v) max_v = x[c];
        int32_t sum = 0;  /* Q12.19 */
        for (int32_t c = 0; c < depth; ++c) {
            const int32_t diff = x[c] - max_v;
            if (diff >= p->diff_min) {
                const int32_t scaled = kws_srdhm(shl_wrap(diff, p->shift), p->mult);
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
            if (diff >= p->diff_min && exponent >= 0 && exponent <= 31) {
                const int32_t scaled = kws_srdhm(shl_wrap(diff, p->shift), p->mult);
                const int32_t e = exp_negative_q5(scaled);
                const int32_t v = kws_rdbpot(kws_srdhm(scale, e), exponent) - 128;
                y[c] = clamp8(v, -128, 127);
            } else {
                y[c] = -128;
            }
        }
    }
}
