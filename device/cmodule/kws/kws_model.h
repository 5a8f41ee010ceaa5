/* kws: portable C99 int8 inference core for keyword-spotting models.
 *
 * Reads a .tflite flatbuffer (treated as untrusted bytes: every offset is
 * bounds-checked), keeps the weights and the CONV_2D / FULLY_CONNECTED biases
 * where they are (the caller keeps the model bytes alive) and puts everything
 * else - the op table, per-channel multipliers and shifts, DEPTHWISE's
 * corrected biases, activations, scratch - into one arena the caller
 * provides; the tensor table only lives there while the model is loaded.
 * No malloc anywhere.
 *
 * Arithmetic is bit-exact with the TFLite reference kernels (which TFLite
 * Micro's kernels are ported from).
 */
#ifndef KWS_MODEL_H
#define KWS_MODEL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum kws_status {
    KWS_OK = 0,
    KWS_ERR_FORMAT = 1,       /* not a TFLite flatbuffer, or damaged */
    KWS_ERR_UNSUPPORTED = 2,  /* op, type, shape or option this engine does not implement */
    KWS_ERR_ARENA = 3,        /* arena too small (message says how much is needed) */
    KWS_ERR_ARG = 4           /* bad argument from the caller */
};

#define KWS_MSG_LEN 120

typedef struct {
    int code;
    char message[KWS_MSG_LEN];
} kws_error;

typedef struct kws_model kws_model;

/* Parse `model` (len bytes) and lay everything out in `arena`. On success
 * *out points into the arena. The model bytes must outlive the model.
 * The arena is aligned internally; pass any pointer. */
int kws_model_load(kws_model **out, const void *model, size_t len,
                   void *arena, size_t arena_size, kws_error *err);

/* One inference: input_size() int8 values in, output_size() int8 values out. */
int kws_model_invoke(kws_model *m, const int8_t *input, int8_t *output);

/* n inferences back to back (inputs and outputs contiguous); for host tests. */
int kws_model_invoke_batch(kws_model *m, const int8_t *inputs, int8_t *outputs, int n);

/* Debugging ports: run only the first n_ops ops; then the output of op
 * n_ops - 1 can be read with kws_model_op_output (valid until the next run). */
int kws_model_run_ops(kws_model *m, const int8_t *input, int32_t n_ops);
const int8_t *kws_model_op_output(kws_model *m, int32_t k, size_t *n);

size_t kws_model_input_size(const kws_model *m);
size_t kws_model_output_size(const kws_model *m);
float kws_model_input_scale(const kws_model *m);
int kws_model_input_zero_point(const kws_model *m);
float kws_model_output_scale(const kws_model *m);
int kws_model_output_zero_point(const kws_model *m);
/* The smallest arena size this model loads in (from the same arena pointer):
 * what the model keeps (tables, activations, scratch, alignment slack) or, if
 * more, what loading needs with the temporary tensor table at the end. */
size_t kws_model_arena_used(const kws_model *m);
int kws_model_op_count(const kws_model *m);
/* Multiply-accumulates of one inference (conv, depthwise, fully connected). */
uint64_t kws_model_macs(const kws_model *m);
/* Input shape as 4 dims (N, H, W, C), padded with leading 1s. */
void kws_model_input_shape(const kws_model *m, int32_t dims[4]);

#ifdef __cplusplus
}
#endif
#endif
