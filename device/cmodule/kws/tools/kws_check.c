/* Host test driver for the kws core (not part of the firmware build).
 *
 *   kws_check run MODEL ARENA_BYTES INPUTS N OUTPUTS   run N int8 inputs, write int8 outputs
 *   kws_check fuzz SECONDS SEED MODEL...                mutate the models and load/run them
 *   kws_check frontend CONFIG PCM OUTPUT                stream int16 PCM, write the last window (float32)
 *
 * Built with -fsanitize=address,undefined by the tests, so any out-of-bounds
 * access or undefined behaviour aborts the process. Buffers are malloc'ed at
 * their exact sizes so the sanitizer sees every overrun. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "kws_model.h"
#include "kws_frontend.h"

static unsigned char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) { fprintf(stderr, "cannot open %s\n", path); exit(2); }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = (unsigned char *)malloc(n > 0 ? (size_t)n : 1);
    if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) { fprintf(stderr, "cannot read %s\n", path); exit(2); }
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static uint64_t rng_state;
static uint64_t next_u64(void) { /* splitmix64 */
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static size_t below(size_t n) { return n ? (size_t)(next_u64() % n) : 0; }

static int cmd_run(int argc, char **argv) {
    if (argc < 7) return 2;
    size_t len, in_len;
    unsigned char *model = read_file(argv[2], &len);
    size_t arena_size = (size_t)strtoul(argv[3], NULL, 10);
    int8_t *inputs = (int8_t *)read_file(argv[4], &in_len);
    int n = atoi(argv[5]);
    void *arena = malloc(arena_size);
    kws_model *m;
    kws_error err;
    if (kws_model_load(&m, model, len, arena, arena_size, &err) != KWS_OK) {
        printf("error %d %s\n", err.code, err.message);
        return 1;
    }
    size_t ni = kws_model_input_size(m), no = kws_model_output_size(m);
    if (in_len != ni * (size_t)n) { fprintf(stderr, "inputs file has the wrong size\n"); return 2; }
    int8_t *out = (int8_t *)malloc(no * (size_t)n);
    for (int i = 0; i < n; ++i) {
        int8_t *one_in = (int8_t *)malloc(ni), *one_out = (int8_t *)malloc(no);
        memcpy(one_in, inputs + ni * (size_t)i, ni);
        if (kws_model_invoke(m, one_in, one_out) != KWS_OK) return 1;
        memcpy(out + no * (size_t)i, one_out, no);
        free(one_in);
        free(one_out);
    }
    FILE *f = fopen(argv[6], "wb");
    fwrite(out, 1, no * (size_t)n, f);
    fclose(f);
    printf("ok arena_used %zu\n", kws_model_arena_used(m));
    free(out); free(arena); free(inputs); free(model);
    return 0;
}

static void mutate(unsigned char *buf, size_t *len, const unsigned char *orig, size_t orig_len) {
    memcpy(buf, orig, orig_len);
    *len = orig_len;
    int n_mut = 1 + (int)below(4);
    for (int i = 0; i < n_mut; ++i) {
        size_t at = below(*len);
        switch (below(7)) {
        case 0: buf[at] ^= (unsigned char)(1u << below(8)); break;                 /* bit flip */
        case 1: buf[at] = (unsigned char)next_u64(); break;                          /* random byte */
        case 2: { /* hostile 32-bit value at a random (4-aligned) place */
            static const uint32_t hostile[] = {0, 1, 4, 0x7FFFFFFFu, 0x80000000u, 0xFFFFFFFFu, 0xFFFFu, 0x10000u};
            uint32_t v = below(3) == 0 ? (uint32_t)*len - (uint32_t)below(16) : hostile[below(8)];
            at &= ~(size_t)3;
            if (at + 4 <= *len) memcpy(buf + at, &v, 4);
            break;
        }
        case 3: *len = below(*len + 1); break;                                       /* truncate */
        case 4: { /* small int in a random field-sized slot: shapes, strides, indices */
            int32_t v = (int32_t)below(600) - 300;
            at &= ~(size_t)3;
            if (at + 4 <= *len) memcpy(buf + at, &v, 4);
            break;
        }
        case 5: { /* copy a chunk from elsewhere in the file */
            size_t from = below(*len), n = 1 + below(64);
            if (from + n <= *len && at + n <= *len) memmove(buf + at, buf + from, n);
            break;
        }
        default: { /* 16-bit vtable-sized value */
            uint16_t v = (uint16_t)below(0x10000);
            if (below(2)) v = (uint16_t)below(64);
            at &= ~(size_t)1;
            if (at + 2 <= *len) memcpy(buf + at, &v, 2);
        }
        }
        if (*len == 0) break;
    }
}

static int cmd_fuzz(int argc, char **argv) {
    if (argc < 5) return 2;
    double seconds = atof(argv[2]);
    rng_state = strtoull(argv[3], NULL, 10);
    int n_models = argc - 4;
    unsigned char *models[16];
    size_t lens[16], max_len = 0;
    if (n_models > 16) n_models = 16;
    for (int i = 0; i < n_models; ++i) {
        models[i] = read_file(argv[4 + i], &lens[i]);
        if (lens[i] > max_len) max_len = lens[i];
    }
    const size_t arena_size = 256 * 1024;
    unsigned char *arena = (unsigned char *)malloc(arena_size);
    unsigned char *work = (unsigned char *)malloc(max_len);
    int8_t *in = (int8_t *)malloc(1 << 16), *out = (int8_t *)malloc(1 << 16);
    long iters = 0, loaded = 0, invoked = 0, codes[8] = {0};
    time_t start = time(NULL); /* wall time: the CI machine is shared */
    while (difftime(time(NULL), start) < seconds) {
        int which = (int)below((size_t)n_models);
        size_t len;
        mutate(work, &len, models[which], lens[which]);
        /* an exact-size copy, so reading one byte past the end is caught */
        unsigned char *exact = (unsigned char *)malloc(len ? len : 1);
        memcpy(exact, work, len);
        size_t asz = below(4) == 0 ? below(arena_size) : arena_size;
        kws_model *m;
        kws_error err;
        int rc = kws_model_load(&m, exact, len, arena, asz, &err);
        codes[rc & 7]++;
        if (rc == KWS_OK) {
            ++loaded;
            if (kws_model_macs(m) < 20000000ull && kws_model_input_size(m) <= (1 << 16) && kws_model_output_size(m) <= (1 << 16)) {
                for (size_t i = 0; i < kws_model_input_size(m); ++i) in[i] = (int8_t)next_u64();
                kws_model_invoke(m, in, out);
                ++invoked;
            }
        } else if (strlen(err.message) == 0) {
            fprintf(stderr, "error %d without a message\n", rc);
            return 1;
        }
        free(exact);
        ++iters;
    }
    printf("iterations %ld loaded %ld invoked %ld format %ld unsupported %ld arena %ld\n", iters, loaded, invoked,
           codes[KWS_ERR_FORMAT], codes[KWS_ERR_UNSUPPORTED], codes[KWS_ERR_ARENA]);
    fflush(stdout);
    for (int i = 0; i < n_models; ++i) free(models[i]);
    free(arena); free(work); free(in); free(out);
    return 0;
}

static int cmd_frontend(int argc, char **argv) {
    if (argc < 5) return 2;
    FILE *f = fopen(argv[2], "r");
    if (!f) return 2;
    kws_frontend_config c;
    memset(&c, 0, sizeof(c));
    if (fscanf(f, "%d %d %d %d %d %d %d %f %f", &c.window_length, &c.hop_length, &c.n_fft, &c.n_mels, &c.n_coeffs,
               &c.n_frames, &c.logmel, &c.pcm_scale, &c.log_floor) != 9) return 2;
    int32_t *starts = (int32_t *)malloc(4 * (size_t)c.n_mels), *lengths = (int32_t *)malloc(4 * (size_t)c.n_mels);
    int total = 0;
    for (int i = 0; i < c.n_mels; ++i) if (fscanf(f, "%d", &starts[i]) != 1) return 2;
    for (int i = 0; i < c.n_mels; ++i) { if (fscanf(f, "%d", &lengths[i]) != 1) return 2; total += lengths[i]; }
    float *weights = (float *)malloc(4 * (size_t)(total ? total : 1));
    for (int i = 0; i < total; ++i) if (fscanf(f, "%f", &weights[i]) != 1) return 2;
    fclose(f);
    c.mel_starts = starts; c.mel_lengths = lengths; c.mel_weights = weights;
    if (argc >= 7) { /* int8 rolling window: write int8 features */
        c.int8_frames = 1;
        c.in_scale = strtof(argv[5], NULL);
        c.in_zero_point = atoi(argv[6]);
    }
    size_t mem_size = kws_frontend_mem_size(&c);
    void *mem = malloc(mem_size);
    kws_frontend *fe;
    kws_error err;
    if (kws_frontend_init(&fe, &c, mem, mem_size, &err) != KWS_OK) { printf("error %s\n", err.message); return 1; }
    size_t pcm_len;
    int16_t *pcm = (int16_t *)read_file(argv[3], &pcm_len);
    pcm_len /= 2;
    size_t at = 0, chunk = 1;
    while (at < pcm_len) { /* odd chunk sizes exercise the ring buffer */
        size_t n = chunk < pcm_len - at ? chunk : pcm_len - at;
        kws_frontend_push(fe, pcm + at, n);
        at += n;
        chunk = chunk * 3 % 997 + 1;
    }
    size_t n_out = (size_t)c.n_frames * c.n_coeffs;
    float *out = (float *)malloc(4 * n_out);
    f = fopen(argv[4], "wb");
    if (c.int8_frames) {
        if (kws_frontend_features((const kws_frontend *)fe, out) != KWS_ERR_ARG) { printf("error float read of int8\n"); return 1; }
        if (kws_frontend_features_int8(fe, (int8_t *)out, c.in_scale, c.in_zero_point) != KWS_OK) return 1;
        fwrite(out, 1, n_out, f);
    } else {
        if (kws_frontend_features(fe, out) != KWS_OK) return 1;
        fwrite(out, 4, n_out, f);
    }
    fclose(f);
    printf("ok frames %d\n", kws_frontend_frames_ready(fe));
    free(out); free(pcm); free(mem); free(starts); free(lengths); free(weights);
    return 0;
}

int main(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "run")) return cmd_run(argc, argv);
    if (argc >= 2 && !strcmp(argv[1], "fuzz")) return cmd_fuzz(argc, argv);
    if (argc >= 2 && !strcmp(argv[1], "frontend")) return cmd_frontend(argc, argv);
    fprintf(stderr, "usage: kws_check run|fuzz|frontend ...\n");
    return 2;
}
