"""A toy speech corpus for fast pipeline tests: each "word" is a distinct tone pattern.

Speakers differ in pitch and loudness, so a speaker-disjoint split still has to
generalise. Layout matches Speech Commands: <word>/<speaker>_nohash_<n>.wav plus
_background_noise_/.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

SR = 16000

# word -> (start Hz, end Hz, number of syllables)
WORDS = {
    "go": (300.0, 900.0, 1),
    "stop": (1200.0, 400.0, 1),
    "yes": (600.0, 600.0, 2),
    "cat": (2000.0, 1500.0, 1),
    "dog": (500.0, 1800.0, 2),
    "tree": (900.0, 300.0, 3),
}


def word_audio(word: str, speaker: int, take: int, rng: np.random.Generator) -> np.ndarray:
    f0, f1, syllables = WORDS[word]
    pitch = 0.8 + 0.08 * (speaker % 6)
    dur = 0.45 + 0.05 * rng.random()
    n = int(dur * SR)
    t = np.arange(n) / SR
    freq = (f0 + (f1 - f0) * t / dur) * pitch
    phase = 2 * np.pi * np.cumsum(freq) / SR
    env = np.abs(np.sin(np.pi * syllables * t / dur))
    tone = np.sin(phase) + 0.3 * np.sin(2 * phase)
    x = np.zeros(SR, dtype=np.float32)
    start = int(rng.integers(1000, SR - n - 1000))
    x[start : start + n] = (0.3 + 0.2 * rng.random()) * env * tone
    x += 0.003 * rng.standard_normal(SR)
    return x.astype(np.float32)


def make_corpus(root: Path, words=tuple(WORDS), speakers: int = 12, takes: int = 4, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for word in words:
        (root / word).mkdir(exist_ok=True)
        for s in range(speakers):
            for k in range(takes):
                x = word_audio(word, s, k, rng)
                sf.write(root / word / f"spk{s:02d}_nohash_{k}.wav", x, SR, subtype="PCM_16")
    noise_dir = root / "_background_noise_"
    noise_dir.mkdir(exist_ok=True)
    for i in range(2):
        noise = 0.05 * rng.standard_normal(SR * 20)
        sf.write(noise_dir / f"noise{i}.wav", noise.astype(np.float32), SR, subtype="PCM_16")
    return root
