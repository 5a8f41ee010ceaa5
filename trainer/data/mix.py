"""Rendering manifest rows into one-second examples: fit, shift, gain, noise at an SNR.

The result is quantised to 16-bit, exactly what a 16-bit microphone would
deliver, so ``render(row)`` equals the materialised WAV sample for sample and
training sees the same numbers the device will.

Rendering many rows is vectorised per batch, keeps every noise file decoded
once per process, and spreads batches over worker processes ("spawn", so it is
safe to call from a process that already runs TensorFlow).
"""

from __future__ import annotations

import multiprocessing
import os
import struct
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Sequence

import numpy as np

from .. import audio_io, progress
from ..errors import AudioError
from .common import CLIP_SAMPLES, SAMPLE_RATE, SILENCE
from .manifest import ManifestRow

BATCH = 128
SERIAL_BELOW = 200  # fewer rows than this are rendered in-process (no pool start-up)

_NOISE_CACHE: dict[str, np.ndarray] = {}


def load_noise(path: str, cache: dict | None = None) -> np.ndarray:
    """The whole noise file at 16 kHz, decoded once and kept in ``cache``."""
    cache = _NOISE_CACHE if cache is None else cache
    x = cache.get(path)
    if x is None:
        x = audio_io.load(path)
        cache[path] = x
    return x


def noise_segment(noise: np.ndarray, offset_s: float, length: int = CLIP_SAMPLES) -> np.ndarray:
    """``length`` samples from ``offset_s``; a file shorter than that is repeated."""
    start = int(round(offset_s * SAMPLE_RATE))
    if start + length <= len(noise):
        return noise[start : start + length]
    return np.take(noise, np.arange(start, start + length), mode="wrap")


def speech_samples(row: ManifestRow) -> np.ndarray:
    """The row's clip at 16 kHz, centre-cropped or zero-padded to one second."""
    x = audio_io.load(row.path, SAMPLE_RATE, row.offset_s, row.duration_s if row.duration_s > 0 else None)
    return audio_io.fit_length(x, CLIP_SAMPLES)


def _shift(x: np.ndarray, shift: int) -> np.ndarray:
    if shift == 0:
        return x
    out = np.zeros_like(x)
    if shift > 0:
        out[shift:] = x[:-shift]
    else:
        out[:shift] = x[-shift:]
    return out


def mix_batch(rows: Sequence[ManifestRow], speech: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """Mix a batch: ``speech`` and ``noise`` are (B, 16000) float32; returns int16 (B, 16000).

    Speech rows: speech x gain, plus noise scaled so that speech RMS / noise RMS
    (over the whole second) is the row's SNR. ``_silence_`` rows: noise x gain.
    """
    gain = np.power(10.0, np.array([r.gain_db for r in rows], dtype=np.float64) / 20.0)
    is_silence = np.array([r.label == SILENCE for r in rows], dtype=bool)
    snr = np.array([np.nan if r.snr_db is None else r.snr_db for r in rows], dtype=np.float64)
    speech_gain = np.where(is_silence, 0.0, gain).astype(np.float32)
    speech = speech * speech_gain[:, None]
    rms_speech = np.sqrt(np.mean(np.square(speech, dtype=np.float64), axis=1))
    rms_noise = np.sqrt(np.mean(np.square(noise, dtype=np.float64), axis=1))
    with np.errstate(divide="ignore", invalid="ignore"):
        snr_scale = rms_speech / (rms_noise * np.power(10.0, snr / 20.0))
    snr_scale = np.where(np.isfinite(snr_scale) & (rms_noise > 1e-9), snr_scale, 0.0)
    noise_scale = np.where(is_silence, gain, snr_scale).astype(np.float32)
    mixed = speech + noise * noise_scale[:, None]
    return audio_io.to_int16(mixed)


def render_batch_int16(
    rows: Sequence[ManifestRow], cache: dict | None = None, skip_errors: bool = False
) -> tuple[np.ndarray, list[tuple[int, str]]]:
    """Render rows to int16 (B, 16000); with ``skip_errors`` unreadable rows come back as failures."""
    n = len(rows)
    speech = np.zeros((n, CLIP_SAMPLES), dtype=np.float32)
    noise = np.zeros((n, CLIP_SAMPLES), dtype=np.float32)
    failures: list[tuple[int, str]] = []
    for i, row in enumerate(rows):
        try:
            if row.path:
                speech[i] = _shift(speech_samples(row), row.shift_samples)
            if row.noise_path:
                noise[i] = noise_segment(load_noise(row.noise_path, cache), row.noise_offset_s)
        except AudioError as exc:
            if not skip_errors:
                raise
            failures.append((i, exc.one_line()))
    return mix_batch(rows, speech, noise), failures


def render(row: ManifestRow, cache: dict | None = None) -> np.ndarray:
    """One example as float32 (16000,) in [-1, 1): deterministic from the row's parameters."""
    pcm, _ = render_batch_int16([row], cache)
    return pcm[0].astype(np.float32) / np.float32(32768.0)


def wav_bytes(pcm: np.ndarray, sample_rate: int = SAMPLE_RATE) -> bytes:
    """A 16-bit mono PCM WAV file as bytes (the same layout soundfile writes)."""
    data = np.ascontiguousarray(pcm, dtype="<i2").tobytes()
    header = struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF",
        36 + len(data),
        b"WAVE",
        b"fmt ",
        16,
        1,
        1,
        sample_rate,
        sample_rate * 2,
        2,
        16,
        b"data",
        len(data),
    )
    return header + data


# --------------------------------------------------------------------------- many rows


def _render_job(rows: list[ManifestRow], out_root: str | None) -> tuple[np.ndarray | None, list[tuple[int, str]]]:
    """Worker: render a batch; write WAVs under ``out_root`` (then return no audio)."""
    pcm, failures = render_batch_int16(rows, skip_errors=out_root is not None)
    if out_root is None:
        return pcm, failures
    failed = {i for i, _ in failures}
    for i, row in enumerate(rows):
        if i not in failed:
            target = Path(out_root) / row.wav
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(target, "wb") as f:
                f.write(wav_bytes(pcm[i]))
    return None, failures


def default_workers() -> int:
    return max(1, min(2, os.cpu_count() or 1))


def _run(rows: list[ManifestRow], workers: int | None, out_root: str | None, description: str):
    """Render ``rows`` in batches; yields (start index, pcm or None, failures) per batch."""
    batches = [(i, rows[i : i + BATCH]) for i in range(0, len(rows), BATCH)]
    workers = default_workers() if workers is None else max(1, int(workers))
    with progress.make_progress() as bar:
        task = bar.add_task(description, total=len(rows))
        if workers == 1 or len(rows) < SERIAL_BELOW:
            for start, batch in batches:
                pcm, failures = _render_job(batch, out_root)
                bar.advance(task, len(batch))
                yield start, pcm, failures
            return
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            futures = {pool.submit(_render_job, batch, out_root): (start, len(batch)) for start, batch in batches}
            for future in as_completed(futures):
                start, size = futures[future]
                pcm, failures = future.result()
                bar.advance(task, size)
                yield start, pcm, failures


def render_many(rows: Sequence[ManifestRow], workers: int | None = None) -> np.ndarray:
    """Render rows to float32 (N, 16000), over ``workers`` processes (default: up to 2)."""
    rows = list(rows)
    out = np.empty((len(rows), CLIP_SAMPLES), dtype=np.float32)
    for start, pcm, _ in _run(rows, workers, None, "rendering"):
        np.multiply(pcm, np.float32(1.0 / 32768.0), out=out[start : start + len(pcm)], casting="unsafe")
    return out


def materialize(rows: Sequence[ManifestRow], root: str | os.PathLike, workers: int | None = None) -> dict[str, str]:
    """Write each row's WAV to ``root / row.wav``; returns {row id: reason} for rows that failed."""
    rows = list(rows)
    failed: dict[str, str] = {}
    for start, _, failures in _run(rows, workers, str(root), "writing WAVs"):
        for i, reason in failures:
            failed[rows[start + i].id] = reason
    return failed
