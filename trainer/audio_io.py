"""Reading and writing audio: anything soundfile reads becomes 16 kHz mono float32.

8-bit, 24-bit, float and stereo files, and other sample rates, are converted, not
rejected. Files that cannot be decoded raise :class:`AudioError` with the reason.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import soundfile as sf

from . import atomic
from .errors import AudioError

SAMPLE_RATE = 16000
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".mp3", ".aif", ".aiff")  # what libsndfile >= 1.1 reads


def is_audio_name(path: str | os.PathLike) -> bool:
    # os.path, not pathlib: called once per file when scanning, and 5x cheaper
    return os.path.splitext(os.fspath(path))[1].lower() in AUDIO_SUFFIXES


def info(path: str | os.PathLike) -> tuple[int, int, int]:
    """(sample rate, channels, frames) from the header, without decoding."""
    try:
        i = sf.info(str(path))
    except Exception as exc:  # soundfile raises several types for bad files
        raise AudioError(f"{path}: not a readable audio file ({_reason(exc)})") from exc
    return i.samplerate, i.channels, i.frames


def load(
    path: str | os.PathLike,
    sample_rate: int = SAMPLE_RATE,
    offset: float = 0.0,
    duration: float | None = None,
) -> np.ndarray:
    """Decode ``path`` to mono float32 in [-1, 1] at ``sample_rate``.

    ``offset`` and ``duration`` are in seconds of the file's own timeline.
    """
    try:
        with sf.SoundFile(str(path)) as f:
            native = f.samplerate
            start = int(round(offset * native))
            if start:
                f.seek(min(start, f.frames))
            frames = -1 if duration is None else int(round(duration * native))
            data = f.read(frames=frames, dtype="float32", always_2d=True)
    except Exception as exc:
        raise AudioError(f"{path}: not a readable audio file ({_reason(exc)})") from exc
    if data.size == 0:
        raise AudioError(f"{path}: contains no audio samples")
    mono = data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]
    if not np.all(np.isfinite(mono)):
        raise AudioError(f"{path}: contains NaN or infinite samples")
    if native != sample_rate:
        mono = resample(mono, native, sample_rate)
    return np.ascontiguousarray(mono, dtype=np.float32)


def resample(x: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    import librosa  # imported lazily: slow to import and only needed for odd rates

    return librosa.resample(x.astype(np.float32), orig_sr=from_rate, target_sr=to_rate, res_type="soxr_hq").astype(
        np.float32
    )


def to_int16(x: np.ndarray) -> np.ndarray:
    """Float [-1, 1] to int16 PCM with rounding and clipping (as a 16-bit mic would)."""
    return np.clip(np.rint(np.asarray(x, dtype=np.float64) * 32768.0), -32768, 32767).astype(np.int16)


def save_wav(path: str | os.PathLike, x: np.ndarray, sample_rate: int = SAMPLE_RATE) -> Path:
    """Write 16-bit PCM WAV atomically."""
    pcm = x if x.dtype == np.int16 else to_int16(x)
    with atomic.output_file(path, suffix=".wav") as tmp:
        sf.write(str(tmp), pcm, sample_rate, subtype="PCM_16", format="WAV")
    return Path(path)


def fit_length(x: np.ndarray, length: int) -> np.ndarray:
    """Centre-crop or zero-pad (both sides equally) to ``length`` samples."""
    n = len(x)
    if n == length:
        return x
    if n > length:
        start = (n - length) // 2
        return x[start : start + length]
    out = np.zeros(length, dtype=x.dtype)
    start = (length - n) // 2
    out[start : start + n] = x
    return out


def _reason(exc: Exception) -> str:
    text = " ".join(str(exc).split())
    # libsndfile prefixes messages with the path; keep only the reason.
    if ":" in text and str(text).startswith("Error opening"):
        text = text.rsplit(":", 1)[-1].strip()
    return text or type(exc).__name__
