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

typedef struct {
    int32_t dims[KWS_MAX_DIMS]; /* padded on the left with 1s to 4 dims */
    int32_t ndim;               /* as stored in the model */
    int32_t elems;
    int32_t type;
    int32_t is_const;
    int32_t zero_point;
    float scale;                /* first scale, 0 if none */
    int32_t n_scales;
    const uint8_t *scales;      /* little-endian float32 array inside the model bytes */
    const uint8_t *data;        /* constant data inside the model bytes */
    uint32_t data_len;
    int32_t offset;             /* activation offset in the arena, -1 if not planned */
    int32_t first, last;        /* liveness (op steps) */
    int32_t used;
} kws_tensor;

typedef struct {
    int32_t code;
    int32_t in[3];              /* tensor indices, -1 absent */
    int32_t out;
    /* geometry (NHWC, batch 1) */
    int32_t in_h, in_w, in_c, out_h, out_w, out_c;
    int32_t k_h, k_w, stride_h, stride_w, dil_h, dil_w, pad_h, pad_w, depth_mult;
    int32_t in_offset, out_offset, act_min, act_max;
    int32_t n_channels;         /* per-channel multiplier count */
    int32_t *mult, *shift;      /* in the arena */
    int32_t *bias;              /* in the arena (copied, aligned), NULL if none; DEPTHWISE: always set,
                                   bias + in_offset * sum of the channel's weights (see kws_ops.c) */
    double *fc_scale;           /* per-channel FULLY_CONNECTED rescale (see kws_ops.c), NULL if unused */
    int32_t k_len;              /* conv / fc: dot length */
    int32_t batches;            /* fc rows, mean outer */
    /* add */
    int32_t in2_offset, in1_mult, in1_shift, in2_mult, in2_shift, out_mult, out_shift;
    /* softmax */
    int32_t diff_min;
    /* mean: reduced axes as a bit mask over the 4 padded dims, element count */
    int32_t axis_mask, reduce_count;
} kws_op;

struct kws_model {
    const uint8_t *fb;
    size_t fb_len;
    kws_tensor *tensors;
    int32_t n_tensors;
    kws_op *ops;
    int32_t n_ops;
    int32_t input, output;
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
void kws_conv2d(const kws_op *op, const int8_t *in, const int8_t *filter, int8_t *out, int16_t *scratch);
void kws_depthwise(const kws_op *op, const int8_t *in, const int8_t *filter, int8_t *out, void *scratch);
void kws_fully_connected(const kws_op *op, const int8_t *in, const int8_t *weights, int8_t *out, int16_t *row);
void kws_avg_pool(const kws_op *op, const int8_t *in, int8_t *out);
void kws_max_pool(const kws_op *op, const int8_t *in, int8_t *out);
void kws_add(const kws_op *op, const int8_t *a, const int8_t *b, int8_t *out, int32_t n);
void kws_mean(const kws_op *op, const kws_tensor *in_t, const int8_t *in, int8_t *out, int32_t out_elems, int32_t *sums);
void kws_softmax(const kws_op *op, const int8_t *in, int8_t *out, int32_t rows, int32_t depth);

/* Scratch each kernel needs, in bytes. */
size_t kws_conv_patch_bytes(int32_t k_len);          /* one int16 vector of k_len, padded to 4 */
size_t kws_conv_scratch_bytes(int32_t k_len);        /* CONV_2D: the pixel-pair patch */
size_t kws_depthwise_scratch_bytes(int32_t taps, int32_t in_c);

#endif
