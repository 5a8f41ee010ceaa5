"""Synthetic speech with espeak-ng: many voices saying your keywords, cached as WAV files.

espeak-ng comes with the ``espeakng-loader`` wheel (the shared library and its
voice data); it is driven through ctypes in synchronous mode, with a callback
collecting the samples. Every *speaker* is one espeak voice plus one variant
(``en-us+f2``: US English, female variant 2) and says each word at random
rate, pitch and pitch range. Clips are resampled from espeak's 22.05 kHz to
16 kHz, trimmed, peak-normalised and centred in one second.

The cache folder looks like Speech Commands: ``<word>/<speaker>_nohash_<n>.wav``
plus ``synth.json`` (what each file is) and ``_background_noise_/`` (generated
white, pink and brown noise, since synthetic speech has none). espeak's
output varies slightly between calls, so clips are generated once and kept:
running again only adds the missing ones.
"""

from __future__ import annotations

import ctypes
import json
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import atomic, audio_io, progress
from ..errors import KwsError
from .common import BACKGROUND_NOISE, CLIP_SAMPLES, NOHASH, SAMPLE_RATE, safe_speaker_id

SYNTH_JSON = "synth.json"

# English accents first, then other languages' voices reading the English word
# (a different phonology is a cheap source of speaker variety).
DEFAULT_VOICES = [
    "en", "en-us", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-us-nyc", "en-gb-x-gbclan", "en-gb-x-gbcwmd",
    "de", "nl", "fr", "es", "it", "pt", "sv", "pl",
]
DEFAULT_VARIANTS = ["", "m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5"]
RATE_WPM = (130, 210)  # espeak default is 175
PITCH = (25, 75)  # 0-100, default 50
PITCH_RANGE = (30, 90)  # 0-100, default 50
PEAK_DBFS = (-9.0, -1.0)
NOISE_SECONDS = 30

# espeak-ng constants (speak_lib.h)
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000
_CHARS_UTF8 = 1
_POS_CHARACTER = 1
_RATE, _PITCH, _RANGE = 1, 3, 4


class _Espeak:
    """The process-wide espeak-ng engine (the library keeps global state)."""

    _instance: "_Espeak | None" = None
    _lock = threading.Lock()

    @classmethod
    def get(cls) -> "_Espeak":
        with cls._lock:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    def __init__(self) -> None:
        try:
            import espeakng_loader
        except ImportError as exc:
            raise KwsError("espeak-ng is not available", hint="pip install espeakng-loader") from exc
        try:
            lib = ctypes.CDLL(espeakng_loader.get_library_path())
            self.data_path = Path(espeakng_loader.get_data_path())
        except (OSError, RuntimeError) as exc:
            raise KwsError(f"cannot load espeak-ng: {exc}", hint="reinstall espeakng-loader") from exc
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [
            ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint, ctypes.c_uint,
            ctypes.c_void_p, ctypes.c_void_p,
        ]
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_Info.argtypes = [ctypes.c_void_p]
        lib.espeak_Info.restype = ctypes.c_char_p
        self.sample_rate = lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, 0, str(self.data_path).encode(), _INITIALIZE_DONT_EXIT
        )
        if self.sample_rate <= 0:
            raise KwsError(f"espeak-ng failed to initialise (data at {self.data_path})")
        self.version = (lib.espeak_Info(None) or b"?").decode()
        self._chunks: list[np.ndarray] = []
        callback_type = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)
        self._callback = callback_type(self._collect)  # keep a reference: espeak calls it later
        lib.espeak_SetSynthCallback(self._callback)
        self.lib = lib
        self.variants = {p.name for p in (self.data_path / "voices" / "!v").iterdir()}

    def _collect(self, wav, count, events) -> int:
        if count > 0 and wav:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(count,)).copy())
        return 0  # 0 = carry on

    def check_voice(self, voice: str) -> None:
        with self._lock:
            if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
                raise KwsError(f"unknown espeak voice {voice!r}", hint="e.g. en, en-us, en-gb-scotland, de, fr")

    def synthesize(self, text: str, voice: str, variant: str, rate: int, pitch: int, pitch_range: int) -> np.ndarray:
        """int16 samples at ``self.sample_rate``."""
        if variant and variant not in self.variants:
            raise KwsError(f"unknown espeak variant {variant!r}", hint=f"e.g. {', '.join(sorted(self.variants)[:8])}")
        name = f"{voice}+{variant}" if variant else voice
        with self._lock:
            if self.lib.espeak_SetVoiceByName(name.encode()) != 0:
                raise KwsError(f"unknown espeak voice {voice!r}", hint="e.g. en, en-us, en-gb-scotland, de, fr")
            self.lib.espeak_SetParameter(_RATE, int(rate), 0)
            self.lib.espeak_SetParameter(_PITCH, int(pitch), 0)
            self.lib.espeak_SetParameter(_RANGE, int(pitch_range), 0)
            self._chunks = []
            data = text.encode("utf-8") + b"\0"
            buffer = ctypes.create_string_buffer(data, len(data))
            status = self.lib.espeak_Synth(buffer, len(data), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
            if status != 0:
                raise KwsError(f"espeak-ng could not speak {text!r} with voice {name} (status {status})")
            chunks, self._chunks = self._chunks, []
        return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)


@dataclass(frozen=True)
class SynthVoice:
    voice: str
    variant: str

    @property
    def speaker(self) -> str:
        return safe_speaker_id("espeak-" + self.voice + (f"-{self.variant}" if self.variant else ""))


def speakers(voices: list[str] | None = None, variants: list[str] | None = None, seed: int = 0) -> list[SynthVoice]:
    """Every voice x variant, in a seed-dependent but fixed order."""
    combos = [SynthVoice(v, var) for v in (voices or DEFAULT_VOICES) for var in (variants if variants is not None else DEFAULT_VARIANTS)]
    order = np.random.default_rng(seed).permutation(len(combos))
    return [combos[i] for i in order]


def _trim(x: np.ndarray, relative_db: float = -40.0) -> np.ndarray:
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    if peak <= 0:
        return x[:0]
    loud = np.flatnonzero(np.abs(x) > peak * 10 ** (relative_db / 20))
    return x[loud[0] : loud[-1] + 1]


def render_word(engine: _Espeak, word: str, voice: SynthVoice, rate: int, pitch: int, pitch_range: int, peak_db: float):
    """One 16 kHz one-second clip of ``word`` (float32), and the speaking rate finally used."""
    from scipy.signal import resample_poly

    for _ in range(4):
        raw = engine.synthesize(word, voice.voice, voice.variant, rate, pitch, pitch_range)
        x = raw.astype(np.float32) / 32768.0
        if engine.sample_rate != SAMPLE_RATE:
            g = np.gcd(SAMPLE_RATE, engine.sample_rate)
            x = resample_poly(x, SAMPLE_RATE // g, engine.sample_rate // g).astype(np.float32)
        x = _trim(x)
        if len(x) <= 0.95 * CLIP_SAMPLES:
            break
        rate = int(rate * 1.3)  # too long for one second: speak faster
    if x.size == 0:
        raise KwsError(f"espeak-ng produced no audio for {word!r} with voice {voice.voice}+{voice.variant}")
    x = x * (10 ** (peak_db / 20) / float(np.max(np.abs(x))))
    return audio_io.fit_length(x.astype(np.float32), CLIP_SAMPLES), rate


def _clip_params(seed: int, word: str, index: int) -> dict:
    rng = np.random.default_rng([seed, zlib.crc32(word.encode("utf-8")), index])
    return {
        "rate": int(rng.integers(RATE_WPM[0], RATE_WPM[1] + 1)),
        "pitch": int(rng.integers(PITCH[0], PITCH[1] + 1)),
        "range": int(rng.integers(PITCH_RANGE[0], PITCH_RANGE[1] + 1)),
        "peak_dbfs": round(float(rng.uniform(*PEAK_DBFS)), 2),
    }


def _check_word(word: str) -> str:
    w = " ".join(word.strip().lower().split())
    if not w or w.startswith(("_", ".")) or any(ch in w for ch in "/\\:*?\"<>|"):
        raise KwsError(f"invalid word {word!r}", hint="use plain words such as go,stop")
    return w


def _load_index(dest: Path) -> dict:
    path = dest / SYNTH_JSON
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise KwsError(f"{path} is unreadable ({exc})", hint="move it away to start a fresh synth cache") from exc


def _write_index(dest: Path, index: dict) -> None:
    index["clips"] = dict(sorted(index.get("clips", {}).items()))
    atomic.write_text(dest / SYNTH_JSON, json.dumps(index, indent=2, ensure_ascii=False) + "\n")


def generated_noise(kind: str, seconds: float, seed: int) -> np.ndarray:
    """White, pink (1/f) or brown (1/f^2) noise at about -26 dBFS RMS."""
    rng = np.random.default_rng([seed, zlib.crc32(kind.encode())])
    n = int(seconds * SAMPLE_RATE)
    white = rng.standard_normal(n)
    if kind == "white":
        x = white
    else:
        spectrum = np.fft.rfft(white)
        f = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
        f[0] = f[1]
        spectrum /= f ** (0.5 if kind == "pink" else 1.0)
        x = np.fft.irfft(spectrum, n)
    x = x / np.sqrt(np.mean(x**2)) * 10 ** (-26 / 20)
    return np.clip(x, -1, 1).astype(np.float32)


def synthesize(
    words: list[str],
    count: int,
    dest: str | Path,
    *,
    seed: int = 0,
    voices: list[str] | None = None,
    variants: list[str] | None = None,
    noise: bool = True,
) -> dict[str, int]:
    """Make sure ``dest/<word>/`` holds ``count`` synthetic clips of every word.

    Clip ``k`` of a word is spoken by speaker ``k mod S`` (S voice x variant
    combinations) with rate/pitch drawn from (seed, word, k). Existing files are
    kept; returns how many new clips each word got.
    """
    if count < 1:
        raise KwsError("--count must be at least 1")
    if seed < 0:
        raise KwsError(f"--seed {seed}: must not be negative")
    words = [_check_word(w) for w in words if w.strip()]
    if not words:
        raise KwsError("no words given", hint="pass --words go,stop")
    dest = Path(dest)
    if dest.exists() and not dest.is_dir():
        raise KwsError(f"{dest} exists and is not a folder")
    if dest.is_dir() and any(dest.iterdir()) and not (dest / SYNTH_JSON).is_file():
        raise KwsError(
            f"{dest} is not empty and is not a synth cache (no {SYNTH_JSON})",
            hint="choose an empty or new folder for synthetic speech",
        )
    engine = _Espeak.get()
    cast = speakers(voices, variants, seed)
    for v in {s.variant for s in cast if s.variant}:
        if v not in engine.variants:
            raise KwsError(f"unknown espeak variant {v!r}", hint=f"e.g. {', '.join(sorted(engine.variants)[:8])}")
    for v in sorted({s.voice for s in cast}):
        engine.check_voice(v)  # before anything is created: a typo leaves no folder behind
    dest.mkdir(parents=True, exist_ok=True)
    index = _load_index(dest) or {}
    index.update(
        {
            "generator": "kws-kit data synth (espeak-ng via espeakng-loader)",
            "espeak_version": engine.version,
            "sample_rate": SAMPLE_RATE,
        }
    )
    clips = index.setdefault("clips", {})
    added: dict[str, int] = {}
    todo = []
    for word in words:
        for k in range(count):
            voice = cast[k % len(cast)]
            relative = f"{word}/{voice.speaker}{NOHASH}{k // len(cast)}.wav"
            if not (dest / relative).is_file():
                todo.append((word, k, voice, relative))
        added[word] = 0
    try:
        for word, k, voice, relative in progress.track(todo, "synthesising"):
            params = _clip_params(seed, word, k)
            x, rate_used = render_word(engine, word, voice, params["rate"], params["pitch"], params["range"], params["peak_dbfs"])
            audio_io.save_wav(dest / relative, x)
            clips[relative] = {
                "word": word,
                "speaker": voice.speaker,
                "voice": voice.voice,
                "variant": voice.variant,
                **params,
                "rate": rate_used,
                "seed": seed,
            }
            added[word] += 1
            if added[word] % 200 == 0:
                _write_index(dest, index)  # so a killed run still documents most of what it made
    finally:
        if any(added.values()):
            _write_index(dest, index)  # Ctrl-C or an error: the clips already written stay documented
    if noise:
        for kind in ("white", "pink", "brown"):
            path = dest / BACKGROUND_NOISE / f"{kind}_noise.wav"
            if not path.is_file():
                audio_io.save_wav(path, generated_noise(kind, NOISE_SECONDS, seed))
        index["background_noise"] = f"generated white/pink/brown noise, {NOISE_SECONDS} s each"
    _write_index(dest, index)
    return added
