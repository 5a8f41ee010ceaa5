"""Shared test fixtures: generated audio ("words" as tone bursts), word folders, the shared data."""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

os.environ.setdefault("KWS_NO_PROGRESS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SHARED_SPEECH_COMMANDS = Path(__file__).resolve().parents[2] / "shared/data/speech_commands"


def tone_word(word: str, seed: int = 0, sr: int = 16000, seconds: float = 1.0, length_s: float = 0.45) -> np.ndarray:
    """A fake spoken word: a harmonic tone burst whose pitch depends on the word, in low noise."""
    rng = np.random.default_rng([seed, zlib.crc32(word.encode())])
    n = int(seconds * sr)
    x = rng.normal(0.0, 0.002, n)
    m = int(length_s * sr)
    start = (n - m) // 2 if n > m else 0
    m = min(m, n)
    t = np.arange(m) / sr
    f0 = 150 + (zlib.crc32(word.encode()) % 200) + rng.uniform(-10, 10)
    burst = sum(np.sin(2 * np.pi * f0 * h * t) / h for h in (1, 2, 3))
    x[start : start + m] += 0.25 * burst * np.hanning(m)
    return x.astype(np.float32)


def write_audio(path: Path, x: np.ndarray, sr: int = 16000, subtype: str = "PCM_16", fmt: str | None = None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), x, sr, subtype=subtype, format=fmt)
    return path


def make_word_folder(
    root: Path,
    words: dict[str, int],
    speakers: list[str],
    noise_seconds: float | None = 12.0,
    seed: int = 0,
) -> Path:
    """A Speech-Commands-style tree: ``words[w]`` clips per speaker of each word, plus noise."""
    root = Path(root)
    for w, per_speaker in words.items():
        for s in speakers:
            for n in range(per_speaker):
                write_audio(root / w / f"{s}_nohash_{n}.wav", tone_word(w, seed=zlib.crc32(f"{s}{n}".encode()) + seed))
    if noise_seconds:
        rng = np.random.default_rng(seed)
        write_audio(root / "_background_noise_" / "hum.wav", (0.05 * rng.standard_normal(int(noise_seconds * 16000))).astype(np.float32))
    return root


@pytest.fixture
def word_folder(tmp_path):
    """Factory: ``word_folder(words={'go': 2}, speakers=[...])`` -> path of a generated source."""

    def make(name="src", words=None, speakers=None, **kwargs):
        words = words or {"go": 2, "stop": 2, "up": 1, "down": 1, "left": 1}
        speakers = speakers or [f"spk{i:02d}" for i in range(12)]
        return make_word_folder(tmp_path / name, words, speakers, **kwargs)

    return make


@pytest.fixture
def shared_speech_commands() -> Path:
    if not (SHARED_SPEECH_COMMANDS / "README.md").is_file():
        pytest.skip("shared Speech Commands data not present")
    return SHARED_SPEECH_COMMANDS
