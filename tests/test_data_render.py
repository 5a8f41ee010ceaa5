"""Rendering pieces: clip placement, per-row power, and writing materialised WAVs."""

from __future__ import annotations

import os

import numpy as np
import soundfile as sf

import pytest

from kws_kit import audio_io
from kws_kit.data import mix


def _reference_placement(x: np.ndarray, shift: int) -> np.ndarray:
    """fit_length, then a zero-filled shift: the definition place_clip must match."""
    if x.dtype == np.int16:
        x = x.astype(np.float32) / np.float32(32768.0)
    fitted = audio_io.fit_length(x, 16000)
    out = np.zeros(16000, dtype=np.float32)
    if shift >= 0:
        out[shift:] = fitted[: 16000 - shift]
    else:
        out[: 16000 + shift] = fitted[-shift:]
    return out


@pytest.mark.parametrize("length", [1, 799, 8000, 15999, 16000, 16001, 23999, 40000])
@pytest.mark.parametrize("shift", [-1600, -1, 0, 1, 1600])
@pytest.mark.parametrize("dtype", [np.int16, np.float32])
def test_place_clip_is_fit_then_shift(length, shift, dtype):
    rng = np.random.default_rng(length)
    x = rng.integers(-32768, 32768, length).astype(np.int16)
    if dtype == np.float32:
        x = x.astype(np.float32) / 40000
    dest = np.full(16000, 7.0, dtype=np.float32)  # stale values from a previous batch must go
    mix.place_clip(dest, x, shift)
    assert np.array_equal(dest, _reference_placement(x, shift))


def test_row_power_does_not_depend_on_batch_size_or_alignment():
    rng = np.random.default_rng(3)
    batch = (rng.standard_normal((64, 16000)) * np.logspace(-4, 0, 64)[:, None]).astype(np.float32)
    expected = mix._power(batch)
    assert np.allclose(expected, np.mean(batch.astype(np.float64) ** 2, axis=1), rtol=1e-5)
    for n in (1, 2, 5, 64):
        for offset in range(4):  # rows that start 0, 4, 8, 12 bytes past an aligned address
            storage = np.empty(n * 16000 + 4, dtype=np.float32)
            rows = storage[offset : offset + n * 16000].reshape(n, 16000)
            rows[:] = batch[:n]
            assert np.array_equal(mix._power(rows), expected[:n]), (n, offset)


def _write(tmp_path, monkeypatch, chunk: int | None):
    pcm = (np.arange(16000, dtype=np.int64) % 65536 - 32768).astype("<i2")
    header = mix.wav_header(len(pcm))
    if chunk is not None:  # a file system that accepts only `chunk` bytes per call
        real_write, real_writev = os.write, os.writev
        monkeypatch.setattr(os, "writev", lambda fd, bufs: real_write(fd, b"".join(bytes(b) for b in bufs)[:chunk]))
        monkeypatch.setattr(os, "write", lambda fd, data: real_write(fd, bytes(data)[:chunk]))
        assert real_writev  # the real one stays reachable for other tests
    path = tmp_path / "x.wav"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        mix._write_all(fd, header, memoryview(pcm).cast("B"))
    finally:
        os.close(fd)
    monkeypatch.undo()
    data, rate = sf.read(str(path), dtype="int16")
    assert rate == 16000 and np.array_equal(data, pcm)
    assert path.read_bytes() == header + pcm.tobytes()


def test_whole_file_in_one_write(tmp_path, monkeypatch):
    _write(tmp_path, monkeypatch, None)


def test_short_writes_are_finished(tmp_path, monkeypatch):
    _write(tmp_path, monkeypatch, 1000)
