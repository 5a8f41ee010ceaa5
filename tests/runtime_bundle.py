"""A small real model bundle for the runtime tests (simulate, listen), built once per test run.

A softmax regression on the project's MFCC features of toy tone words
(tests/toy_audio.py), fitted with numpy in well under a second and exported to
int8 with the project's converter: a genuine int8 TFLite bundle whose scores
follow the audio, so streamed words produce detections.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

import toy_audio

LABELS = ["_silence_", "_unknown_", "go", "stop"]
_CACHE: dict[str, Path] = {}


def _clips(word: str, n: int, rng) -> np.ndarray:
    return np.stack([toy_audio.word_audio(word, s % 12, s, rng) for s in range(n)])


def training_set(seed: int = 0):
    from kws_kit.audio_io import to_int16
    from kws_kit.frontend import Frontend

    rng = np.random.default_rng(seed)
    groups = {
        "_silence_": (0.003 * rng.standard_normal((40, 16000))).astype(np.float32),
        "_unknown_": np.concatenate([_clips("cat", 20, rng), _clips("tree", 20, rng)]),
        "go": _clips("go", 40, rng),
        "stop": _clips("stop", 40, rng),
    }
    fe = Frontend()
    x = np.concatenate([fe.batch_features(to_int16(groups[k])) for k in LABELS])
    y = np.concatenate([np.full(len(groups[k]), i) for i, k in enumerate(LABELS)])
    return x, y


def fit_softmax(x: np.ndarray, y: np.ndarray, steps: int = 400, lr: float = 0.5):
    flat = x.reshape(len(x), -1).astype(np.float64)
    mu, sigma = flat.mean(0), flat.std(0) + 1e-3
    z = (flat - mu) / sigma
    w = np.zeros((z.shape[1], len(LABELS)))
    b = np.zeros(len(LABELS))
    onehot = np.eye(len(LABELS))[y]
    for _ in range(steps):
        logits = z @ w + b
        p = np.exp(logits - logits.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        grad = (p - onehot) / len(z)
        w -= lr * (z.T @ grad + 1e-3 * w)
        b -= lr * grad.sum(0)
    # Fold the standardisation into the layer: the model takes raw features.
    return w / sigma[:, None], b - (mu / sigma) @ w


def tiny_bundle(root: Path) -> Path:
    """Build (once per process) and return a bundle folder under ``root``."""
    if "bundle" in _CACHE and _CACHE["bundle"].is_dir():
        return _CACHE["bundle"]
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    from kws_kit.bundle import BUNDLE_FORMAT, DEFAULT_RECOGNIZER
    from kws_kit.frontend import FrontendSpec, spec_to_bundle_json
    from kws_kit.quantize import to_int8_tflite
    from kws_kit.tflite_info import inspect_tflite

    x, y = training_set()
    w, b = fit_softmax(x, y)
    inputs = keras.Input((49, 10, 1), batch_size=1)
    out = keras.layers.Dense(len(LABELS), activation="softmax")(keras.layers.Flatten()(inputs))
    model = keras.Model(inputs, out)
    model.layers[-1].set_weights([w.astype(np.float32), b.astype(np.float32)])
    tflite = to_int8_tflite(model, x[::4])
    info = inspect_tflite(tflite)
    folder = Path(root) / "tiny_bundle"
    folder.mkdir(parents=True)
    (folder / "model.tflite").write_bytes(tflite)
    (folder / "labels.txt").write_text("\n".join(LABELS) + "\n")
    (folder / "frontend.json").write_text(json.dumps(spec_to_bundle_json(FrontendSpec())))
    (folder / "recognizer.json").write_text(json.dumps(DEFAULT_RECOGNIZER))
    (folder / "metadata.json").write_text(json.dumps({
        "format": BUNDLE_FORMAT, "model": "softmax_regression", "labels": LABELS,
        "input": {"shape": list(info.input_shape), "scale": info.input_scale, "zero_point": info.input_zero_point},
        "output": {"shape": list(info.output_shape), "scale": info.output_scale, "zero_point": info.output_zero_point},
    }))
    _CACHE["bundle"] = folder
    return folder


def word_stream(duration_s: float = 40.0, seed: int = 1):
    """A kws_kit.streaming Stream of toy go/stop words (plus unknown words) over noise."""
    from kws_kit.streaming import build_stream

    rng = np.random.default_rng(seed)
    keywords = {"go": list(_clips("go", 6, rng)), "stop": list(_clips("stop", 6, rng))}
    unknown = list(_clips("cat", 4, rng))
    noise = (0.01 * rng.standard_normal(16000 * 20)).astype(np.float32)
    return build_stream(keywords, unknown, noise, duration_s=duration_s, seed=seed, keyword_every_s=(3.0, 5.0),
                        unknown_every_s=(6.0, 9.0), snr_db=(10.0, 20.0))
