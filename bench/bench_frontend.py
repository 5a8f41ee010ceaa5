"""Front end throughput: Frontend.batch_features vs librosa.feature.mfcc on the same 1 s clips.

    python bench/bench_frontend.py [--clips 500] [--repeats 3]

Uses Speech Commands clips from ../shared/data/speech_commands when present (else
generated noise-and-tone clips). librosa runs per clip with settings equivalent to
the default spec (center=False, 512-point FFT, 480 window, 320 hop, 40 mels 20-4000
Hz, 10 coefficients); neither decodes audio, both get the same in-memory PCM. Also
times the per-clip path, hashing PCM for cache keys, and a warm FeatureCache read.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from kws_kit.audio_io import fit_length, load, to_int16
from kws_kit.features import FeatureCache, pcm_key
from kws_kit.frontend import Frontend, FrontendSpec

SHARED = Path(__file__).resolve().parents[2] / "shared/data/speech_commands"


def load_clips(n: int) -> tuple[np.ndarray, str]:
    files = sorted(p for p in SHARED.glob("*/*.wav") if not p.parent.name.startswith("_")) if SHARED.is_dir() else []
    if files:
        step = max(1, len(files) // n)
        chosen = files[::step][:n]
        pcm = np.stack([to_int16(fit_length(load(p), 16000)) for p in chosen])
        return pcm, f"{len(chosen)} Speech Commands clips"
    rng = np.random.default_rng(0)
    t = np.arange(16000) / 16000
    audio = 0.1 * rng.standard_normal((n, 16000)) + 0.3 * np.sin(2 * np.pi * rng.uniform(100, 3000, (n, 1)) * t)
    return to_int16(audio), f"{n} generated clips"


def best_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    import librosa

    spec = FrontendSpec()
    frontend = Frontend(spec)
    pcm, source = load_clips(args.clips)
    n = len(pcm)
    floats = pcm.astype(np.float32) * np.float32(spec.pcm_scale)

    def run_librosa():
        return np.stack(
            [
                librosa.feature.mfcc(
                    y=y, sr=16000, n_mfcc=spec.n_coeffs, n_fft=spec.n_fft, hop_length=spec.hop_length,
                    win_length=spec.window_length, window="hann", center=False, n_mels=spec.n_mels,
                    fmin=spec.fmin, fmax=spec.fmax,
                )
                for y in floats
            ]
        )

    frontend.batch_features(pcm[:4])  # warm-up: tables, FFT plans
    librosa.feature.mfcc(y=floats[0], sr=16000, n_fft=512, hop_length=320, win_length=480, center=False, n_mels=40)

    batch_s = best_time(lambda: frontend.batch_features(pcm), args.repeats)
    clip_s = best_time(lambda: [frontend.clip_features(c) for c in pcm], args.repeats)
    librosa_s = best_time(run_librosa, args.repeats)

    with tempfile.TemporaryDirectory() as tmp:
        cache = FeatureCache(tmp, spec)
        keys = [pcm_key(c) for c in pcm]
        cache.get_or_compute(keys, lambda pos: frontend.batch_features(pcm[pos]))
        cache_s = best_time(lambda: FeatureCache(tmp, spec).get_or_compute(keys, lambda pos: None), args.repeats)
    key_s = best_time(lambda: [pcm_key(c) for c in pcm], 1)

    results = {
        "clips": n,
        "source": source,
        "batch_features_clips_per_s": n / batch_s,
        "clip_features_clips_per_s": n / clip_s,
        "librosa_mfcc_clips_per_s": n / librosa_s,
        "speedup_batch_vs_librosa": librosa_s / batch_s,
        "cache_read_clips_per_s": n / cache_s,
        "pcm_key_clips_per_s": n / key_s,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "librosa": librosa.__version__,
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
    }
    width = max(map(len, results))
    for key, value in results.items():
        print(f"{key:<{width}}  {value:.1f}" if isinstance(value, float) else f"{key:<{width}}  {value}")
    print(json.dumps(results), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
