"""Shared pieces for the front end tests: an independent slow per-frame implementation.

It reads only a frontend.json dict (spec + sparse tables), as a board does, and
uses what ulab 6 offers: a full complex ``np.fft.fft`` (no rfft), elementwise
float32 arithmetic, and plain loops for the sparse mel sums and the DCT.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

GOLDEN = Path(__file__).resolve().parent / "golden"
SPEECH_COMMANDS = Path(__file__).resolve().parents[2] / "shared/data/speech_commands"


def relative_error(a, b) -> float:
    """max over frames of max|a-b| / max(1, max|b|) (robust near zero, scale-aware for big c0)."""
    a = np.atleast_2d(np.asarray(a, dtype=np.float64))
    b = np.atleast_2d(np.asarray(b, dtype=np.float64))
    assert a.shape == b.shape, (a.shape, b.shape)
    per_frame = np.abs(a - b).max(axis=-1) / np.maximum(1.0, np.abs(b).max(axis=-1))
    return float(per_frame.max())


def slow_frame(pcm_frame, bundle: dict) -> list[float]:
    """Features of one frame the way a board computes them, from frontend.json alone."""
    W, N = bundle["window_length"], bundle["n_fft"]
    tables = bundle["tables"]
    window = np.array([0.5 - 0.5 * math.cos(2 * math.pi * n / W) for n in range(W)], dtype=np.float32)
    buffer = np.zeros(N, dtype=np.float32)
    buffer[:W] = np.asarray(pcm_frame, dtype=np.float32) * np.float32(bundle["pcm_scale"]) * window
    spectrum = np.fft.fft(buffer)  # full 512-point complex FFT, as ulab's np.fft.fft
    used = tables["bins_used"]
    power = spectrum.real[:used] ** 2 + spectrum.imag[:used] ** 2
    log_mel = []
    for start, weights in zip(tables["mel_starts"], tables["mel_weights"]):
        energy = 0.0
        for i, w in enumerate(weights):
            energy += float(power[start + i]) * w
        log_mel.append(math.log(max(energy, bundle["log_floor"])))
    if bundle["kind"] == "logmel":
        return log_mel
    M = bundle["n_mels"]
    coeffs = []
    for k in range(bundle["n_coeffs"]):
        norm = math.sqrt((1.0 if k == 0 else 2.0) / M)
        coeffs.append(norm * sum(log_mel[m] * math.cos(math.pi * k * (2 * m + 1) / (2 * M)) for m in range(M)))
    return coeffs


def slow_clip(pcm, bundle: dict) -> np.ndarray:
    W, H = bundle["window_length"], bundle["hop_length"]
    n_frames = 1 + (bundle["clip_samples"] - W) // H
    return np.array([slow_frame(pcm[k * H : k * H + W], bundle) for k in range(n_frames)], dtype=np.float64)
