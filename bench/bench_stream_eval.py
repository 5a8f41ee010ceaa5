"""End-to-end streaming evaluation with the real int8 model on one core.

    taskset -c 0 python bench/bench_stream_eval.py [--minutes 60] [--model tds_resnet] [--tflm-windows 300]

Builds the default zoo model (kws_kit.models.zoo.DEFAULT_MODEL, random weights
with realistic batch-norm statistics: speed does not depend on what it learnt),
converts it to int8 (not timed), prepares the batched engine (timed apart:
``prepare_int8_engine_cpu_s``, once per model and process; it includes loading
or, on first use, compiling the numba loops of ``kws_kit.int8_jit``), then
times what ``kws-kit evaluate`` does for
the stream: build_stream, front-end features, score_stream with the int8 model
through the batched engine (``kernels="batch"``), the recogniser at one
threshold, and a 24-threshold sweep. Also times TFLite Micro on
``--tflm-windows`` of the same windows (checking the outputs are identical)
and extrapolates it to the whole stream. Prints JSON.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_streaming import LABELS, load_inputs  # noqa: E402

from kws_kit import streaming  # noqa: E402
from kws_kit.frontend import Frontend, quantize_features  # noqa: E402
from kws_kit.models import zoo  # noqa: E402
from kws_kit.quantize import Int8Runner, to_int8_tflite  # noqa: E402


def build_int8(name: str, features: np.ndarray) -> bytes:
    import keras

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    model = zoo.build(name, features.shape[1:], len(LABELS), batch_size=1)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.gamma.shape[0]
            layer.set_weights([rng.uniform(0.5, 1.5, n), rng.normal(0, 0.2, n), rng.normal(0, 0.2, n),
                               rng.uniform(0.5, 2.0, n)])
    return to_int8_tflite(model, features)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--model", default=zoo.DEFAULT_MODEL)
    ap.add_argument("--thresholds", type=int, default=24)
    ap.add_argument("--tflm-windows", type=int, default=300)
    args = ap.parse_args()
    duration = args.minutes * 60.0
    keyword_clips, unknown, noise, source = load_inputs()
    frontend = Frontend()
    calib = frontend.batch_features(np.stack([c for clips in keyword_clips.values() for c in clips[:8]]))
    tfl = build_int8(args.model, calib.astype(np.float32))
    prepare = time.process_time()
    runner = Int8Runner(tfl, kernels="batch")  # parses the model; compiles or loads int8_jit's loops
    prepare = time.process_time() - prepare
    scale, zp = runner.info.input_scale, runner.info.input_zero_point

    wall, cpu = {}, {}

    def timed(name, fn, *a, **kw):
        w, c = time.perf_counter(), time.process_time()
        out = fn(*a, **kw)
        wall[name], cpu[name] = time.perf_counter() - w, time.process_time() - c
        return out

    def scorer(batch):
        q = quantize_features(batch, scale, zp)[..., None]
        return (runner(q).reshape(len(batch), -1).astype(np.int16) + 128).astype(np.uint8)

    stream = timed("build_stream", streaming.build_stream, keyword_clips, unknown, noise, duration, seed=0)
    features = timed("features", frontend.stream_features, stream.audio)
    track = timed("score_stream_int8_batch", streaming.score_stream, lambda _a: features, scorer, stream)
    timed("recognizer_1_threshold", streaming.evaluate, track, stream, LABELS, {"detection_threshold": 0.6})
    thresholds = [round(float(t), 3) for t in np.linspace(0.3, 0.99, args.thresholds)]
    timed("sweep", streaming.sweep_thresholds, track, stream.events, LABELS, {}, thresholds)

    # TFLite Micro on a sample of the same windows: same scores, and its cost per window
    times, last = streaming.inference_frames(len(stream.audio))
    pick = np.linspace(0, len(last) - 1, min(args.tflm_windows, len(last))).astype(int)
    windows = features[last[pick, None] - np.arange(48, -1, -1)[None, :]]
    q = quantize_features(windows, scale, zp)[..., None]
    tflm = Int8Runner(tfl, kernels="tflm")
    c = time.process_time()
    expected = tflm(q).reshape(len(q), -1)
    tflm_cpu_per_window = (time.process_time() - c) / len(q)
    identical = bool(np.array_equal((expected.astype(np.int16) + 128).astype(np.uint8), track.scores[pick]))

    total_wall, total_cpu = sum(wall.values()), sum(cpu.values())
    report = {
        "model": args.model,
        "inputs": source,
        "audio_s": duration,
        "inferences": int(len(track.times_ms)),
        "events": len(stream.events),
        "load_average": os.getloadavg()[0],
        "stages_wall_s": {k: round(v, 3) for k, v in wall.items()},
        "stages_cpu_s": {k: round(v, 3) for k, v in cpu.items()},
        "total_wall_s": round(total_wall, 3),
        "total_cpu_s": round(total_cpu, 3),
        "realtime_wall": round(duration / total_wall),
        "realtime_cpu": round(duration / total_cpu),
        "batch_cpu_ms_per_inference": round(1e3 * cpu["score_stream_int8_batch"] / len(track.times_ms), 4),
        # once per model and process, not per hour of audio: not in the totals
        "prepare_int8_engine_cpu_s": round(prepare, 3),
        "tflm_cpu_ms_per_inference": round(1e3 * tflm_cpu_per_window, 3),
        "tflm_scoring_extrapolated_cpu_s": round(tflm_cpu_per_window * len(track.times_ms), 2),
        "tflm_windows_checked": len(q),
        "batch_equals_tflm_on_checked_windows": identical,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
