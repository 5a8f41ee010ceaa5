/* MicroPython binding of the kws core: module `kws` with Model, Frontend and,
 * on the STM32 port, AudioIn (kws_audio_stm32.c).
 *
 *   m = kws.Model(model_bytes, arena_size)
 *   m.invoke(in_buf, out_buf)        # int8 buffers of m.input_size / m.output_size
 *   m.input_scale, m.input_zero_point, m.output_scale, m.output_zero_point, m.arena_used
 *   fe = kws.Frontend(frontend_json_dict)
 *   fe.push(int16_samples) -> new frames; fe.features_int8(out, scale, zero_point); fe.frames_ready
 */
#include <string.h>
#include "py/runtime.h"
#include "py/obj.h"
#include "py/objstr.h"
#include "kws_model.h"
#include "kws_frontend.h"

/* ---- Model ---------------------------------------------------------------- */

typedef struct {
    mp_obj_base_t base;
    mp_obj_t model_bytes;   /* keeps the flatbuffer alive: weights are read in place */
    uint8_t *arena;
    size_t arena_size;
    kws_model *model;
} kws_model_obj_t;

static void raise_kws(const kws_error *err) {
    if (err->code == KWS_ERR_ARENA) {
        mp_raise_msg_varg(&mp_type_MemoryError, MP_ERROR_TEXT("kws: %s"), err->message);
    }
    mp_raise_msg_varg(&mp_type_ValueError, MP_ERROR_TEXT("kws: %s"), err->message);
}

static mp_obj_t mp_kws_model_make_new(const mp_obj_type_t *type, size_t n_args, size_t n_kw, const mp_obj_t *args) {
    mp_arg_check_num(n_args, n_kw, 2, 2, false);
    mp_buffer_info_t model;
    mp_get_buffer_raise(args[0], &model, MP_BUFFER_READ);
    mp_int_t arena_size = mp_obj_get_int(args[1]);
    if (arena_size <= 0) {
        mp_raise_ValueError(MP_ERROR_TEXT("kws: arena_size must be positive"));
    }
    kws_model_obj_t *self = mp_obj_malloc(kws_model_obj_t, type);
    self->model_bytes = args[0];
    self->arena = m_new(uint8_t, (size_t)arena_size);
    self->arena_size = (size_t)arena_size;
    kws_error err;
    if (kws_model_load(&self->model, model.buf, model.len, self->arena, self->arena_size, &err) != KWS_OK) {
        m_del(uint8_t, self->arena, self->arena_size);
        self->arena = NULL;
        raise_kws(&err);
    }
    return MP_OBJ_FROM_PTR(self);
}

static mp_obj_t mp_kws_model_invoke(mp_obj_t self_in, mp_obj_t in_obj, mp_obj_t out_obj) {
    kws_model_obj_t *self = MP_OBJ_TO_PTR(self_in);
    mp_buffer_info_t in, out;
    mp_get_buffer_raise(in_obj, &in, MP_BUFFER_READ);
    mp_get_buffer_raise(out_obj, &out, MP_BUFFER_WRITE);
    if (in.len != kws_model_input_size(self->model) || out.len != kws_model_output_size(self->model)) {
        mp_raise_msg_varg(&mp_type_ValueError, MP_ERROR_TEXT("kws: need %u input and %u output bytes"),
                          (unsigned)kws_model_input_size(self->model), (unsigned)kws_model_output_size(self->model));
    }
    kws_model_invoke(self->model, (const int8_t *)in.buf, (int8_t *)out.buf);
    return out_obj;
}
static MP_DEFINE_CONST_FUN_OBJ_3(kws_model_invoke_obj, mp_kws_model_invoke);

static void mp_kws_model_attr(mp_obj_t self_in, qstr attr, mp_obj_t *dest) {
    kws_model_obj_t *self = MP_OBJ_TO_PTR(self_in);
    if (dest[0] != MP_OBJ_NULL) {
        return; /* read-only */
    }
    switch (attr) {
        case MP_QSTR_input_scale: dest[0] = mp_obj_new_float(kws_model_input_scale(self->model)); break;
        case MP_QSTR_input_zero_point: dest[0] = MP_OBJ_NEW_SMALL_INT(kws_model_input_zero_point(self->model)); break;
        case MP_QSTR_output_scale: dest[0] = mp_obj_new_float(kws_model_output_scale(self->model)); break;
        case MP_QSTR_output_zero_point: dest[0] = MP_OBJ_NEW_SMALL_INT(kws_model_output_zero_point(self->model)); break;
        case MP_QSTR_arena_used: dest[0] = mp_obj_new_int_from_uint(kws_model_arena_used(self->model)); break;
        case MP_QSTR_input_size: dest[0] = mp_obj_new_int_from_uint(kws_model_input_size(self->model)); break;
        case MP_QSTR_output_size: dest[0] = mp_obj_new_int_from_uint(kws_model_output_size(self->model)); break;
        default: dest[1] = MP_OBJ_SENTINEL; /* continue lookup in locals_dict */
    }
}

static const mp_rom_map_elem_t kws_model_locals_table[] = {
    { MP_ROM_QSTR(MP_QSTR_invoke), MP_ROM_PTR(&kws_model_invoke_obj) },
};
static MP_DEFINE_CONST_DICT(kws_model_locals, kws_model_locals_table);

MP_DEFINE_CONST_OBJ_TYPE(
    kws_model_type, MP_QSTR_Model, MP_TYPE_FLAG_NONE,
    make_new, mp_kws_model_make_new,
    attr, mp_kws_model_attr,
    locals_dict, &kws_model_locals
    );

/* ---- Frontend ------------------------------------------------------------- */

typedef struct {
    mp_obj_base_t base;
    uint8_t *mem;
    size_t mem_size;
    kws_frontend *fe;
    mp_int_t n_frames, n_coeffs;
} kws_frontend_obj_t;

static mp_obj_t dict_get(mp_obj_t dict, qstr key) {
    mp_map_elem_t *e = mp_map_lookup(mp_obj_dict_get_map(dict), MP_OBJ_NEW_QSTR(key), MP_MAP_LOOKUP);
    if (e == NULL) {
        mp_raise_msg_varg(&mp_type_KeyError, MP_ERROR_TEXT("kws.Frontend: no '%q' in the spec"), key);
    }
    return e->value;
}

static mp_obj_t mp_kws_frontend_make_new(const mp_obj_type_t *type, size_t n_args, size_t n_kw, const mp_obj_t *args) {
    /* kws.Frontend(spec[, scale, zero_point]): with the model's input quantisation the
     * rolling window is kept as int8 (a quarter of the memory) and only features_int8
     * with that quantisation reads it */
    mp_arg_check_num(n_args, n_kw, 1, 3, false);
    if (n_args == 2) {
        mp_raise_TypeError(MP_ERROR_TEXT("kws.Frontend(spec[, scale, zero_point])"));
    }
    mp_obj_t spec = args[0];
    if (!mp_obj_is_type(spec, &mp_type_dict)) {
        mp_raise_TypeError(MP_ERROR_TEXT("kws.Frontend needs the frontend.json dict"));
    }
    kws_frontend_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    if (n_args == 3) {
        cfg.int8_frames = 1;
        cfg.in_scale = (float)mp_obj_get_float(args[1]);
        cfg.in_zero_point = (int32_t)mp_obj_get_int(args[2]);
    }
    cfg.window_length = mp_obj_get_int(dict_get(spec, MP_QSTR_window_length));
    cfg.hop_length = mp_obj_get_int(dict_get(spec, MP_QSTR_hop_length));
    cfg.n_fft = mp_obj_get_int(dict_get(spec, MP_QSTR_n_fft));
    cfg.n_mels = mp_obj_get_int(dict_get(spec, MP_QSTR_n_mels));
    cfg.n_coeffs = mp_obj_get_int(dict_get(spec, MP_QSTR_n_coeffs));
    mp_int_t clip = mp_obj_get_int(dict_get(spec, MP_QSTR_clip_samples));
    cfg.n_frames = cfg.hop_length > 0 && clip >= cfg.window_length ? 1 + (clip - cfg.window_length) / cfg.hop_length : 0;
    cfg.logmel = strcmp(mp_obj_str_get_str(dict_get(spec, MP_QSTR_kind)), "logmel") == 0;
    cfg.pcm_scale = (float)mp_obj_get_float(dict_get(spec, MP_QSTR_pcm_scale));
    cfg.log_floor = (float)mp_obj_get_float(dict_get(spec, MP_QSTR_log_floor));
    mp_obj_t tables = dict_get(spec, MP_QSTR_tables);
    size_t n_starts, n_bands;
    mp_obj_t *starts, *bands;
    mp_obj_get_array(dict_get(tables, MP_QSTR_mel_starts), &n_starts, &starts);
    mp_obj_get_array(dict_get(tables, MP_QSTR_mel_weights), &n_bands, &bands);
    if (cfg.n_mels < 1 || n_starts != (size_t)cfg.n_mels || n_bands != (size_t)cfg.n_mels) {
        mp_raise_ValueError(MP_ERROR_TEXT("kws.Frontend: tables do not match n_mels"));
    }
    int32_t *s = m_new(int32_t, 2 * (size_t)cfg.n_mels);
    int32_t *lengths = s + cfg.n_mels;
    size_t total = 0;
    for (mp_int_t m = 0; m < cfg.n_mels; ++m) {
        size_t n;
        mp_obj_t *w;
        mp_obj_get_array(bands[m], &n, &w);
        s[m] = mp_obj_get_int(starts[m]);
        lengths[m] = (int32_t)n;
        total += n;
    }
    float *weights = m_new(float, total ? total : 1);
    for (mp_int_t m = 0, at = 0; m < cfg.n_mels; ++m) {
        size_t n;
        mp_obj_t *w;
        mp_obj_get_array(bands[m], &n, &w);
        for (size_t i = 0; i < n; ++i) weights[at++] = (float)mp_obj_get_float(w[i]);
    }
    cfg.mel_starts = s;
    cfg.mel_lengths = lengths;
    cfg.mel_weights = weights;
    kws_frontend_obj_t *self = mp_obj_malloc(kws_frontend_obj_t, type);
    self->mem_size = kws_frontend_mem_size(&cfg);
    if (!self->mem_size) {
        mp_raise_ValueError(MP_ERROR_TEXT("kws.Frontend: invalid spec or input quantisation"));
    }
    self->mem = m_new(uint8_t, self->mem_size);
    kws_error err;
    int rc = kws_frontend_init(&self->fe, &cfg, self->mem, self->mem_size, &err);
    m_del(int32_t, s, 2 * (size_t)cfg.n_mels);
    m_del(float, weights, total ? total : 1);
    if (rc != KWS_OK) {
        raise_kws(&err);
    }
    self->n_frames = cfg.n_frames;
    self->n_coeffs = cfg.n_coeffs;
    return MP_OBJ_FROM_PTR(self);
}

static mp_obj_t mp_kws_frontend_push(mp_obj_t self_in, mp_obj_t samples) {
    kws_frontend_obj_t *self = MP_OBJ_TO_PTR(self_in);
    mp_buffer_info_t b;
    mp_get_buffer_raise(samples, &b, MP_BUFFER_READ);
    return MP_OBJ_NEW_SMALL_INT(kws_frontend_push(self->fe, (const int16_t *)b.buf, b.len / 2));
}
static MP_DEFINE_CONST_FUN_OBJ_2(kws_frontend_push_obj, mp_kws_frontend_push);

static mp_obj_t mp_kws_frontend_features_int8(size_t n_args, const mp_obj_t *args) {
    kws_frontend_obj_t *self = MP_OBJ_TO_PTR(args[0]);
    mp_buffer_info_t b;
    mp_get_buffer_raise(args[1], &b, MP_BUFFER_WRITE);
    if (b.len != (size_t)(self->n_frames * self->n_coeffs)) {
        mp_raise_ValueError(MP_ERROR_TEXT("kws.Frontend: output buffer must hold n_frames * n_coeffs bytes"));
    }
    if (kws_frontend_features_int8(self->fe, (int8_t *)b.buf, (float)mp_obj_get_float(args[2]), (int32_t)mp_obj_get_int(args[3])) != KWS_OK) {
        mp_raise_ValueError(MP_ERROR_TEXT("kws.Frontend: the window is kept as int8 with another scale / zero point"));
    }
    return args[1];
}
static MP_DEFINE_CONST_FUN_OBJ_VAR_BETWEEN(kws_frontend_features_int8_obj, 4, 4, mp_kws_frontend_features_int8);

static mp_obj_t mp_kws_frontend_features(mp_obj_t self_in, mp_obj_t out) {
    kws_frontend_obj_t *self = MP_OBJ_TO_PTR(self_in);
    mp_buffer_info_t b;
    mp_get_buffer_raise(out, &b, MP_BUFFER_WRITE);
    if (b.len != 4 * (size_t)(self->n_frames * self->n_coeffs)) {
        mp_raise_ValueError(MP_ERROR_TEXT("kws.Frontend: output buffer must hold n_frames * n_coeffs float32"));
    }
    if (kws_frontend_features(self->fe, (float *)b.buf) != KWS_OK) {
        mp_raise_ValueError(MP_ERROR_TEXT("kws.Frontend: the window is kept as int8 (made with scale, zero_point)"));
    }
    return out;
}
static MP_DEFINE_CONST_FUN_OBJ_2(kws_frontend_features_obj, mp_kws_frontend_features);

static mp_obj_t mp_kws_frontend_reset(mp_obj_t self_in) {
    kws_frontend_obj_t *self = MP_OBJ_TO_PTR(self_in);
    kws_frontend_reset(self->fe);
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_1(kws_frontend_reset_obj, mp_kws_frontend_reset);

static void mp_kws_frontend_attr(mp_obj_t self_in, qstr attr, mp_obj_t *dest) {
    kws_frontend_obj_t *self = MP_OBJ_TO_PTR(self_in);
    if (dest[0] != MP_OBJ_NULL) {
        return;
    }
    switch (attr) {
        case MP_QSTR_frames_ready: dest[0] = MP_OBJ_NEW_SMALL_INT(kws_frontend_frames_ready(self->fe)); break;
        case MP_QSTR_n_frames: dest[0] = MP_OBJ_NEW_SMALL_INT(self->n_frames); break;
        case MP_QSTR_n_coeffs: dest[0] = MP_OBJ_NEW_SMALL_INT(self->n_coeffs); break;
        default: dest[1] = MP_OBJ_SENTINEL;
    }
}

static const mp_rom_map_elem_t kws_frontend_locals_table[] = {
    { MP_ROM_QSTR(MP_QSTR_push), MP_ROM_PTR(&kws_frontend_push_obj) },
    { MP_ROM_QSTR(MP_QSTR_features_int8), MP_ROM_PTR(&kws_frontend_features_int8_obj) },
    { MP_ROM_QSTR(MP_QSTR_features), MP_ROM_PTR(&kws_frontend_features_obj) },
    { MP_ROM_QSTR(MP_QSTR_reset), MP_ROM_PTR(&kws_frontend_reset_obj) },
};
static MP_DEFINE_CONST_DICT(kws_frontend_locals, kws_frontend_locals_table);

MP_DEFINE_CONST_OBJ_TYPE(
    kws_frontend_type, MP_QSTR_Frontend, MP_TYPE_FLAG_NONE,
    make_new, mp_kws_frontend_make_new,
    attr, mp_kws_frontend_attr,
    locals_dict, &kws_frontend_locals
    );

/* ---- module ----------------------------------------------------------------- */

#if KWS_WITH_AUDIO_STM32
extern const mp_obj_type_t kws_audioin_type;
#endif

static const mp_rom_map_elem_t kws_module_globals_table[] = {
    { MP_ROM_QSTR(MP_QSTR___name__), MP_ROM_QSTR(MP_QSTR_kws) },
    { MP_ROM_QSTR(MP_QSTR_Model), MP_ROM_PTR(&kws_model_type) },
    { MP_ROM_QSTR(MP_QSTR_Frontend), MP_ROM_PTR(&kws_frontend_type) },
    #if KWS_WITH_AUDIO_STM32
    { MP_ROM_QSTR(MP_QSTR_AudioIn), MP_ROM_PTR(&kws_audioin_type) },
    #endif
};
static MP_DEFINE_CONST_DICT(kws_module_globals, kws_module_globals_table);

const mp_obj_module_t kws_user_cmodule = {
    .base = { &mp_type_module },
    .globals = (mp_obj_dict_t *)&kws_module_globals,
};

MP_REGISTER_MODULE(MP_QSTR_kws, kws_user_cmodule);
