/* TFLite flatbuffer reader, validator and arena planner.
 *
 * The model bytes are untrusted: every read goes through a helper that checks
 * the position against the buffer length first (vtables, offsets, vector
 * lengths, strings are all checked), loops only run over counts that were
 * checked against the bytes that hold them, and every shape is validated
 * before a kernel can see it. Reads are byte-wise little-endian, so the model
 * may sit at any alignment.
 */
#include <stdarg.h>
#include <string.h>
#include <math.h>
#include "kws_internal.h"

#define MAX_TENSORS 4096
#define MAX_OPS 1024
#define MAX_DIM (1 << 16)
#define MAX_ELEMS (1 << 24)

enum { OPT_CONV = 1, OPT_DW = 2, OPT_POOL = 5, OPT_FC = 8, OPT_SOFTMAX = 9, OPT_ADD = 11, OPT_RESHAPE = 17, OPT_REDUCER = 27 };

typedef struct {
    const uint8_t *p;
    size_t n;
    kws_error *err;
    int failed;
    uint8_t *arena;
    size_t arena_size, head, tail;
    size_t base;         /* first 16-byte-aligned position of the arena */
    size_t tail_top;     /* end of the temporary region: base + the arena's 8-byte multiple */
    kws_tensor *tensors; /* the temporary tensor table (load time only, at the arena's end) */
    int32_t n_tensors;
} ctx_t;

typedef struct { size_t pos, vt; uint32_t vsize, tsize; } table_t;
typedef struct { size_t start; uint32_t count; } vec_t;

/* -- messages (a tiny formatter: %s %d %u %z, so no stdio is linked) -- */

static size_t put_str(char *dst, size_t at, size_t cap, const char *s) {
    while (*s && at + 1 < cap) dst[at++] = *s++;
    return at;
}

static size_t put_num(char *dst, size_t at, size_t cap, unsigned long v, int negative) {
    char tmp[24];
    int n = 0;
    do { tmp[n++] = (char)('0' + v % 10); v /= 10; } while (v && n < 23);
    if (negative && at + 1 < cap) dst[at++] = '-';
    while (n > 0 && at + 1 < cap) dst[at++] = tmp[--n];
    return at;
}

static void set_error(kws_error *err, int code, const char *fmt, ...) {
    if (!err) return;
    va_list ap;
    size_t at = 0, cap = sizeof(err->message);
    va_start(ap, fmt);
    for (const char *f = fmt; *f && at + 1 < cap; ++f) {
        if (*f != '%' || !f[1]) { err->message[at++] = *f; continue; }
        ++f;
        if (*f == 's') at = put_str(err->message, at, cap, va_arg(ap, const char *));
        else if (*f == 'd') { int v = va_arg(ap, int); at = put_num(err->message, at, cap, v < 0 ? 0UL - (unsigned long)v : (unsigned long)v, v < 0); }
        else if (*f == 'u') at = put_num(err->message, at, cap, va_arg(ap, unsigned), 0);
        else if (*f == 'z') at = put_num(err->message, at, cap, (unsigned long)va_arg(ap, size_t), 0);
        else err->message[at++] = *f;
    }
    va_end(ap);
    err->message[at] = 0;
    err->code = code;
}

#define FAIL(c, code, ...) do { if (!(c)->failed) { (c)->failed = 1; set_error((c)->err, code, __VA_ARGS__); } return 0; } while (0)
#define BAD(c, what) FAIL(c, KWS_ERR_FORMAT, "damaged TFLite model (%s)", what)

/* -- bounds-checked flatbuffer access -- */

static inline uint32_t rd32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static inline float rdf32(const uint8_t *p) { uint32_t u = rd32(p); float f; memcpy(&f, &u, 4); return f; }

static inline int in_range(const ctx_t *c, size_t off, size_t len) { return off <= c->n && len <= c->n - off; }

static int table_at(ctx_t *c, size_t pos, table_t *t) {
    if (!in_range(c, pos, 4)) BAD(c, "table outside the file");
    int64_t vt = (int64_t)pos - (int64_t)(int32_t)rd32(c->p + pos);
    if (vt < 0 || !in_range(c, (size_t)vt, 4)) BAD(c, "vtable outside the file");
    t->pos = pos;
    t->vt = (size_t)vt;
    t->vsize = rd16(c->p + t->vt);
    t->tsize = rd16(c->p + t->vt + 2);
    if (t->vsize < 4 || (t->vsize & 1) || !in_range(c, t->vt, t->vsize)) BAD(c, "bad vtable");
    if (t->tsize < 4 || !in_range(c, pos, t->tsize)) BAD(c, "table runs past the end");
    return 1;
}

/* Position of field idx (width bytes), 0 if absent or on error (c->failed). */
static size_t field(ctx_t *c, const table_t *t, int idx, size_t width) {
    size_t voff = 4 + 2 * (size_t)idx;
    if (c->failed || voff + 2 > t->vsize) return 0;
    uint32_t fo = rd16(c->p + t->vt + voff);
    if (fo == 0) return 0;
    if (fo < 4 || fo + width > t->tsize) { BAD(c, "field outside its table"); }
    return t->pos + fo;
}

static uint32_t get_u32(ctx_t *c, const table_t *t, int idx, uint32_t dflt) {
    size_t at = field(c, t, idx, 4);
    return at ? rd32(c->p + at) : dflt;
}
static int32_t get_i32(ctx_t *c, const table_t *t, int idx, int32_t dflt) {
    return (int32_t)get_u32(c, t, idx, (uint32_t)dflt);
}
static uint32_t get_u8(ctx_t *c, const table_t *t, int idx, uint32_t dflt) {
    size_t at = field(c, t, idx, 1);
    return at ? c->p[at] : dflt;
}
static float get_f32(ctx_t *c, const table_t *t, int idx, float dflt) {
    size_t at = field(c, t, idx, 4);
    return at ? rdf32(c->p + at) : dflt;
}

/* Absolute position of the object an offset field refers to; 0 if absent. */
static size_t get_ref(ctx_t *c, const table_t *t, int idx) {
    size_t at = field(c, t, idx, 4);
    if (!at) return 0;
    uint32_t rel = rd32(c->p + at);
    if (rel == 0 || !in_range(c, at, (size_t)rel) || !in_range(c, at + rel, 4)) BAD(c, "offset outside the file");
    return at + rel;
}

/* Vector field: absent gives count 0. */
static int get_vec(ctx_t *c, const table_t *t, int idx, size_t elem, vec_t *v) {
    v->start = 0;
    v->count = 0;
    size_t at = get_ref(c, t, idx);
    if (c->failed) return 0;
    if (!at) return 1;
    v->count = rd32(c->p + at);
    v->start = at + 4;
    if (elem && (size_t)v->count > (c->n - v->start) / elem) BAD(c, "vector runs past the end");
    return 1;
}

static int vec_table(ctx_t *c, const vec_t *v, uint32_t i, table_t *t) {
    if (i >= v->count) BAD(c, "index past a vector");
    size_t at = v->start + 4 * (size_t)i;
    uint32_t rel = rd32(c->p + at);
    if (!in_range(c, at, (size_t)rel)) BAD(c, "offset outside the file");
    return table_at(c, at + rel, t);
}

/* -- arena -- */

/* Positions count from the arena pointer; `at` is aligned relative to base,
 * which is 16-byte aligned in memory. The head grows upwards with what the
 * model keeps; while the model is parsed, temporary tables (the tensor table,
 * the planner's order) take the arena's end down from tail_top. */
static void *arena_alloc(ctx_t *c, size_t bytes, size_t align) {
    size_t at = c->base + ((c->head - c->base + (align - 1)) & ~(align - 1));
    if (at > c->tail || bytes > c->tail - at) {
        FAIL(c, KWS_ERR_ARENA, "arena too small: %z bytes given, need more than %z", c->arena_size,
             at + bytes + (c->tail < c->tail_top ? c->tail_top - c->tail : 0));
    }
    c->head = at + bytes;
    return c->arena + at;
}

/* Temporary bytes (a multiple of 8) from the arena's end, 8-byte aligned;
 * released all at once by end_temporary. */
static void *temp_alloc(ctx_t *c, size_t bytes) {
    size_t head8 = c->base + ((c->head - c->base + 7) & ~(size_t)7);
    if (head8 > c->tail || bytes > c->tail - head8) {
        FAIL(c, KWS_ERR_ARENA, "arena too small: %z bytes given, need more than %z", c->arena_size,
             head8 + (c->tail_top - c->tail) + bytes);
    }
    c->tail -= bytes;
    return c->arena + c->tail;
}

/* The smallest arena the loading phase fits in (head and temporary tables
 * side by side), then the temporary tables go: what follows (activations,
 * scratch) may use their memory. */
static size_t end_temporary(ctx_t *c) {
    size_t need = c->base + ((c->head - c->base + 7) & ~(size_t)7) + (c->tail_top - c->tail);
    c->tail = c->arena_size;
    return need;
}

/* -- tensors -- */

static size_t type_size(int32_t type) {
    switch (type) {
        case KWS_TYPE_INT8: return 1;
        case KWS_TYPE_INT32: case KWS_TYPE_FLOAT32: return 4;
        case KWS_TYPE_INT64: return 8;
        default: return 0;
    }
}

static int parse_tensor(ctx_t *c, const vec_t *tensors, const vec_t *buffers, int32_t i) {
    kws_tensor *t = &c->tensors[i];
    table_t tt, qt, bt;
    vec_t shape, scale, zp, data;
    memset(t, 0, sizeof(*t));
    t->offset = -1;
    t->first = t->last = -1;
    if (!vec_table(c, tensors, (uint32_t)i, &tt) || !get_vec(c, &tt, 0, 4, &shape)) return 0;
    if (shape.count > KWS_MAX_DIMS) FAIL(c, KWS_ERR_UNSUPPORTED, "tensor %d has %u dims (at most 4)", i, shape.count);
    t->ndim = (int8_t)shape.count;
    int64_t elems = 1;
    for (int d = 0; d < KWS_MAX_DIMS; ++d) t->dims[d] = 1;
    for (uint32_t d = 0; d < shape.count; ++d) {
        int32_t v = (int32_t)rd32(c->p + shape.start + 4 * d);
        if (v < 1 || v > MAX_DIM) FAIL(c, KWS_ERR_UNSUPPORTED, "tensor %d has dimension %d", i, v);
        t->dims[KWS_MAX_DIMS - shape.count + d] = v;
        elems *= v;
        if (elems > MAX_ELEMS) FAIL(c, KWS_ERR_UNSUPPORTED, "tensor %d is too large", i);
    }
    t->elems = (int32_t)elems;
    t->type = (uint8_t)get_u8(c, &tt, 1, 0);
    uint32_t buffer = get_u32(c, &tt, 2, 0);
    if (c->failed) return 0;
    if (buffer >= buffers->count && buffer != 0) BAD(c, "tensor buffer index");
    if (buffer > 0) {
        if (!vec_table(c, buffers, buffer, &bt) || !get_vec(c, &bt, 0, 1, &data)) return 0;
        size_t off_at = field(c, &bt, 1, 8);
        if (c->failed) return 0;
        if (off_at && (rd32(c->p + off_at) > 1 || rd32(c->p + off_at + 4) != 0))
            FAIL(c, KWS_ERR_UNSUPPORTED, "tensor %d keeps its data outside the flatbuffer", i);
        if (data.count) {
            size_t isz = type_size(t->type);
            if (!isz) FAIL(c, KWS_ERR_UNSUPPORTED, "constant tensor %d has unsupported type %d", i, t->type);
            if ((size_t)data.count != (size_t)t->elems * isz) BAD(c, "constant data size does not match its shape");
            t->is_const = 1;
            t->data = c->p + data.start;
        }
    }
    size_t q = get_ref(c, &tt, 4);
    if (c->failed) return 0;
    if (q) {
        if (!table_at(c, q, &qt) || !get_vec(c, &qt, 2, 4, &scale) || !get_vec(c, &qt, 3, 8, &zp)) return 0;
        t->n_scales = (int32_t)scale.count;
        if (scale.count) {
            t->scales = c->p + scale.start;
            t->scale = rdf32(t->scales);
        }
        if (zp.count) {
            uint32_t lo = rd32(c->p + zp.start), hi = rd32(c->p + zp.start + 4);
            int64_t z = (int64_t)(((uint64_t)hi << 32) | lo);
            if (z < -32768 || z > 32767) FAIL(c, KWS_ERR_UNSUPPORTED, "tensor %d zero point out of range", i);
            t->zero_point = (int32_t)z;
        }
    }
    return 1;
}

/* -- quantisation helpers matching TFLite's prepare-time arithmetic -- */

static int activation_range(ctx_t *c, int32_t act, const kws_tensor *out, int8_t *lo, int8_t *hi, int32_t k) {
    int32_t qmin = -128, qmax = 127;
    const float s = out->scale;
    const int32_t z = out->zero_point;
    float lim[2] = {0.0f, 0.0f};
    int has_lo = 0, has_hi = 0;
    if (act == KWS_ACT_RELU) { has_lo = 1; }
    else if (act == KWS_ACT_RELU6) { has_lo = has_hi = 1; lim[1] = 6.0f; }
    else if (act == KWS_ACT_RELU_N1_TO_1) { has_lo = has_hi = 1; lim[0] = -1.0f; lim[1] = 1.0f; }
    else if (act != KWS_ACT_NONE) FAIL(c, KWS_ERR_UNSUPPORTED, "op %d: fused activation %d not supported", k, act);
    if (has_lo) {
        float q = roundf(lim[0] / s);
        if (!(q >= -2147483648.0f && q <= 2147483520.0f)) FAIL(c, KWS_ERR_UNSUPPORTED, "op %d: activation range", k);
        int32_t v = z + (int32_t)q;
        if (v > qmin) qmin = v;
    }
    if (has_hi) {
        float q = roundf(lim[1] / s);
        if (!(q >= -2147483648.0f && q <= 2147483520.0f)) FAIL(c, KWS_ERR_UNSUPPORTED, "op %d: activation range", k);
        int32_t v = z + (int32_t)q;
        if (v < qmax) qmax = v;
    }
    /* both within [-128, 127]: z is, and each limit only narrows that range */
    *lo = (int8_t)qmin;
    *hi = (int8_t)qmax;
    return 1;
}

static int good_scale(float s) { return s > 0.0f && s < 3.0e38f; }

/* Output padding as TFLite computes it (ComputePaddingHeightWidth). */
static int32_t out_size(int32_t padding, int32_t in, int32_t k, int32_t stride, int32_t dil) {
    int64_t eff64 = (int64_t)(k - 1) * dil + 1;
    if (eff64 > MAX_DIM) return -1; /* caller rejects: no sane kernel spans that far */
    int32_t eff = (int32_t)eff64;
    if (padding == KWS_PAD_SAME) return (in + stride - 1) / stride;
    return in < eff ? 0 : (in - eff + stride) / stride;
}
static int32_t pad_size(int32_t in, int32_t k, int32_t stride, int32_t dil, int32_t out) {
    int32_t eff = (k - 1) * dil + 1;
    int32_t total = (out - 1) * stride + eff - in;
    return total > 0 ? total / 2 : 0;
}

static int check_act(ctx_t *c, int32_t j, int k, const char *what) {
    if (j < 0) FAIL(c, KWS_ERR_FORMAT, "op %d: missing %s", k, what);
    const kws_tensor *t = &c->tensors[j];
    if (t->type != KWS_TYPE_INT8) FAIL(c, KWS_ERR_UNSUPPORTED, "op %d: %s is not int8", k, what);
    if (t->is_const) FAIL(c, KWS_ERR_UNSUPPORTED, "op %d: constant %s", k, what);
    if (!good_scale(t->scale) || t->zero_point < -128 || t->zero_point > 127)
        FAIL(c, KWS_ERR_UNSUPPORTED, "op %d: %s lacks int8 quantisation", k, what);
    return 1;
}

/* Per-channel multipliers (int32) and shifts (int8) into the arena. A
 * per-tensor scale is broadcast to every channel, as TFLite does, except for
 * FULLY_CONNECTED, which keeps one (op->per_channel says which). */
static int per_channel(ctx_t *c, kws_op *op, const kws_tensor *in, const kws_tensor *w, const kws_tensor *out,
                       int32_t channels, int float_product, int k) {
    if (w->n_scales != 1 && w->n_scales != channels)
        FAIL(c, KWS_ERR_UNSUPPORTED, "op %d: %d weight scales for %d channels", k, w->n_scales, channels);
    const int32_t n = (w->n_scales == 1 && channels > 1 && !float_product) ? channels : w->n_scales;
    int32_t *mult = (int32_t *)arena_alloc(c, 4 * (size_t)n, 4);
    int8_t *shift = (int8_t *)arena_alloc(c, (size_t)n, 1);
    if (c->failed) return 0;
    for (int32_t i = 0; i < w->n_scales; ++i) {
        float ws = rdf32(w->scales + 4 * (size_t)i);
        if (!(ws >= 0.0f && ws < 3.0e38f)) FAIL(c, KWS_ERR_UNSUPPORTED, "op %d: bad weight scale", k);
        double eff;
        if (float_product) {
            /* per-tensor FULLY_CONNECTED multiplies the scales in float first */
            volatile float prod = in->scale * ws;
            eff = (double)prod / (double)out->scale;
        } else {
            eff = (double)in->scale * (double)ws / (double)out->scale;
        }
        int sh;
        kws_quantize_multiplier(eff, &mult[i], &sh);
        if (sh > 30) FAIL(c, KWS_ERR_UNSUPPORTED, "op %d: output multiplier too large", k);
        shift[i] = (int8_t)sh; /* QuantizeMultiplier gives a shift >= -31 */
    }
    for (int32_t i = w->n_scales; i < n; ++i) { mult[i] = mult[0]; shift[i] = shift[0]; }
    op->u.conv.per_channel = n > 1;
    op->u.conv.mult = mult;
    op->u.conv.shift = shift;
    return 1;
}

/* The kernels read the bias where it is in the model bytes. */
static int find_bias(ctx_t *c, kws_op *op, int32_t j, int32_t channels, int k) {
    op->u.conv.bias = NULL;
    if (j < 0) return 1;
    const kws_tensor *b = &c->tensors[j];
    if (!b->is_const || b->type != KWS_TYPE_INT32 || b->elems != channels)
        FAIL(c, KWS_ERR_UNSUPPORTED, "op %d: bias must be a constant int32 vector of %d", k, channels);
    op->u.conv.bias = b->data;
    return 1;
}

static int weights_ok(ctx_t *c, int32_t j, int k) {
    if (j < 0) FAIL(c, KWS_ERR_FORMAT, "op %d: missing weights", k);
    const kws_tensor *w = &c->tensors[j];
    if (!w->is_const || w->type != KWS_TYPE_INT8) FAIL(c, KWS_ERR_UNSUPPORTED, "op %d: weights must be constant int8", k);
    if (w->n_scales < 1) FAIL(c, KWS_ERR_UNSUPPORTED, "op %d: weights lack quantisation", k);
    return 1;
}

static int geom_ok(int32_t v) { return v >= 0 && v <= KWS_MAX_GEOM; }

/* Window geometry of CONV_2D, DEPTHWISE_CONV_2D and the pools; kernel size,
 * strides and dilations as read from the model. */
static int geometry(ctx_t *c, kws_op *op, const kws_tensor *in, const kws_tensor *out, int32_t padding, int32_t k_h,
                    int32_t k_w, int32_t stride_h, int32_t stride_w, int32_t dil_h, int32_t dil_w, int k) {
    kws_conv_params *g = &op->u.conv;
    if (in->dims[0] != 1 || out->dims[0] != 1) FAIL(c, KWS_ERR_UNSUPPORTED, "op %d: batch size must be 1", k);
    if (padding != KWS_PAD_SAME && padding != KWS_PAD_VALID) FAIL(c, KWS_ERR_UNSUPPORTED, "op %d: padding %d", k, padding);
    if (stride_h < 1 || stride_w < 1 || stride_h > MAX_DIM || stride_w > MAX_DIM ||
        dil_h < 1 || dil_w < 1 || dil_h > MAX_DIM || dil_w > MAX_DIM)
        FAIL(c, KWS_ERR_UNSUPPORTED, "op %d: bad stride or dilation", k);
    const int32_t in_h = in->dims[1], in_w = in->dims[2];
    int32_t oh = out_size(padding, in_h, k_h, stride_h, dil_h);
    int32_t ow = out_size(padding, in_w, k_w, stride_w, dil_w);
    if (oh < 0 || ow < 0) FAIL(c, KWS_ERR_UNSUPPORTED, "op %d: kernel span too large", k);
    if (oh != out->dims[1] || ow != out->dims[2]) FAIL(c, KWS_ERR_UNSUPPORTED, "op %d: output shape does not match the op", k);
    const int32_t pad_h = padding == KWS_PAD_SAME ? pad_size(in_h, k_h, stride_h, dil_h, oh) : 0;
    const int32_t pad_w = padding == KWS_PAD_SAME ? pad_size(in_w, k_w, stride_w, dil_w, ow) : 0;
    const int32_t v[15] = {in_h, in_w, in->dims[3], oh, ow, out->dims[3], k_h, k_w,
                           stride_h, stride_w, dil_h, dil_w, pad_h, pad_w, 1};
    for (int i = 0; i < 15; ++i)
        if (!geom_ok(v[i])) FAIL(c, KWS_ERR_UNSUPPORTED, "op %d: a size, stride, dilation or padding over %d", k, KWS_MAX_GEOM);
    g->in_h = (int16_t)in_h; g->in_w = (int16_t)in_w; g->in_c = (int16_t)in->dims[3];
    g->out_h = (int16_t)oh; g->out_w = (int16_t)ow; g->out_c = (int16_t)out->dims[3];
    g->k_h = (int16_t)k_h; g->k_w = (int16_t)k_w;
    g->stride_h = (int16_t)stride_h; g->stride_w = (int16_t)stride_w;
    g->dil_h = (int16_t)dil_h; g->dil_w = (int16_t)dil_w;
    g->pad_h = (int16_t)pad_h; g->pad_w = (int16_t)pad_w;
    return 1;
}

static int options_of(ctx_t *c, const table_t *ot, int expected_type, table_t *opt, int *has, int k) {
    *has = 0;
    uint32_t type = get_u8(c, ot, 3, 0);
    size_t at = get_ref(c, ot, 4);
    if (c->failed) return 0;
    if (!at) return 1;
    if ((int)type != expected_type) FAIL(c, KWS_ERR_FORMAT, "op %d: options of the wrong type", k);
    if (!table_at(c, at, opt)) return 0;
    *has = 1;
    return 1;
}

static size_t max_sz(size_t a, size_t b) { return a > b ? a : b; }

/* Parses op k into m->ops[k]. idx gets the tensor indices of its inputs
 * (-1 absent or not read) and output; op->in, in2 and out hold tensor indices
 * until the activations are planned, then byte offsets. */
static int parse_op(ctx_t *c, kws_model *m, const vec_t *ops, const vec_t *codes, int32_t k, size_t *scratch,
                    int32_t idx[4]) {
    kws_op *op = &m->ops[k];
    kws_conv_params *g = &op->u.conv;
    table_t ot, ct, opt;
    vec_t ins, outs;
    int has_opt;
    memset(op, 0, sizeof(*op));
    idx[0] = idx[1] = idx[2] = idx[3] = -1;
    if (!vec_table(c, ops, (uint32_t)k, &ot)) return 0;
    uint32_t code_index = get_u32(c, &ot, 0, 0);
    if (c->failed) return 0;
    if (code_index >= codes->count) BAD(c, "operator code index");
    if (!vec_table(c, codes, code_index, &ct)) return 0;
    int32_t dep = (int8_t)get_u8(c, &ct, 0, 0);
    int32_t builtin = get_i32(c, &ct, 3, 0);
    const int32_t code = dep > builtin ? dep : builtin;
    if (!get_vec(c, &ot, 1, 4, &ins) || !get_vec(c, &ot, 2, 4, &outs)) return 0;
    if (ins.count > 3 || outs.count != 1) FAIL(c, KWS_ERR_UNSUPPORTED, "op %d: %u inputs, %u outputs", k, ins.count, outs.count);
    for (uint32_t j = 0; j < ins.count + 1; ++j) {
        int32_t v = (int32_t)rd32(c->p + (j < ins.count ? ins.start + 4 * j : outs.start));
        if (v < -1 || v >= c->n_tensors) BAD(c, "tensor index");
        idx[j < ins.count ? j : 3] = v;
    }
    if (!check_act(c, idx[3], k, "output")) return 0;
    const kws_tensor *out = &c->tensors[idx[3]];
    op->out_offset = (int8_t)out->zero_point;
    op->in = idx[0];
    op->in2 = -1;
    op->out = idx[3];
    int32_t act = 0;
    const kws_tensor *in = NULL;
    switch (code) {
    case KWS_OP_CONV_2D:
    case KWS_OP_DEPTHWISE_CONV_2D: {
        int dw = code == KWS_OP_DEPTHWISE_CONV_2D;
        if (!check_act(c, idx[0], k, "input") || !weights_ok(c, idx[1], k)) return 0;
        in = &c->tensors[idx[0]];
        const kws_tensor *w = &c->tensors[idx[1]];
        if (!options_of(c, &ot, dw ? OPT_DW : OPT_CONV, &opt, &has_opt, k)) return 0;
        int32_t padding = has_opt ? (int32_t)get_u8(c, &opt, 0, 0) : 0;
        int32_t stride_w = has_opt ? get_i32(c, &opt, 1, 0) : 0;
        int32_t stride_h = has_opt ? get_i32(c, &opt, 2, 0) : 0;
        act = has_opt ? (int32_t)get_u8(c, &opt, dw ? 4 : 3, 0) : 0;
        int32_t dil_w = has_opt ? get_i32(c, &opt, dw ? 5 : 4, 1) : 1;
        int32_t dil_h = has_opt ? get_i32(c, &opt, dw ? 6 : 5, 1) : 1;
        if (c->failed) return 0;
        if (w->ndim != 4) FAIL(c, KWS_ERR_UNSUPPORTED, "op %d: weights must be 4-D", k);
        if (!geometry(c, op, in, out, padding, w->dims[1], w->dims[2], stride_h, stride_w, dil_h, dil_w, k)) return 0;
        if (dw) {
            if (w->dims[0] != 1 || w->dims[3] != g->out_c || g->out_c % g->in_c)
                FAIL(c, KWS_ERR_UNSUPPORTED, "op %d: depthwise weights do not match the tensors", k);
            g->depth_mult = (int16_t)(g->out_c / g->in_c);
            *scratch = max_sz(*scratch, kws_depthwise_scratch_bytes(g->k_h * g->k_w, g->in_c, g->out_c));
        } else {
            if (w->dims[0] != g->out_c || w->dims[3] != g->in_c)
                FAIL(c, KWS_ERR_UNSUPPORTED, "op %d: conv weights do not match the tensors (grouped conv?)", k);
            g->k_len = g->k_h * g->k_w * g->in_c;
            *scratch = max_sz(*scratch, kws_conv_scratch_bytes(g->k_len));
        }
        g->weights = (const int8_t *)w->data;
        if (!per_channel(c, op, in, w, out, g->out_c, 0, k) || !find_bias(c, op, idx[2], g->out_c, k)) return 0;
        break;
    }
    case KWS_OP_FULLY_CONNECTED: {
        if (!check_act(c, idx[0], k, "input") || !weights_ok(c, idx[1], k)) return 0;
        in = &c->tensors[idx[0]];
        const kws_tensor *w = &c->tensors[idx[1]];
        if (!options_of(c, &ot, OPT_FC, &opt, &has_opt, k)) return 0;
        act = has_opt ? (int32_t)get_u8(c, &opt, 0, 0) : 0;
        uint32_t format = has_opt ? get_u8(c, &opt, 1, 0) : 0;
        if (c->failed) return 0;
        if (format != 0) FAIL(c, KWS_ERR_UNSUPPORTED, "op %d: shuffled weights", k);
        if (w->ndim != 2) FAIL(c, KWS_ERR_UNSUPPORTED, "op %d: weights must be 2-D", k);
        if (w->zero_point != 0) FAIL(c, KWS_ERR_UNSUPPORTED, "op %d: weights with a zero point", k);
        if (!geom_ok(w->dims[2])) FAIL(c, KWS_ERR_UNSUPPORTED, "op %d: more than %d outputs", k, KWS_MAX_GEOM);
        g->out_c = (int16_t)w->dims[2];
        g->k_len = w->dims[3];
        if (in->elems % g->k_len) FAIL(c, KWS_ERR_UNSUPPORTED, "op %d: input does not match the weights", k);
        g->batches = in->elems / g->k_len;
        if (out->elems != g->batches * g->out_c) FAIL(c, KWS_ERR_UNSUPPORTED, "op %d: output shape", k);
        *scratch = max_sz(*scratch, kws_conv_patch_bytes(g->k_len));
        g->weights = (const int8_t *)w->data;
        if (!per_channel(c, op, in, w, out, g->out_c, w->n_scales == 1, k) || !find_bias(c, op, idx[2], g->out_c, k)) return 0;
#ifdef KWS_FC_LITERT_REFERENCE
        if (w->n_scales > 1) {
            /* ai-edge-litert's reference kernel rescales per-channel FC in
             * double; TFLite Micro (the default here) uses the fixed-point
             * multipliers computed above. */
            double *fc_scale = (double *)arena_alloc(c, sizeof(double) * (size_t)g->out_c, 8);
            if (c->failed) return 0;
            for (int32_t i = 0; i < g->out_c; ++i)
                fc_scale[i] = (double)in->scale * (double)rdf32(w->scales + 4 * (size_t)i) / (double)out->scale;
            g->fc_scale = fc_scale;
        }
#endif
        break;
    }
    case KWS_OP_AVERAGE_POOL_2D:
    case KWS_OP_MAX_POOL_2D: {
        if (!check_act(c, idx[0], k, "input")) return 0;
        in = &c->tensors[idx[0]];
        if (!options_of(c, &ot, OPT_POOL, &opt, &has_opt, k)) return 0;
        if (!has_opt) FAIL(c, KWS_ERR_FORMAT, "op %d: pooling without options", k);
        int32_t padding = (int32_t)get_u8(c, &opt, 0, 0);
        int32_t stride_w = get_i32(c, &opt, 1, 0);
        int32_t stride_h = get_i32(c, &opt, 2, 0);
        int32_t k_w = get_i32(c, &opt, 3, 0);
        int32_t k_h = get_i32(c, &opt, 4, 0);
        act = (int32_t)get_u8(c, &opt, 5, 0);
        if (c->failed) return 0;
        if (k_w < 1 || k_h < 1 || k_w > MAX_DIM || k_h > MAX_DIM) FAIL(c, KWS_ERR_UNSUPPORTED, "op %d: pool size", k);
        if (!geometry(c, op, in, out, padding, k_h, k_w, stride_h, stride_w, 1, 1, k)) return 0;
        if (g->in_c != g->out_c) FAIL(c, KWS_ERR_UNSUPPORTED, "op %d: pooling changes the channel count", k);
        if (in->scale != out->scale || in->zero_point != out->zero_point)
            FAIL(c, KWS_ERR_UNSUPPORTED, "op %d: pooling with requantisation", k);
        break;
    }
    case KWS_OP_RESHAPE:
        if (!check_act(c, idx[0], k, "input")) return 0;
        in = &c->tensors[idx[0]];
        if (in->elems != out->elems) FAIL(c, KWS_ERR_UNSUPPORTED, "op %d: reshape changes the size", k);
        idx[1] = -1; /* the shape tensor is not needed: the output's shape is static */
        op->u.n = out->elems;
        break;
    case KWS_OP_SOFTMAX: {
        if (!check_act(c, idx[0], k, "input")) return 0;
        in = &c->tensors[idx[0]];
        if (!options_of(c, &ot, OPT_SOFTMAX, &opt, &has_opt, k)) return 0;
        float beta = has_opt ? get_f32(c, &opt, 0, 0.0f) : 0.0f;
        if (c->failed) return 0;
        if (in->elems != out->elems || in->dims[3] != out->dims[3]) FAIL(c, KWS_ERR_UNSUPPORTED, "op %d: softmax shapes", k);
        if (out->zero_point != -128 || fabsf(out->scale - 1.0f / 256) > 0.001f / 256)
            FAIL(c, KWS_ERR_UNSUPPORTED, "op %d: softmax output must be scale 1/256, zero point -128", k);
        double real = (double)beta * (double)in->scale * (double)(1 << 26);
        if (real > (double)INT32_MAX) real = (double)INT32_MAX;
        if (!(real > (double)1)) FAIL(c, KWS_ERR_UNSUPPORTED, "op %d: SOFTMAX input range too small for int8", k);
        kws_softmax_params *sp = &op->u.softmax;
        int sh;
        kws_quantize_multiplier(real, &sp->mult, &sh);
        if (sh < 0 || sh > 30) FAIL(c, KWS_ERR_UNSUPPORTED, "op %d: SOFTMAX scaling", k);
        sp->shift = sh;
        /* floor(31 * 2^26 / 2^sh) for sh in [0, 30]: an exact shift (no double floor) */
        sp->diff_min = -(int32_t)((UINT32_C(31) << 26) >> sh);
        sp->depth = in->dims[3];
        sp->rows = in->elems / sp->depth;
        break;
    }
    case KWS_OP_ADD: {
        if (!check_act(c, idx[0], k, "input") || !check_act(c, idx[1], k, "second input")) return 0;
        in = &c->tensors[idx[0]];
        const kws_tensor *in2 = &c->tensors[idx[1]];
        kws_add_params *ap = &op->u.add;
        if (!options_of(c, &ot, OPT_ADD, &opt, &has_opt, k)) return 0;
        act = has_opt ? (int32_t)get_u8(c, &opt, 0, 0) : 0;
        if (c->failed) return 0;
        for (int d = 0; d < 4; ++d)
            if (in->dims[d] != in2->dims[d] || in->dims[d] != out->dims[d])
                FAIL(c, KWS_ERR_UNSUPPORTED, "op %d: ADD with broadcasting", k);
        float mx = in->scale > in2->scale ? in->scale : in2->scale;
        volatile float twice = 2 * mx;
        volatile float denom = (float)(1 << 20) * out->scale;
        double twice_max = (double)twice;
        double r1 = (double)in->scale / twice_max, r2 = (double)in2->scale / twice_max;
        double ro = twice_max / (double)denom;
        int s1, s2, so;
        if (!(ro < (double)1 && ro > (double)0)) FAIL(c, KWS_ERR_UNSUPPORTED, "op %d: ADD output scale too small", k);
        kws_quantize_multiplier(r1, &ap->in1_mult, &s1);
        kws_quantize_multiplier(r2, &ap->in2_mult, &s2);
        kws_quantize_multiplier(ro, &ap->out_mult, &so);
        if (s1 > 0 || s2 > 0 || so > 0) FAIL(c, KWS_ERR_UNSUPPORTED, "op %d: ADD scaling", k);
        ap->in1_shift = s1; ap->in2_shift = s2; ap->out_shift = so;
        ap->in2_offset = -in2->zero_point;
        ap->n = out->elems;
        op->in2 = idx[1];
        break;
    }
    case KWS_OP_MEAN: {
        if (!check_act(c, idx[0], k, "input")) return 0;
        in = &c->tensors[idx[0]];
        if (idx[1] < 0) FAIL(c, KWS_ERR_FORMAT, "op %d: MEAN without axes", k);
        const kws_tensor *ax = &c->tensors[idx[1]];
        kws_mean_params *mp = &op->u.mean;
        if (!ax->is_const || ax->type != KWS_TYPE_INT32 || ax->elems > 4) FAIL(c, KWS_ERR_UNSUPPORTED, "op %d: MEAN axes must be constant int32", k);
        int32_t nd = in->ndim;
        for (int32_t i = 0; i < ax->elems; ++i) {
            int32_t a = (int32_t)rd32(ax->data + 4 * (size_t)i);
            if (a < 0) a += nd;
            if (a < 0 || a >= nd) FAIL(c, KWS_ERR_UNSUPPORTED, "op %d: MEAN axis out of range", k);
            mp->axis_mask |= 1 << (a + KWS_MAX_DIMS - nd);
        }
        int64_t count = 1;
        for (int d = 0; d < 4; ++d) if ((mp->axis_mask >> d) & 1) count *= in->dims[d];
        mp->reduce_count = (int32_t)count;
        if ((int64_t)out->elems * count != in->elems) FAIL(c, KWS_ERR_UNSUPPORTED, "op %d: MEAN output shape", k);
        int32_t mult; int sh;
        kws_quantize_multiplier((double)in->scale / (double)out->scale, &mult, &sh);
        int n_shift = 63;
        while (n_shift > 0 && !(((uint64_t)count >> n_shift) & 1)) --n_shift;
        if (n_shift > 32) n_shift = 32;
        if (n_shift > 31 + sh) n_shift = 31 + sh;
        if (sh > 30 || n_shift < 0) FAIL(c, KWS_ERR_UNSUPPORTED, "op %d: MEAN scaling", k);
        mp->mult = (int32_t)(((int64_t)mult << n_shift) / count);
        mp->shift = sh - n_shift;
        for (int d = 0; d < 4; ++d) mp->dims[d] = in->dims[d];
        mp->n_out = out->elems;
        idx[1] = -1;
        *scratch = max_sz(*scratch, 4 * (size_t)out->elems);
        break;
    }
    default:
        FAIL(c, KWS_ERR_UNSUPPORTED, "op %d: builtin operator %d is not supported", k, code);
    }
    op->code = (uint8_t)code;
    if (!activation_range(c, act, out, &op->act_min, &op->act_max, k)) return 0;
    op->in_offset = -in->zero_point;
    return 1;
}

/* -- liveness-based activation planning (greedy, largest first) -- */

static int32_t align_up(int32_t n) { return (n + KWS_ACT_ALIGN - 1) & ~(KWS_ACT_ALIGN - 1); }

/* Ops whose output may overwrite an input that dies there (which = 0: the
 * first input, 1: ADD's second): every output element is computed from
 * input values read before it is written, and nothing is read later.
 * RESHAPE (a copy); ADD (element-wise); CONV_2D 1x1 with stride 1 and no more
 * output than input channels: it reads both pixels of a pair into its patch
 * before writing their outputs, and out_c <= in_c keeps those writes below the
 * next pixels' inputs. */
static int in_place(const kws_op *op, int which) {
    const kws_conv_params *g = &op->u.conv;
    if (op->code == KWS_OP_ADD) return 1;
    if (which) return 0;
    if (op->code == KWS_OP_RESHAPE) return 1;
    return op->code == KWS_OP_CONV_2D && g->k_h == 1 && g->k_w == 1 && g->stride_h == 1 && g->stride_w == 1 &&
           g->out_c <= g->in_c;
}

/* The ops still hold tensor indices. An in-place op's output joins the
 * buffer of its first eligible input whose buffer dies at that op (and does
 * not hold the graph output); a buffer lives from its first tensor's first
 * use to its last tensor's last use and is as large as its largest tensor.
 * Buffers are then placed greedily, largest first. */
static int plan(ctx_t *c, const kws_model *m, int32_t g_output, size_t *high_out) {
    kws_tensor *tensors = c->tensors;
    for (int32_t j = 0; j < c->n_tensors; ++j) { tensors[j].owner = j; tensors[j].span = tensors[j].elems; }
    for (int32_t k = 0; k < m->n_ops; ++k) {
        const kws_op *op = &m->ops[k];
        for (int which = 0; which < 2; ++which) {
            const int32_t j = which ? op->in2 : op->in;
            if (j < 0 || !in_place(op, which)) continue;
            kws_tensor *own = &tensors[tensors[j].owner], *o = &tensors[op->out];
            if (own->last != k || tensors[j].owner == tensors[g_output].owner) continue;
            o->owner = tensors[j].owner;
            if (o->last > own->last) own->last = o->last;
            if (o->elems > own->span) own->span = o->elems;
            break;
        }
    }
    int32_t n_live = 0;
    for (int32_t j = 0; j < c->n_tensors; ++j) if (tensors[j].used && tensors[j].owner == j) ++n_live;
    /* temporary order array, below the tensor table */
    int32_t *order = (int32_t *)temp_alloc(c, (4 * (size_t)n_live + 7) & ~(size_t)7);
    if (!order) return 0;
    int32_t n = 0;
    for (int32_t j = 0; j < c->n_tensors; ++j) if (tensors[j].used && tensors[j].owner == j) order[n++] = j;
    for (int32_t a = 1; a < n; ++a) { /* insertion sort: size desc, then first use, then index */
        int32_t v = order[a], b = a - 1;
        const kws_tensor *tv = &tensors[v];
        while (b >= 0) {
            const kws_tensor *tb = &tensors[order[b]];
            int before = tv->span > tb->span || (tv->span == tb->span && (tv->first < tb->first || (tv->first == tb->first && v < order[b])));
            if (!before) break;
            order[b + 1] = order[b];
            --b;
        }
        order[b + 1] = v;
    }
    int32_t high = 0;
    for (int32_t a = 0; a < n; ++a) {
        kws_tensor *t = &tensors[order[a]];
        int32_t size = align_up(t->span), offset = 0;
        for (int moved = 1; moved;) {
            moved = 0;
            for (int32_t b = 0; b < a; ++b) {
                const kws_tensor *p = &tensors[order[b]];
                if (p->last < t->first || p->first > t->last) continue;
                int32_t psize = align_up(p->span);
                if (offset < p->offset + psize && p->offset < offset + size) { offset = p->offset + psize; moved = 1; }
            }
        }
        t->offset = offset;
        if (offset + size > high) high = offset + size;
    }
    for (int32_t j = 0; j < c->n_tensors; ++j) if (tensors[j].used) tensors[j].offset = tensors[tensors[j].owner].offset;
    *high_out = (size_t)high;
    return 1;
}

static void touch(kws_tensor *t, int32_t step) {
    if (!t->used) { t->used = 1; t->first = step; t->last = step; }
    if (step < t->first) t->first = step;
    if (step > t->last) t->last = step;
}

int kws_model_load(kws_model **out, const void *model, size_t len, void *arena, size_t arena_size, kws_error *err) {
    ctx_t cx, *c = &cx;
    kws_error scratch_err;
    if (!err) err = &scratch_err;
    err->code = KWS_OK;
    err->message[0] = 0;
    if (!out || !model || !arena) { set_error(err, KWS_ERR_ARG, "null argument"); return KWS_ERR_ARG; }
    *out = NULL;
    memset(c, 0, sizeof(*c));
    c->p = (const uint8_t *)model;
    c->n = len;
    c->err = err;
    c->arena = (uint8_t *)arena;
    c->arena_size = arena_size;
    /* align the arena start to 16 bytes */
    c->base = (size_t)((16 - ((uintptr_t)arena & 15)) & 15);
    if (c->base > arena_size) c->base = arena_size;
    c->head = c->base;
    c->tail_top = c->base + ((arena_size - c->base) & ~(size_t)7);
    c->tail = c->tail_top;

    table_t mt, sg;
    vec_t codes, subgraphs, buffers, tensors, g_in, g_out, ops;
    if (len < 16 || memcmp(c->p + 4, "TFL3", 4) != 0) {
        set_error(err, KWS_ERR_FORMAT, "not a TFLite model (no TFL3 identifier)");
        return err->code;
    }
    if (!table_at(c, rd32(c->p), &mt) || !get_vec(c, &mt, 1, 4, &codes) || !get_vec(c, &mt, 2, 4, &subgraphs) ||
        !get_vec(c, &mt, 4, 4, &buffers))
        return err->code;
    if (subgraphs.count < 1) { set_error(err, KWS_ERR_FORMAT, "TFLite model has no subgraph"); return err->code; }
    if (!vec_table(c, &subgraphs, 0, &sg) || !get_vec(c, &sg, 0, 4, &tensors) || !get_vec(c, &sg, 1, 4, &g_in) ||
        !get_vec(c, &sg, 2, 4, &g_out) || !get_vec(c, &sg, 3, 4, &ops))
        return err->code;
    if (g_in.count != 1 || g_out.count != 1) {
        set_error(err, KWS_ERR_UNSUPPORTED, "expected one input and one output, the model has %u and %u", g_in.count, g_out.count);
        return err->code;
    }
    if (tensors.count > MAX_TENSORS || ops.count > MAX_OPS) { set_error(err, KWS_ERR_UNSUPPORTED, "model too large"); return err->code; }
    if (ops.count == 0) { set_error(err, KWS_ERR_UNSUPPORTED, "model has no operators"); return err->code; }

    kws_model *m = (kws_model *)arena_alloc(c, sizeof(kws_model), 16);
    if (!m) return err->code;
    memset(m, 0, sizeof(*m));
    m->n_ops = (int32_t)ops.count;
    m->ops = (kws_op *)arena_alloc(c, sizeof(kws_op) * (size_t)m->n_ops, 8);
    if (c->failed) return err->code;
    /* the tensor table: temporary, at the arena's end */
    c->n_tensors = (int32_t)tensors.count;
    c->tensors = (kws_tensor *)temp_alloc(c, (sizeof(kws_tensor) * (size_t)c->n_tensors + 7) & ~(size_t)7);
    if (c->failed) return err->code;
    for (int32_t i = 0; i < c->n_tensors; ++i)
        if (!parse_tensor(c, &tensors, &buffers, i)) return err->code;

    const int32_t g_input = (int32_t)rd32(c->p + g_in.start);
    const int32_t g_output = (int32_t)rd32(c->p + g_out.start);
    if (g_input < 0 || g_input >= c->n_tensors || g_output < 0 || g_output >= c->n_tensors) {
        set_error(err, KWS_ERR_FORMAT, "damaged TFLite model (graph input/output index)");
        return err->code;
    }
    for (int32_t which = 0; which < 2; ++which) {
        const kws_tensor *t = &c->tensors[which ? g_output : g_input];
        if (t->type != KWS_TYPE_INT8 || t->is_const || !good_scale(t->scale)) {
            set_error(err, KWS_ERR_UNSUPPORTED, "the model's %s is not an int8 quantised tensor", which ? "output" : "input");
            return err->code;
        }
    }

    size_t scratch_bytes = 0;
    touch(&c->tensors[g_input], 0);
    for (int32_t k = 0; k < m->n_ops; ++k) {
        int32_t idx[4];
        if (!parse_op(c, m, &ops, &codes, k, &scratch_bytes, idx)) return err->code;
        const kws_op *op = &m->ops[k];
        const kws_conv_params *g = &op->u.conv;
        if (op->code == KWS_OP_CONV_2D) m->macs += (uint64_t)g->out_h * g->out_w * g->out_c * g->k_len;
        else if (op->code == KWS_OP_DEPTHWISE_CONV_2D) m->macs += (uint64_t)g->out_h * g->out_w * g->out_c * g->k_h * g->k_w;
        else if (op->code == KWS_OP_FULLY_CONNECTED) m->macs += (uint64_t)g->batches * g->out_c * g->k_len;
        for (int j = 0; j < 3; ++j) {
            if (idx[j] < 0) continue;
            kws_tensor *t = &c->tensors[idx[j]];
            if (t->is_const) continue;
            if (!t->used) {
                set_error(err, KWS_ERR_FORMAT, "op %d reads tensor %d before anything writes it", k, idx[j]);
                return err->code;
            }
            touch(t, k);
        }
        kws_tensor *o = &c->tensors[idx[3]];
        if (o->used || idx[3] == g_input) {
            set_error(err, KWS_ERR_UNSUPPORTED, "op %d writes tensor %d a second time", k, idx[3]);
            return err->code;
        }
        touch(o, k);
    }
    if (!c->tensors[g_output].used || g_output == g_input) {
        set_error(err, KWS_ERR_FORMAT, "no operator produces the model output");
        return err->code;
    }
    touch(&c->tensors[g_output], m->n_ops - 1);

    size_t act_bytes = 0;
    if (!plan(c, m, g_output, &act_bytes)) return err->code;
    /* what the run needs from the tensor table, before it goes */
    for (int32_t k = 0; k < m->n_ops; ++k) {
        kws_op *op = &m->ops[k];
        op->in = c->tensors[op->in].offset;
        op->out = c->tensors[op->out].offset;
        if (op->in2 >= 0) op->in2 = c->tensors[op->in2].offset;
    }
    const kws_tensor *ti = &c->tensors[g_input], *to = &c->tensors[g_output];
    m->input = ti->offset;
    m->output = to->offset;
    m->input_size = ti->elems;
    m->output_size = to->elems;
    m->input_scale = ti->scale;
    m->output_scale = to->scale;
    m->input_zero_point = ti->zero_point;
    m->output_zero_point = to->zero_point;
    for (int d = 0; d < KWS_MAX_DIMS; ++d) m->input_dims[d] = ti->dims[d];
    c->tensors = NULL;
    const size_t load_need = end_temporary(c);

    m->activations = (uint8_t *)arena_alloc(c, act_bytes, KWS_ACT_ALIGN);
    m->activation_bytes = act_bytes;
    m->scratch = scratch_bytes ? arena_alloc(c, scratch_bytes, 8) : NULL;
    m->scratch_bytes = scratch_bytes;
    if (c->failed) return err->code;
    m->arena_used = c->head > load_need ? c->head : load_need;
    *out = m;
    return KWS_OK;
}

/* -- running -- */

static inline int8_t *act(kws_model *m, int32_t offset) { return (int8_t *)m->activations + offset; }

/* Output elements of an op. */
static int32_t out_elems(const kws_op *op) {
    const kws_conv_params *g = &op->u.conv;
    switch (op->code) {
    case KWS_OP_FULLY_CONNECTED: return g->batches * g->out_c;
    case KWS_OP_RESHAPE: return op->u.n;
    case KWS_OP_SOFTMAX: return op->u.softmax.rows * op->u.softmax.depth;
    case KWS_OP_ADD: return op->u.add.n;
    case KWS_OP_MEAN: return op->u.mean.n_out;
    default: return g->out_h * g->out_w * g->out_c;
    }
}

int kws_model_run_ops(kws_model *m, const int8_t *input, int32_t n_ops) {
    if (!m || !input || n_ops < 0 || n_ops > m->n_ops) return KWS_ERR_ARG;
    memcpy(act(m, m->input), input, (size_t)m->input_size);
    for (int32_t k = 0; k < n_ops; ++k) {
        const kws_op *op = &m->ops[k];
        int8_t *o = act(m, op->out);
        const int8_t *x = act(m, op->in);
        switch (op->code) {
        case KWS_OP_CONV_2D: kws_conv2d(op, x, op->u.conv.weights, o, (int16_t *)m->scratch); break;
        case KWS_OP_DEPTHWISE_CONV_2D: kws_depthwise(op, x, o, m->scratch); break;
        case KWS_OP_FULLY_CONNECTED: kws_fully_connected(op, x, o, (int16_t *)m->scratch); break;
        case KWS_OP_AVERAGE_POOL_2D: kws_avg_pool(op, x, o); break;
        case KWS_OP_MAX_POOL_2D: kws_max_pool(op, x, o); break;
        case KWS_OP_RESHAPE: memmove(o, x, (size_t)op->u.n); break;
        case KWS_OP_SOFTMAX: kws_softmax(op, x, o); break;
        case KWS_OP_ADD: kws_add(op, x, act(m, op->in2), o); break;
        case KWS_OP_MEAN: kws_mean(op, x, o, (int32_t *)m->scratch); break;
        default: return KWS_ERR_UNSUPPORTED;
        }
    }
    return KWS_OK;
}

const int8_t *kws_model_op_output(kws_model *m, int32_t k, size_t *n) {
    if (!m || k < 0 || k >= m->n_ops) return NULL;
    if (n) *n = (size_t)out_elems(&m->ops[k]);
    return act(m, m->ops[k].out);
}

int kws_model_invoke(kws_model *m, const int8_t *input, int8_t *output) {
    if (!output) return KWS_ERR_ARG;
    int rc = kws_model_run_ops(m, input, m ? m->n_ops : 0);
    if (rc) return rc;
    memcpy(output, act(m, m->output), (size_t)m->output_size);
    return KWS_OK;
}

int kws_model_invoke_batch(kws_model *m, const int8_t *inputs, int8_t *outputs, int n) {
    if (!m) return KWS_ERR_ARG;
    size_t ni = kws_model_input_size(m), no = kws_model_output_size(m);
    for (int i = 0; i < n; ++i) {
        int rc = kws_model_invoke(m, inputs + (size_t)i * ni, outputs + (size_t)i * no);
        if (rc) return rc;
    }
    return KWS_OK;
}

size_t kws_model_input_size(const kws_model *m) { return (size_t)m->input_size; }
size_t kws_model_output_size(const kws_model *m) { return (size_t)m->output_size; }
float kws_model_input_scale(const kws_model *m) { return m->input_scale; }
int kws_model_input_zero_point(const kws_model *m) { return m->input_zero_point; }
float kws_model_output_scale(const kws_model *m) { return m->output_scale; }
int kws_model_output_zero_point(const kws_model *m) { return m->output_zero_point; }
size_t kws_model_arena_used(const kws_model *m) { return m->arena_used; }
int kws_model_op_count(const kws_model *m) { return m->n_ops; }
uint64_t kws_model_macs(const kws_model *m) { return m->macs; }
void kws_model_input_shape(const kws_model *m, int32_t dims[4]) {
    for (int i = 0; i < 4; ++i) dims[i] = m->input_dims[i];
}
