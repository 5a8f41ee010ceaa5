"""Zoo models with trained-like weights, int8-converted once per test process.

Random weights make TFLite Micro and ai-edge-litert's reference kernels agree
almost always: an untrained classifier head ends in a FULLY_CONNECTED whose
requantisation multiplier is tiny (right shift 10..15), and the two kernels'
roundings only part ways once in ~2**shift outputs. A trained head is
sharper. Here every zoo model gets realistic BatchNorm statistics and a
classifier head fitted by ridge least squares to the project's MFCC features
of generated words (one forward pass and a linear solve, no training), which
gives the head the large, discriminative weights training would.
"""

from __future__ import annotations

import functools

import numpy as np

from conftest import tone_word

SHAPE, N_CLASSES = (49, 10), 12
WORDS = ["yes", "no", "up", "down", "left", "right", "go", "stop"]


def realistic_batch_norm(model, rng):
    """Non-trivial BN statistics so folded convolutions see realistic scales and offsets."""
    import keras

    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.gamma.shape[0]
            layer.set_weights([rng.uniform(0.5, 1.5, n).astype(np.float32), rng.normal(0, 0.2, n).astype(np.float32),
                               rng.normal(0, 0.2, n).astype(np.float32), rng.uniform(0.5, 2.0, n).astype(np.float32)])


@functools.lru_cache(maxsize=None)
def word_features(seeds: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(features (N, 49, 10) float32, labels (N,)) of generated words, one per word and seed."""
    from kws_kit.frontend import Frontend

    pcm = np.stack([tone_word(w, seed=s) for s in seeds for w in WORDS])
    labels = np.array([i for _ in seeds for i in range(len(WORDS))])
    return Frontend().batch_features(pcm), labels


def fit_head(model, features, labels, ridge=1e-3):
    """Least-squares classifier head: logits +-3 for the right/wrong word, like a trained net's margins."""
    import keras

    head = model.get_layer("logits")
    pooled = keras.Model(model.inputs, head.input).predict(features[..., None], verbose=0, batch_size=8)
    f = np.concatenate([pooled.reshape(len(pooled), -1), np.ones((len(pooled), 1))], axis=1)
    targets = np.full((len(f), head.units), -3.0)
    targets[np.arange(len(f)), labels] = 3.0
    solution = np.linalg.solve(f.T @ f + ridge * np.eye(f.shape[1]), f.T @ targets)
    head.set_weights([solution[:-1].astype(np.float32), solution[-1].astype(np.float32)])


@functools.lru_cache(maxsize=None)
def trained_like_int8(name: str) -> bytes:
    """Zoo model ``name`` with trained-like weights as an int8 TFLite flatbuffer."""
    import keras

    from kws_kit.models import zoo
    from kws_kit.quantize import to_int8_tflite

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    model = zoo.build(name, SHAPE, N_CLASSES, batch_size=1)
    realistic_batch_norm(model, rng)
    features, labels = word_features((0, 1, 2))
    fit_head(model, features, labels)
    rep = np.concatenate([features, rng.normal(features.mean(), features.std(), size=(16,) + SHAPE)])
    return to_int8_tflite(model, rep.astype(np.float32))


def realistic_inputs(input_scale, input_zero_point, n_words_seeds=25, n_random=20, seed=1) -> np.ndarray:
    """int8 model inputs (N, 490): front-end features of unseen generated words, extremes, random rows."""
    from kws_kit.frontend import quantize_features

    features, _ = word_features(tuple(range(10, 10 + n_words_seeds)))
    real = quantize_features(features, input_scale, input_zero_point).reshape(len(features), -1)
    n = real.shape[1]
    rng = np.random.default_rng(seed)
    extremes = np.array([np.full(n, -128), np.full(n, 127), np.full(n, input_zero_point)])
    rand = rng.integers(-128, 128, size=(n_random, n))
    return np.concatenate([real, extremes, rand]).astype(np.int8)
