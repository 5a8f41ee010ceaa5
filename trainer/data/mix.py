"""Rendering manifest rows into one-second examples: fit, shift, gain, noise at an SNR.

The result is quantised to 16-bit, exactly what a 16-bit microphone would
deliver, so ``render(row)`` equals the materialised WAV sample for sample and
training sees the same numbers the device will.

Rendering many rows is vectorised per batch, reads plain 16-bit WAVs directly
as int16, keeps every noise file decoded once per process, and spreads batches
over worker processes ("fork", which starts fast, unless TensorFlow is loaded:
then "spawn", since forking TensorFlow's threads can deadlock the child).
"""

from __future__ import annotations

import mmap
import multiprocessing
import os
import struct
import sys
import threading
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Sequence

import numpy as np

from .. import audio_io, progress
from ..errors import AudioError
from .common import CLIP_SAMPLES, SAMPLE_RATE, SILENCE
from . import wavfile
from .manifest import ManifestRow

BATCH = 128
SERIAL_BELOW = 200  # fewer rows than this are rendered in-process (no pool start-up)

_NOISE_CACHE: dict[str, np.ndarray] = {}


def load_noise(path: str, cache: dict | None = None) -> np.ndarray:
    """The whole noise file at 16 kHz, decoded once and kept in ``cache``."""
    cache = _NOISE_CACHE if cache is None else cache
    x = cache.get(path)
    if x is None:
        x = wavfile.read_pcm16_mono(path, SAMPLE_RATE, 0.0, None)
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
    return audio_io.fit_length(_clip_samples(row), CLIP_SAMPLES)


def _clip_samples(row: ManifestRow) -> np.ndarray:
    """The row's clip as int16 (plain 16 kHz 16-bit mono WAV: no conversion) or float32 (any other file)."""
    duration = row.duration_s if row.duration_s > 0 else None
    x = wavfile.pcm16_mono_samples(row.path, SAMPLE_RATE, row.offset_s, duration)
    if x is None:
        x = audio_io.load(row.path, SAMPLE_RATE, row.offset_s, duration)
    return x


def place_clip(dest: np.ndarray, x: np.ndarray, shift: int) -> None:
    """Fill ``dest`` with clip ``x`` centre-cropped or zero-padded to ``len(dest)`` and then
    delayed by ``shift`` samples (negative: earlier), zeros elsewhere; int16 clips are
    scaled by 1/32768 on the way. One pass over ``dest``: the same numbers as
    ``fit_length`` followed by a shift, without the intermediate arrays."""
    n, m = len(dest), len(x)
    if m > n:
        crop = (m - n) // 2
        x, m, position = x[crop : crop + n], n, 0
    else:
        position = (n - m) // 2
    position += shift
    a, b = max(position, 0), min(position + m, n)
    if b <= a:
        dest.fill(0.0)
        return
    dest[:a] = 0.0
    dest[b:] = 0.0
    if x.dtype.kind == "i":  # int16 samples of a WAV (little-endian '<i2' on any host)
        np.multiply(x[a - position : b - position], wavfile.INT16_SCALE, out=dest[a:b])
    else:
        dest[a:b] = x[a - position : b - position]


def _power(x: np.ndarray) -> np.ndarray:
    """Mean square of each row of a (B, 16000) float32 array, as float64.

    Sums of squares over 1000-sample pieces in float32 (no float64 copy: 5x faster),
    then the 16 pieces in float64. A row gives the same bits whatever the batch
    size or its memory alignment (tested), so render() of one row equals the row
    rendered in a batch; the relative error (~1e-6) is far below one 16-bit step.
    """
    pieces = x.reshape(x.shape[0], -1, 1000)
    return np.einsum("ijk,ijk->ij", pieces, pieces).sum(axis=1, dtype=np.float64) / x.shape[1]


def mix_batch(rows: Sequence[ManifestRow], speech: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """Mix a batch: ``speech`` and ``noise`` are (B, 16000) float32; returns int16 (B, 16000).

    Speech rows: speech x gain, plus noise scaled so that speech RMS / noise RMS
    (over the whole second) is the row's SNR. ``_silence_`` rows: noise x gain.
    Both input arrays are used as scratch space and overwritten.
    """
    gain = np.power(10.0, np.array([r.gain_db for r in rows], dtype=np.float64) / 20.0)
    is_silence = np.array([r.label == SILENCE for r in rows], dtype=bool)
    snr = np.array([np.nan if r.snr_db is None else r.snr_db for r in rows], dtype=np.float64)
    speech_gain = np.where(is_silence, 0.0, gain)
    rms_speech = speech_gain * np.sqrt(_power(speech))
    rms_noise = np.sqrt(_power(noise))
    with np.errstate(divide="ignore", invalid="ignore"):
        snr_scale = rms_speech / (rms_noise * np.power(10.0, snr / 20.0))
    snr_scale = np.where(np.isfinite(snr_scale) & (rms_noise > 1e-9), snr_scale, 0.0)
    # The x32768 of the int16 conversion is folded into the gains: scaling by a power of
    # two is exact in float32, so the result is the same as scaling afterwards.
    noise *= (np.where(is_silence, gain, snr_scale).astype(np.float32) * np.float32(32768.0))[:, None]
    speech *= (speech_gain.astype(np.float32) * np.float32(32768.0))[:, None]
    noise += speech
    np.rint(noise, out=noise)
    np.clip(noise, -32768.0, 32767.0, out=noise)
    return noise.astype(np.int16)


_SCRATCH = threading.local()


def _scratch(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Speech and noise buffers for ``n`` rows, reused between full batches of a thread
    (fresh 8 MB arrays cost a page fault per 4 kB on every batch). Every row is
    overwritten by the caller."""
    buffers = getattr(_SCRATCH, "full_batch", None) if n == BATCH else None
    if buffers is None:
        buffers = (np.empty((n, CLIP_SAMPLES), dtype=np.float32), np.empty((n, CLIP_SAMPLES), dtype=np.float32))
        if n == BATCH:
            _SCRATCH.full_batch = buffers
    return buffers


def render_batch_int16(
    rows: Sequence[ManifestRow], cache: dict | None = None, skip_errors: bool = False
) -> tuple[np.ndarray, list[tuple[int, str]]]:
    """Render rows to int16 (B, 16000); with ``skip_errors`` unreadable rows come back as failures."""
    n = len(rows)
    speech, noise = _scratch(n)
    failures: list[tuple[int, str]] = []
    for i, row in enumerate(rows):
        try:
            if row.path:
                place_clip(speech[i], _clip_samples(row), row.shift_samples)
            else:
                speech[i] = 0.0
            if row.noise_path:
                noise[i] = noise_segment(load_noise(row.noise_path, cache), row.noise_offset_s)
            else:
                noise[i] = 0.0
        except AudioError as exc:
            speech[i] = 0.0
            noise[i] = 0.0
            if not skip_errors:
                raise
            failures.append((i, exc.one_line()))
    return mix_batch(rows, speech, noise), failures


def render(row: ManifestRow, cache: dict | None = None) -> np.ndarray:
    """One example as float32 (16000,) in [-1, 1): deterministic from the row's parameters."""
    pcm, _ = render_batch_int16([row], cache)
    return pcm[0].astype(np.float32) / np.float32(32768.0)


def wav_header(frames: int, sample_rate: int = SAMPLE_RATE) -> bytes:
    """The 44-byte header of a 16-bit mono PCM WAV file (the layout soundfile writes)."""
    size = frames * 2
    return struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF", 36 + size, b"WAVE", b"fmt ", 16, 1, 1, sample_rate, sample_rate * 2, 2, 16, b"data", size,
    )


def wav_bytes(pcm: np.ndarray, sample_rate: int = SAMPLE_RATE) -> bytes:
    """A whole 16-bit mono PCM WAV file as bytes."""
    data = np.ascontiguousarray(pcm, dtype="<i2")
    return wav_header(len(data), sample_rate) + data.tobytes()


# --------------------------------------------------------------------------- many rows


# Output of render_many in a forked pool: an anonymous shared mapping created before the
# workers are forked, so they write their rows in place instead of pickling them back.
_SHARED_OUT: np.ndarray | None = None


def _render_job(
    rows: list[ManifestRow], out_root: str | None, start: int = 0
) -> tuple[np.ndarray | None, list[tuple[int, str]]]:
    """Worker: render a batch; write WAVs under ``out_root``, or rows into the shared
    output, or return the int16 samples."""
    pcm, failures = render_batch_int16(rows, skip_errors=out_root is not None)
    if out_root is None:
        if _SHARED_OUT is not None:
            np.multiply(pcm, np.float32(1.0 / 32768.0), out=_SHARED_OUT[start : start + len(rows)], casting="unsafe")
            return None, failures
        return pcm, failures
    failed = {i for i, _ in failures}
    made: set[str] = set()
    header = wav_header(CLIP_SAMPLES)
    little_endian = np.ascontiguousarray(pcm, dtype="<i2")
    # One create (exclusive: the output folder is fresh, nothing is overwritten) and one
    # gathered write per file; creating the file is most of the cost on a real disk.
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for i, row in enumerate(rows):
        if i in failed:
            continue
        target = os.path.join(out_root, row.wav)
        folder = os.path.dirname(target)
        if folder not in made:
            os.makedirs(folder, exist_ok=True)
            made.add(folder)
        fd = os.open(target, flags, 0o644)
        try:
            _write_all(fd, header, little_endian[i].data)
        finally:
            os.close(fd)
    return None, failures


def _write_all(fd: int, header: bytes, samples: memoryview) -> None:
    """Write header + samples to ``fd``, in one system call where the platform has writev."""
    if hasattr(os, "writev"):
        written = os.writev(fd, [header, samples])
        if written == len(header) + samples.nbytes:
            return
        rest = (header + bytes(samples))[written:]  # a short write: finish it plainly
    else:
        rest = header + bytes(samples)
    view = memoryview(rest)
    while view:
        view = view[os.write(fd, view) :]


def default_workers() -> int:
    return max(1, min(2, os.cpu_count() or 1))


def _pool_context():
    """fork where it is safe (quick start, inherits imports); spawn once TensorFlow is loaded,
    since forking a process with TensorFlow's threads running can deadlock the child."""
    methods = multiprocessing.get_all_start_methods()
    if "fork" in methods and "tensorflow" not in sys.modules and sys.platform.startswith("linux"):
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


def _run(rows: list[ManifestRow], workers: int | None, out_root: str | None, description: str, context=None):
    """Render ``rows`` in batches; yields (start index, pcm or None, failures) per batch."""
    batches = [(i, rows[i : i + BATCH]) for i in range(0, len(rows), BATCH)]
    workers = default_workers() if workers is None else max(1, int(workers))
    if workers == 1 or len(rows) < SERIAL_BELOW:
        with progress.make_progress() as bar:
            task = bar.add_task(description, total=len(rows))
            for start, batch in batches:
                pcm, failures = _render_job(batch, out_root, start)
                bar.advance(task, len(batch))
                yield start, pcm, failures
        return
    # The pool starts before the progress bar's refresh thread exists (fork copies no running threads).
    with ProcessPoolExecutor(max_workers=workers, mp_context=context or _pool_context()) as pool:
        futures = {pool.submit(_render_job, batch, out_root, start): (start, len(batch)) for start, batch in batches}
        with progress.make_progress() as bar:
            task = bar.add_task(description, total=len(rows))
            for future in as_completed(futures):
                start, size = futures[future]
                pcm, failures = future.result()
                bar.advance(task, size)
                yield start, pcm, failures


def render_many(rows: Sequence[ManifestRow], workers: int | None = None) -> np.ndarray:
    """Render rows to float32 (N, 16000), over ``workers`` processes (default: up to 2)."""
    global _SHARED_OUT
    rows = list(rows)
    shape = (len(rows), CLIP_SAMPLES)
    context = _pool_context()
    pooled = (default_workers() if workers is None else workers) > 1 and len(rows) >= SERIAL_BELOW
    if pooled and context.get_start_method() == "fork":
        # The array keeps the mapping alive; no copy is made when the workers are done.
        out = np.frombuffer(mmap.mmap(-1, shape[0] * shape[1] * 4), dtype=np.float32).reshape(shape)
        _SHARED_OUT = out
        try:
            for _ in _run(rows, workers, None, "rendering", context):
                pass
        finally:
            _SHARED_OUT = None
        return out
    out = np.empty(shape, dtype=np.float32)
    for start, pcm, _ in _run(rows, workers, None, "rendering", context):
        if pcm is not None:
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
