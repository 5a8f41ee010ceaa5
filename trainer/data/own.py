"""Your own recordings: cutting long takes into one-second clips, and recording from the microphone.

A folder of own recordings looks like ``<word>/<file>`` or ``<word>/<speaker>/<file>``
(WAV, FLAC, OGG or MP3 at any rate, channels or bit depth). Files longer than about
1.5 s are treated as a series of utterances: each is found by its energy and
becomes a one-second clip *by reference* (path, offset, duration), so nothing is
copied or rewritten.
"""

from __future__ import annotations

import getpass
import re
import sys
from pathlib import Path
from typing import Callable

import numpy as np

from .. import audio_io, progress
from ..errors import KwsError
from .common import CLIP_SAMPLES, NOHASH, SAMPLE_RATE, safe_speaker_id

LONG_RECORDING_S = 1.5  # longer files are cut into one clip per utterance

FRAME_S = 0.025
HOP_S = 0.010


def frame_db(x: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """RMS level in dBFS of 25 ms frames every 10 ms."""
    frame = int(round(FRAME_S * sample_rate))
    hop = int(round(HOP_S * sample_rate))
    if len(x) < frame:
        x = np.pad(x, (0, frame - len(x)))
    frames = np.lib.stride_tricks.sliding_window_view(x, frame)[::hop]
    power = np.einsum("ij,ij->i", frames, frames, dtype=np.float64) / frame
    return (10.0 * np.log10(power + 1e-10)).astype(np.float32)


def detect_utterances(
    x: np.ndarray,
    sample_rate: int = SAMPLE_RATE,
    margin_db: float = 12.0,
    dynamic_range_db: float = 40.0,
    merge_gap_s: float = 0.3,
    min_length_s: float = 0.12,
) -> list[tuple[float, float]]:
    """(start_s, end_s) of each utterance in ``x``, found by frame energy.

    A frame is active when it is ``margin_db`` above the local noise floor (the
    10th percentile of frame levels over a 3 s neighbourhood, so a floor that
    drifts is followed) and no more than ``dynamic_range_db`` below the loudest
    frame (so faint rustles in a digitally silent file do not count). Active
    runs closer than ``merge_gap_s`` are merged (a word with a stop consonant
    stays one word) and runs shorter than ``min_length_s`` are dropped (clicks).
    """
    from scipy.ndimage import percentile_filter

    db = frame_db(np.asarray(x, dtype=np.float32), sample_rate)
    if db.size == 0:
        return []
    window = max(3, int(round(3.0 / HOP_S)))
    floor = percentile_filter(db, 10, size=window, mode="nearest")
    threshold = np.maximum(floor + margin_db, db.max() - dynamic_range_db)
    active = db > threshold
    if not active.any():
        return []
    edges = np.diff(np.concatenate(([0], active.astype(np.int8), [0])))
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1)  # exclusive frame index
    segments: list[list[float]] = []
    frame_s = FRAME_S
    for s, e in zip(starts, ends):
        start, end = s * HOP_S, (e - 1) * HOP_S + frame_s
        if segments and start - segments[-1][1] < merge_gap_s:
            segments[-1][1] = end
        else:
            segments.append([start, end])
    total = len(x) / sample_rate
    return [(round(float(s), 4), round(float(min(e, total)), 4)) for s, e in segments if e - s >= min_length_s]


def clip_windows(
    segments: list[tuple[float, float]], total_s: float, window_s: float = 1.0
) -> list[tuple[float, float]]:
    """A ``window_s`` window (offset_s, duration_s) centred on each segment, kept inside the file."""
    if total_s <= window_s:
        return [(0.0, float(total_s))] if segments else []
    out = []
    for start, end in segments:
        offset = min(max((start + end) / 2 - window_s / 2, 0.0), total_s - window_s)
        out.append((round(float(offset), 4), float(window_s)))
    return out


def cut_long_recording(path: str | Path) -> list[tuple[float, float]]:
    """Decode ``path`` and return one (offset_s, duration_s) window per utterance."""
    x = audio_io.load(path)
    segments = detect_utterances(x)
    return clip_windows(segments, len(x) / SAMPLE_RATE)


# --------------------------------------------------------------------------- recording


def _import_sounddevice():
    try:
        import sounddevice
    except (ImportError, OSError) as exc:
        raise KwsError(
            f"cannot use the microphone: {' '.join(str(exc).split())}",
            hint="pip install sounddevice, and install PortAudio (apt install libportaudio2 / brew install portaudio)",
        ) from exc
    return sounddevice


def next_take_number(folder: Path, speaker: str) -> int:
    """First free ``n`` for ``<speaker>_nohash_<n>.wav`` in ``folder``."""
    pattern = re.compile(re.escape(speaker) + re.escape(NOHASH) + r"(\d+)\.\w+$")
    numbers = [int(m.group(1)) for p in folder.glob("*") if (m := pattern.match(p.name))] if folder.is_dir() else []
    return max(numbers, default=-1) + 1


def _login_name() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a container user with no name (no LOGNAME/USER, no passwd entry)
        return "speaker"


def _meter(level_db: float, width: int = 30) -> str:
    filled = int(np.clip((level_db + 60.0) / 60.0, 0.0, 1.0) * width)
    return "#" * filled + "-" * (width - filled)


def record_takes(
    word: str,
    count: int,
    dest: str | Path,
    speaker: str | None = None,
    seconds: float = 1.5,
    prompt: Callable[[str], str] | None = None,
    sd=None,
) -> list[Path]:
    """Record ``count`` takes of ``word`` into ``dest/<word>/<speaker>_nohash_<n>.wav``.

    Each take is ``seconds`` long; the utterance in it is found by energy and a
    one-second 16 kHz mono clip centred on it is saved. Takes with nothing
    audible are asked again. Returns the written files.
    """
    if count < 1:
        raise KwsError("--count must be at least 1")
    if not 1.0 <= seconds <= 30.0:  # shorter takes cannot hold a one-second clip (and silence would be asked again forever)
        raise KwsError(f"--seconds {seconds:g}: a take must last between 1 and 30 seconds")
    word = word.strip().lower()
    if not word or word.startswith(("_", ".")) or "/" in word:
        raise KwsError(f"invalid word {word!r}", hint="use a plain word such as 'house'")
    sd = sd or _import_sounddevice()
    speaker = safe_speaker_id(speaker or _login_name())
    folder = Path(dest) / word
    try:
        device = sd.query_devices(kind="input")
    except Exception as exc:  # PortAudioError or ValueError when there is no input device
        raise KwsError(
            f"no microphone found ({' '.join(str(exc).split()) or type(exc).__name__})",
            hint="connect a microphone or check the system's sound settings",
        ) from exc
    device_rate = int(float(device.get("default_samplerate", SAMPLE_RATE)) if isinstance(device, dict) else SAMPLE_RATE)
    written: list[Path] = []
    n = next_take_number(folder, speaker)
    progress.info(f"recording {count} takes of '{word}' as speaker '{speaker}' into {folder}")
    take = 0
    while take < count:
        try:
            answer = (prompt or input)(f"[{take + 1}/{count}] press Enter, then say '{word}' (q + Enter stops): ")
        except EOFError:  # stdin closed: stop like 'q'
            break
        if answer.strip().lower() in ("q", "quit"):
            break
        x = _capture(sd, seconds, device_rate)
        peak = float(np.max(np.abs(x))) if x.size else 0.0
        segments = detect_utterances(x)
        if not segments:
            progress.warn("heard nothing that sounds like a word; let's try that take again")
            continue
        if peak >= 0.999:
            progress.warn("the take is clipping; speak a little further from the microphone")
        loudest = max(segments, key=lambda s: _segment_energy(x, s))
        offset, _ = clip_windows([loudest], len(x) / SAMPLE_RATE)[0]
        start = int(round(offset * SAMPLE_RATE))
        clip = audio_io.fit_length(x[start : start + CLIP_SAMPLES], CLIP_SAMPLES)
        path = folder / f"{speaker}{NOHASH}{n}.wav"
        audio_io.save_wav(path, clip)
        written.append(path)
        progress.info(f"  saved {path.name} (peak {20 * np.log10(max(peak, 1e-6)):.1f} dBFS)")
        n += 1
        take += 1
    return written


def _segment_energy(x: np.ndarray, segment: tuple[float, float]) -> float:
    a, b = (int(round(t * SAMPLE_RATE)) for t in segment)
    part = x[a:b]
    return float(np.dot(part, part))


def _capture(sd, seconds: float, device_rate: int) -> np.ndarray:
    """Record ``seconds`` of mono audio with a live level meter; 16 kHz float32 out."""
    rate = SAMPLE_RATE
    try:
        stream = sd.InputStream(samplerate=rate, channels=1, dtype="float32")
    except Exception:
        # Some devices refuse 16 kHz; record at their own rate and convert.
        rate = device_rate
        try:
            stream = sd.InputStream(samplerate=rate, channels=1, dtype="float32")
        except Exception as exc:
            raise KwsError(
                f"cannot open the microphone: {' '.join(str(exc).split()) or type(exc).__name__}",
                hint="is another program using it?",
            ) from exc
    block = max(1, rate // 20)
    total = int(round(seconds * rate))
    chunks = []
    got = 0
    try:
        with stream:
            while got < total:
                data, _overflowed = stream.read(min(block, total - got))
                data = np.asarray(data, dtype=np.float32).reshape(len(data), -1).mean(axis=1)
                chunks.append(data)
                got += len(data)
                level = 10 * np.log10(float(np.mean(data.astype(np.float64) ** 2)) + 1e-10)
                sys.stderr.write(f"\r  level [{_meter(level)}] {level:6.1f} dBFS ")
                sys.stderr.flush()
    except KwsError:
        raise
    except Exception as exc:
        raise KwsError(
            f"recording failed: {' '.join(str(exc).split()) or type(exc).__name__}",
            hint="is another program using the microphone?",
        ) from exc
    finally:
        sys.stderr.write("\n")
    x = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)
    if rate != SAMPLE_RATE and x.size:
        x = audio_io.resample(x, rate, SAMPLE_RATE)
    return x.astype(np.float32)
