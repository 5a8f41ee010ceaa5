"""Streaming evaluation throughput, stage by stage, on one core.

    python bench/bench_streaming.py [--hours 1] [--thresholds 25]

Builds a test stream from Speech Commands clips and background noise in
../shared/data/speech_commands when present (else generated tones and noise),
computes features with the real front end (Frontend().stream_features, default
spec), scores with a tiny stand-in scorer (a fixed random linear layer + softmax;
the real model's cost comes on top), runs the device recogniser, matches, sweeps
thresholds and draws the DET plot. Prints seconds per stage and the real-time
factor (audio seconds / wall seconds) as JSON.
"""

from __future__ import annotations

import os

# One core: set before numpy loads its BLAS.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import json
import math
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from kws_kit import streaming
from kws_kit.audio_io import load
from kws_kit.frontend import Frontend

SHARED = Path(__file__).resolve().parents[2] / "shared/data/speech_commands"
KEYWORDS = ["yes", "no", "up", "down"]
LABELS = ["_silence_", "_unknown_"] + KEYWORDS


def load_inputs() -> tuple[dict, list, list, str]:
    if SHARED.is_dir():
        keyword_clips = {k: [load(p) for p in sorted((SHARED / k).glob("*.wav"))[:60]] for k in KEYWORDS}
        aux = [d for d in sorted(SHARED.iterdir()) if d.is_dir() and not d.name.startswith("_") and d.name not in KEYWORDS]
        unknown = [load(p) for d in aux[:12] for p in sorted(d.glob("*.wav"))[:10]]
        noise = [load(p) for p in sorted((SHARED / "_background_noise_").glob("*.wav"))]
        return keyword_clips, unknown, noise, "Speech Commands clips and _background_noise_"
    rng = np.random.default_rng(0)
    t = np.arange(8000) / 16000
    tone = lambda f: (0.3 * np.sin(2 * np.pi * f * t) * np.hanning(len(t))).astype(np.float32)  # noqa: E731
    keyword_clips = {k: [tone(300 + 200 * i + j) for j in range(5)] for i, k in enumerate(KEYWORDS)}
    unknown = [tone(3000 + 10 * j) for j in range(5)]
    noise = [rng.standard_normal(16000 * 60).astype(np.float32) * 0.1]
    return keyword_clips, unknown, noise, "generated tones and white noise"


class StandInScorer:
    """Mean and last frame of the window -> fixed random linear layer -> softmax -> uint8."""

    def __init__(self, n_coeff: int, n_classes: int):
        rng = np.random.default_rng(1)
        self.w = rng.standard_normal((2 * n_coeff, n_classes)).astype(np.float32) * 0.1

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        x = np.concatenate([batch.mean(axis=1), batch[:, -1, :]], axis=1) @ self.w
        x -= x.max(axis=1, keepdims=True)
        e = np.exp(x)
        return streaming.probs_to_scores(e / e.sum(axis=1, keepdims=True))


def run_once(keyword_clips, unknown, noise, duration: float, n_thresholds: int) -> tuple[dict, dict, dict]:
    wall: dict[str, float] = {}
    cpu: dict[str, float] = {}

    def timed(name, fn, *a, **kw):
        w, c = time.perf_counter(), time.process_time()
        out = fn(*a, **kw)
        wall[name] = time.perf_counter() - w
        cpu[name] = time.process_time() - c
        return out

    stream = timed("build_stream", streaming.build_stream, keyword_clips, unknown, noise, duration, seed=0)
    features = timed("features", Frontend().stream_features, stream.audio)
    scorer = StandInScorer(features.shape[1], len(LABELS))
    # Features are computed above: this stage is the windowing and the stand-in scorer.
    track = timed("score_stream", streaming.score_stream, lambda _audio: features, scorer, stream)
    result = timed("evaluate_1_threshold", streaming.evaluate, track, stream, LABELS, {"detection_threshold": 0.6})
    thresholds = np.linspace(0.3, 0.99, n_thresholds)
    sweep = timed("sweep", streaming.sweep_thresholds, track, stream.events, LABELS, {}, thresholds)
    with tempfile.TemporaryDirectory() as tmp:
        timed("plot_det", streaming.plot_det, sweep, Path(tmp) / "det.png", target_fa_per_hour=0.5)
    info = {
        "inferences": int(len(track.times_ms)),
        "events": len(stream.events),
        "unknown_words": len(stream.distractors),
        "stand_in_result": result.summary(),
    }
    return wall, cpu, info


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hours", type=float, default=1.0)
    ap.add_argument("--thresholds", type=int, default=25)
    ap.add_argument("--repeats", type=int, default=3, help="report the best of this many runs per stage")
    args = ap.parse_args()
    duration = args.hours * 3600

    t0 = time.perf_counter()
    keyword_clips, unknown, noise, source = load_inputs()
    load_s = time.perf_counter() - t0

    best_wall: dict[str, float] = {}
    best_cpu: dict[str, float] = {}
    for _ in range(args.repeats):
        wall, cpu, info = run_once(keyword_clips, unknown, noise, duration, args.thresholds)
        for k in wall:
            best_wall[k] = min(best_wall.get(k, math.inf), wall[k])
            best_cpu[k] = min(best_cpu.get(k, math.inf), cpu[k])

    def factors(t: dict[str, float]) -> dict[str, float]:
        one = sum(v for k, v in t.items() if k not in ("sweep", "plot_det"))
        return {
            "one_threshold_s": round(one, 3),
            "realtime_one_threshold": round(duration / one),
            "with_sweep_and_plot_s": round(sum(t.values()), 3),
            "realtime_with_sweep_and_plot": round(duration / sum(t.values())),
        }

    report = {
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "inputs": source,
        "load_inputs_s (not counted)": round(load_s, 3),
        "audio_s": duration,
        **info,
        "thresholds": args.thresholds,
        "best_of": args.repeats,
        "stages_wall_s": {k: round(v, 3) for k, v in best_wall.items()},
        "stages_cpu_s": {k: round(v, 3) for k, v in best_cpu.items()},
        "wall": factors(best_wall),
        "cpu": factors(best_cpu),
        "recognizer_us_per_inference_cpu": round(1e6 * best_cpu["sweep"] / args.thresholds / info["inferences"], 2),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
