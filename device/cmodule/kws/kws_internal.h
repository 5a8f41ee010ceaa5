/* Internal structures and kernel entry points shared by kws_model.c and kws_ops.c. */
#ifndef KWS_INTERNAL_H
#define KWS_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include "kws_model.h"

/* TFLite enum values (schema.fbs) the engine understands. */
enum {
    KWS_OP_ADD = 0,
    KWS_OP_AVERAGE_POOL_2D = 1,
    KWS_OP_CONV_2D = 3,
    KWS_OP_DEPTHWISE_CONV_2D = 4,
    KWS_OP_FULLY_CONNECTED = 9,
    KWS_OP_MAX_POOL_2D = 17,
    KWS_OP_RESHAPE = 22,
    KWS_OP_SOFTMAX = 25,
    KWS_OP_MEAN = 40
};
enum { KWS_TYPE_FLOAT32 = 0, KWS_TYPE_INT32 = 2, KWS_TYPE_INT64 = 4, KWS_TYPE_INT8 = 9 };
enum { KWS_ACT_NONE = 0, KWS_ACT_RELU = 1, KWS_ACT_RELU_N1_TO_1 = 2, KWS_ACT_RELU6 = 3 };
enum { KWS_PAD_SAME = 0, KWS_PAD_VALID = 1 };

#define KWS_MAX_DIMS 4
#define KWS_ACT_ALIGN 16

/* Largest op geometry value (a height, width, channel count, kernel size,
 * stride, dilation or padding): they are int16 in kws_op; the loader refuses
 * a model that exceeds it. */
#define KWS_MAX_GEOM 32767

/* A tensor as the loader sees it. The table lives at the end of the arena
 * only while the model is parsed and its activations planned; then that
 * memory is given back (it becomes activations and scratch), so at run time
 * the ops carry everything the kernels read. */
typedef struct {
    int32_t dims[KWS_MAX_DIMS]; /* padded on the left with 1s to 4 dims */
    int32_t elems;
    int32_t zero_point;
    float scale;                /* first scale, 0 if none */
    int32_t n_scales;
    const uint8_t *scales;      /* little-endian float32 array inside the model bytes */
    const uint8_t *data;        /* constant data inside the model bytes */
    int32_t offset;             /* activation offset in the arena, -1 if not planned */
    int32_t first, last;        /* liveness (op steps); of a buffer's owner: the buffer's */
    int32_t owner;              /* tensor whose buffer this one shares (an in-place op), else itself */
    int32_t span;               /* of an owner: bytes of its buffer (largest tensor in it) */
    int8_t ndim;                /* as stored in the model */
    uint8_t type;
    int8_t is_const;
    int8_t used;
} kws_tensor;

/* CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED, AVERAGE/MAX_POOL_2D (NHWC, batch 1). */
typedef struct {
    int16_t in_h, in_w, in_c, out_h, out_w, out_c;
    int16_t k_h, k_w, stride_h, stride_w, dil_h, dil_w, pad_h, pad_w, depth_mult;
    int16_t per_channel;        /* FULLY_CONNECTED: one multiplier per output channel (else one) */
    int32_t k_len;              /* conv / fc: dot length */
    int32_t batches;            /* fc rows */
    const int8_t *weights;      /* inside the model bytes */
    const int32_t *mult;        /* per channel (FC: one unless per_channel), in the arena */
    const int8_t *shift;        /* per channel, in [-31, 30], in the arena */
    /* the model's int32 bias (little-endian, any alignment, inside the model bytes),
     * NULL if none */
    const void *bias;
#ifdef KWS_FC_LITERT_REFERENCE
    const double *fc_scale;     /* per-channel FULLY_CONNECTED rescale (see kws_ops.c), NULL if unused */
#endif
} kws_conv_params;

typedef struct {
    int32_t n, in2_offset, in1_mult, in1_shift, in2_mult, in2_shift, out_mult, out_shift;
} kws_add_params;

typedef struct {
    int32_t rows, depth, mult, shift, diff_min;
} kws_softmax_params;

typedef struct {
    int32_t dims[KWS_MAX_DIMS]; /* input, padded to 4 */
    int32_t axis_mask;          /* reduced axes as a bit mask over the 4 padded dims */
    int32_t reduce_count, n_out, mult, shift;
} kws_mean_params;

typedef struct {
    uint8_t code;               /* KWS_OP_* */
    int8_t act_min, act_max;
    int8_t out_offset;          /* output zero point */
    int32_t in_offset;          /* -(first input's zero point); int32: an int16 here made gcc -Os
                                   spill an accumulator in CONV_2D's inner loop */
    int32_t in, in2, out;       /* activation byte offsets; in2 = -1 if none */
    union {
        kws_conv_params conv;   /* also FULLY_CONNECTED and the pools */
        kws_add_params add;
        kws_softmax_params softmax;
        kws_mean_params mean;
        int32_t n;              /* RESHAPE: bytes to copy */
    } u;
} kws_op;

struct kws_model {
    kws_op *ops;
    int32_t n_ops;
    int32_t input, output;      /* activation byte offsets of the graph input and output */
    int32_t input_size, output_size;
    int32_t input_zero_point, output_zero_point;
    float input_scale, output_scale;
    int32_t input_dims[KWS_MAX_DIMS];
    uint8_t *activations;
    size_t activation_bytes;
    void *scratch;
    size_t scratch_bytes;
    size_t arena_used;
    uint64_t macs;
};

/* -- fixed-point arithmetic, exactly as gemmlowp / TFLite define it -- */
int32_t kws_srdhm(int32_t a, int32_t b);                 /* SaturatingRoundingDoublingHighMul */
int32_t kws_rdbpot(int32_t x, int exponent);             /* RoundingDivideByPOT */
int32_t kws_mbqm(int32_t x, int32_t multiplier, int shift); /* MultiplyByQuantizedMultiplier */
void kws_quantize_multiplier(double m, int32_t *multiplier, int *shift);

/* -- kernels (kws_ops.c); shapes were validated at load -- */
/* CONV_2D takes its weights as an argument (op->u.conv.weights): read from the op inside,
 * gcc -Os spilled an accumulator of the inner loop. */
void kws_conv2d(const kws_op *op, const int8_t *in, const int8_t *filter, int8_t *out, int16_t *scratch);
void kws_depthwise(const kws_op *op, const int8_t *in, int8_t *out, void *scratch);
void kws_fully_connected(const kws_op *op, const int8_t *in, int8_t *out, int16_t *row);
void kws_avg_pool(const kws_op *op, const int8_t *in, int8_t *out);
void kws_max_pool(const kws_op *op, const int8_t *in, int8_t *out);
void kws_add(const kws_op *op, const int8_t *a, const int8_t *b, int8_t *out);
void kws_mean(const kws_op *op, const int8_t *in, int8_t *out, int32_t *sums);
void kws_softmax(const kws_op *op, const int8_t *in, int8_t *out);

/* Scratch each kernel needs, in bytes. */
size_t kws_conv_patch_bytes(int32_t k_len);          /* one int16 vector of k_len, padded to 4 */
size_t kws_conv_scratch_bytes(int32_t k_len);        /* CONV_2D: the pixel-pair patch */
size_t kws_depthwise_scratch_bytes(int32_t taps, int32_t in_c, int32_t out_c);

#endif
