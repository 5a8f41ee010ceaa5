"""Streaming evaluation: false triggers per hour and missed commands.

Clip accuracy says little about what a user feels. Here a long recording is
built (keywords and unknown words at known times over continuous background
noise), scored the way the device scores its microphone (one feature frame per
hop, one inference every 250 ms on the last 49 frames), and the score track is
run through the device's own recogniser (``kws_kit.device.kwsrt.recognizer``,
the file that ships to the boards). Detections are matched to the known keyword
times. See docs/evaluation.md.

Typical use::

    stream = build_stream(keyword_clips, unknown_clips, noise, duration_s=3600, seed=0)
    track = score_stream(frontend.stream_features, scorer, stream)
    result = evaluate(track, stream, labels, {"detection_threshold": 0.8})
    sweep = sweep_thresholds(track, stream.events, labels, {}, np.linspace(0.3, 0.99, 24))
    best = threshold_for_target(sweep, target_fa_per_hour=0.5)
    plot_det(sweep, "det.png", target_fa_per_hour=0.5)
"""

from __future__ import annotations

import bisect
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, NamedTuple, Sequence

import numpy as np

from kws_kit.device.kwsrt import recognizer as device_recognizer

from .atomic import output_file
from .errors import DataError, KwsError, ModelError

SAMPLE_RATE = 16000
SECONDS_PER_HOUR = 3600.0


# --- score conversion (vectorised twins of the device functions) ------------------


def probs_to_scores(probs: Any) -> np.ndarray:
    """Float probabilities -> uint8 scores, floor(p * 256) clamped to 0..255 (NaN -> 0).

    Same rule as ``kwsrt.recognizer.prob_to_score`` on the device, vectorised.
    """
    p = np.asarray(probs)
    if not np.issubdtype(p.dtype, np.floating):
        p = p.astype(np.float64)
    scaled = np.floor(np.nan_to_num(p, nan=0.0, posinf=1.0, neginf=0.0) * 256)
    return np.clip(scaled, 0, 255).astype(np.uint8)


def int8_to_scores(q: Any) -> np.ndarray:
    """int8 softmax output (zero point -128, scale 1/256, as TFLite quantises softmax) -> uint8 scores."""
    q = np.asarray(q)
    if q.dtype != np.int8:
        raise ModelError(f"int8_to_scores expects int8 values, got {q.dtype}")
    return (q.astype(np.int16) + 128).astype(np.uint8)


# --- building a stream ------------------------------------------------------------


class Event(NamedTuple):
    start_s: float
    end_s: float
    label: str


@dataclass
class Stream:
    """A long test recording with its answer key.

    ``audio`` is int16 PCM (an hour is 115 MB). ``events`` are the keywords that
    should trigger; ``distractors`` the unknown words that must not. ``*_snr_db``
    hold the speech-to-local-noise ratio each word was mixed at (inf without noise).
    """

    audio: np.ndarray
    sample_rate: int
    events: list[Event]
    distractors: list[Event] = field(default_factory=list)
    event_snr_db: list[float] = field(default_factory=list)
    distractor_snr_db: list[float] = field(default_factory=list)

    @property
    def duration_s(self) -> float:
        return len(self.audio) / self.sample_rate

    def save_wav(self, path: str | os.PathLike) -> Path:
        """Write the audio (atomically), e.g. to listen to what was evaluated."""
        from .audio_io import save_wav

        return save_wav(path, self.audio, self.sample_rate)


def _as_float_clip(clip: Any, what: str) -> np.ndarray:
    arr = np.asarray(clip)
    if arr.ndim != 1:
        raise DataError(f"{what} must be 1-D mono samples, got shape {arr.shape}")
    if arr.dtype == np.int16:
        return arr.astype(np.float32) / np.float32(32768.0)
    if np.issubdtype(arr.dtype, np.floating):
        return arr.astype(np.float32, copy=False)
    raise DataError(f"{what} must be int16 or float samples, got {arr.dtype}")


def _trim_active(clip: np.ndarray, sample_rate: int, trim_db: float | None) -> np.ndarray | None:
    """Cut leading/trailing quiet parts: keep 10 ms frames within ``trim_db`` of the loudest.

    Returns None for a silent clip. Speech Commands clips are 1 s with the word
    somewhere inside; trimming makes event times describe the word itself.
    """
    frame = max(1, sample_rate // 100)
    n_frames = len(clip) // frame
    if n_frames == 0:
        return None
    energy = np.mean(np.square(clip[: n_frames * frame].reshape(n_frames, frame), dtype=np.float64), axis=1)
    peak = float(energy.max())
    if peak <= 1e-12:
        return None
    if trim_db is None:
        return clip
    active = np.flatnonzero(energy >= peak * 10.0 ** (-trim_db / 10.0))
    pad = 2 * frame  # keep a little lead-in and decay
    start = max(0, int(active[0]) * frame - pad)
    end = min(len(clip), (int(active[-1]) + 1) * frame + pad)
    return clip[start:end]


def _normalise_keyword_clips(keyword_clips: Any) -> dict[str, list[Any]]:
    if isinstance(keyword_clips, Mapping):
        grouped = {str(k): list(v) for k, v in keyword_clips.items()}
    else:
        grouped = {}
        for item in keyword_clips:
            try:
                label, clip = item
            except (TypeError, ValueError):
                raise DataError("keyword_clips must be {label: [clips]} or a sequence of (label, clip)") from None
            grouped.setdefault(str(label), []).append(clip)
    return {k: v for k, v in grouped.items() if len(v)}


def _check_range(name: str, value: Sequence[float], positive: bool = True) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise KwsError(f"{name} must be a (min, max) pair, got {value!r}") from None
    if hi < lo or (positive and lo <= 0) or not (math.isfinite(lo) and math.isfinite(hi)):
        raise KwsError(f"{name} must be a finite (min, max) pair with {'0 < ' if positive else ''}min <= max, got {value!r}")
    return lo, hi


class _ClipPicker:
    """Draws clips without replacement (reshuffling when used up), labels in turn."""

    def __init__(self, grouped: dict[str, list[np.ndarray]], rng: np.random.Generator):
        self.grouped = grouped
        self.rng = rng
        self.queues: dict[str, list[int]] = {k: [] for k in grouped}
        self.label_queue: list[str] = []

    def pick(self) -> tuple[str, np.ndarray]:
        if not self.label_queue:
            labels = sorted(self.grouped)
            self.label_queue = [labels[i] for i in self.rng.permutation(len(labels))]
        label = self.label_queue.pop()
        queue = self.queues[label]
        if not queue:
            queue.extend(self.rng.permutation(len(self.grouped[label])).tolist())
        return label, self.grouped[label][queue.pop()]


def _fill_background(
    out: np.ndarray,
    noise: list[np.ndarray],
    rng: np.random.Generator,
    sample_rate: int,
    noise_dbfs: float,
    segment_s: tuple[float, float],
) -> None:
    """Fill ``out`` (int16) with noise segments from random arrays and offsets.

    Each segment is scaled to ``noise_dbfs`` RMS; consecutive segments overlap by
    50 ms with an equal-power crossfade so joins do not click (a click could
    trigger the model and count as a false accept the real world would not have).
    Works one segment at a time: memory stays at a few seconds of float32.
    """
    n = len(out)
    fade = int(0.05 * sample_rate)
    ramp = (np.arange(fade, dtype=np.float32) + 0.5) / fade
    fade_in = np.sin(0.5 * np.pi * ramp).astype(np.float32)
    fade_out = np.cos(0.5 * np.pi * ramp).astype(np.float32)
    target_rms = 10.0 ** (noise_dbfs / 20.0)
    lengths = np.array([len(a) for a in noise], dtype=np.float64)
    weights = lengths / lengths.sum()  # long recordings are used proportionally more
    pos = 0
    tail: np.ndarray | None = None  # faded-out end of the previous segment
    while pos < n:
        source = noise[int(rng.choice(len(noise), p=weights))]
        want = int(rng.uniform(*segment_s) * sample_rate)
        length = min(len(source), max(want, 2 * fade + 1))
        offset = int(rng.integers(0, len(source) - length + 1))
        seg = source[offset : offset + length].astype(np.float32)
        rms = _rms(seg)
        seg *= np.float32(target_rms / rms) if rms > 1e-9 else np.float32(0.0)
        if tail is not None:
            seg[:fade] = seg[:fade] * fade_in + tail * fade_out
        remaining = n - pos
        body = length - fade
        if body >= remaining:
            _store_pcm(out[pos:], seg[:remaining])
            return
        tail = seg[body:].copy()
        _store_pcm(out[pos : pos + body], seg[:body])
        pos += body


def _rms(x: np.ndarray) -> float:
    # BLAS dot: one fast pass, float32 accumulation is plenty for a level in dB.
    return math.sqrt(max(0.0, float(np.dot(x, x))) / max(1, len(x)))


def _store_pcm(dest: np.ndarray, x: np.ndarray) -> None:
    """float32 [-1, 1] -> int16 into ``dest``, in place on ``x`` (same rounding and
    clipping as audio_io.to_int16: scaling by 32768 is exact in float32)."""
    np.multiply(x, np.float32(32768.0), out=x)
    np.rint(x, out=x)
    np.clip(x, -32768, 32767, out=x)
    dest[...] = x


def build_stream(
    keyword_clips: Mapping[str, Sequence[Any]] | Iterable[tuple[str, Any]],
    unknown_clips: Sequence[Any] | None,
    noise: Any,
    duration_s: float,
    seed: int,
    keyword_every_s: tuple[float, float] = (4.0, 8.0),
    unknown_every_s: tuple[float, float] = (6.0, 12.0),
    snr_db: tuple[float, float] = (5.0, 20.0),
    sample_rate: int = SAMPLE_RATE,
    *,
    noise_dbfs: float = -40.0,
    trim_db: float | None = 30.0,
    guard_s: float = 2.0,
    lead_in_s: float = 1.5,
    tail_s: float = 1.5,
    segment_s: tuple[float, float] = (5.0, 30.0),
) -> Stream:
    """Build a test stream: keywords and unknown words at known times over noise.

    keyword_clips   {label: [clip, ...]} or [(label, clip), ...]; clips are 1-D
                    int16 or float [-1, 1] arrays at ``sample_rate`` (e.g. the
                    held-out test split of a curated dataset).
    unknown_clips   non-keyword words (must not trigger); None or [] for none.
    noise           one long 1-D array or a list of them (test noise regions), or
                    None for silence (words then keep their recorded level).
    keyword_every_s / unknown_every_s
                    (min, max) seconds between the starts of consecutive keywords
                    / unknown words, drawn uniformly.
    snr_db          (min, max) speech RMS over the local noise RMS, per word.
    noise_dbfs      background RMS level (every noise segment is scaled to it).
    trim_db         words are trimmed to frames within this many dB of their
                    loudest 10 ms; None keeps clips whole.
    guard_s         silence (noise only) between the end of one word and the
                    start of the next, so detections can be told apart.
    lead_in_s / tail_s
                    nothing is placed before ``lead_in_s`` (the device needs a
                    full window first) or ending after ``duration_s - tail_s``.

    Words never overlap; when both schedules want the same moment the later word
    waits. Labels take turns and clips are drawn without replacement until used
    up, so every test clip is heard before any repeats.
    """
    if duration_s <= 0:
        raise KwsError(f"duration_s must be positive, got {duration_s}")
    kw_lo, kw_hi = _check_range("keyword_every_s", keyword_every_s)
    unk_lo, unk_hi = _check_range("unknown_every_s", unknown_every_s)
    snr_lo, snr_hi = _check_range("snr_db", snr_db, positive=False)
    seg_range = _check_range("segment_s", segment_s)
    rng = np.random.default_rng(seed)
    n = int(round(duration_s * sample_rate))

    grouped: dict[str, list[np.ndarray]] = {}
    for label, clips in _normalise_keyword_clips(keyword_clips).items():
        kept = [_trim_active(_as_float_clip(c, f"keyword clip for {label!r}"), sample_rate, trim_db) for c in clips]
        kept = [c for c in kept if c is not None]
        if kept:
            grouped[label] = kept
    if not grouped:
        raise DataError("build_stream needs at least one non-silent keyword clip")
    unknown = [_trim_active(_as_float_clip(c, "unknown clip"), sample_rate, trim_db) for c in (unknown_clips or [])]
    unknown = [c for c in unknown if c is not None]

    audio = np.zeros(n, dtype=np.int16)
    have_noise = noise is not None and not (isinstance(noise, (list, tuple)) and len(noise) == 0)
    if have_noise:
        arrays = [noise] if isinstance(noise, np.ndarray) and noise.ndim == 1 else list(noise)
        min_len = int(0.2 * sample_rate)
        arrays = [_as_float_clip(a, "noise") for a in arrays]
        arrays = [a for a in arrays if len(a) >= min_len and float(np.abs(a).max()) > 0]
        if not arrays:
            raise DataError("noise: need at least one non-silent noise array of 0.2 s or more")
        _fill_background(audio, arrays, rng, sample_rate, noise_dbfs, seg_range)

    keyword_picker = _ClipPicker(grouped, rng)
    unknown_picker = _ClipPicker({"_unknown_": unknown}, rng) if unknown else None
    last_end = duration_s - tail_s
    next_kw = lead_in_s + rng.uniform(0.0, kw_hi - kw_lo)  # first word soon, not always at the same time
    next_unk = lead_in_s + rng.uniform(unk_lo, unk_hi) if unknown_picker else math.inf
    free_from = lead_in_s
    events: list[Event] = []
    distractors: list[Event] = []
    event_snr: list[float] = []
    distractor_snr: list[float] = []
    while True:
        is_keyword = next_kw <= next_unk
        nominal = next_kw if is_keyword else next_unk
        start = max(nominal, free_from)
        if start >= last_end:
            break
        label, clip = keyword_picker.pick() if is_keyword else unknown_picker.pick()  # type: ignore[union-attr]
        s0 = int(round(start * sample_rate))
        s1 = s0 + len(clip)
        if s1 / sample_rate > last_end:
            # Does not fit before the tail: stop this schedule, let the other one finish.
            if is_keyword:
                next_kw = math.inf
            else:
                next_unk = math.inf
            if math.isinf(next_kw) and math.isinf(next_unk):
                break
            continue
        snr = _mix_word(audio, s0, clip, rng.uniform(snr_lo, snr_hi), have_noise)
        event = Event(s0 / sample_rate, s1 / sample_rate, label)
        if is_keyword:
            events.append(event)
            event_snr.append(snr)
            next_kw = start + rng.uniform(kw_lo, kw_hi)
        else:
            distractors.append(event)
            distractor_snr.append(snr)
            next_unk = start + rng.uniform(unk_lo, unk_hi)
        free_from = event.end_s + guard_s
    if not events:
        raise KwsError(
            f"no keyword fits into a {duration_s:g} s stream",
            hint="make the stream longer than lead_in_s + the longest clip + tail_s",
        )
    return Stream(audio, sample_rate, events, distractors, event_snr, distractor_snr)


def _mix_word(audio: np.ndarray, s0: int, clip: np.ndarray, snr_db: float, have_noise: bool) -> float:
    """Add ``clip`` at sample ``s0`` at ``snr_db`` over the local noise; return the SNR used."""
    region = audio[s0 : s0 + len(clip)].astype(np.float32) / np.float32(32768.0)
    clip_rms = _rms(clip)
    noise_rms = _rms(region) if have_noise else 0.0
    if noise_rms > 1e-9:
        gain = noise_rms * 10.0 ** (snr_db / 20.0) / clip_rms
    else:
        gain = 1.0
    mixed = region + np.float32(gain) * clip
    peak = float(np.abs(mixed).max())
    if peak > 0.99:
        # Too loud for 16 bits at this SNR: turn the word down rather than clip it.
        gain *= 0.99 / peak
        mixed = region + np.float32(gain) * clip
    _store_pcm(audio[s0 : s0 + len(clip)], mixed)
    if noise_rms <= 1e-9:
        return math.inf
    return 20.0 * math.log10(gain * clip_rms / noise_rms)


# --- scoring the stream the way the device does -------------------------------------


@dataclass
class ScoreTrack:
    """One row of uint8 class scores per inference: ``scores[i]`` at ``times_ms[i]``."""

    times_ms: np.ndarray  # int64 (T,)
    scores: np.ndarray  # uint8 (T, C)
    duration_s: float

    def save(self, path: str | os.PathLike) -> Path:
        """Write as .npz (atomically) so thresholds can be re-swept without rescoring."""
        with output_file(path, suffix=".npz") as tmp:
            np.savez(tmp, times_ms=self.times_ms, scores=self.scores, duration_s=np.float64(self.duration_s))
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "ScoreTrack":
        try:
            with np.load(path) as data:
                return cls(data["times_ms"], data["scores"], float(data["duration_s"]))
        except (OSError, KeyError, ValueError) as exc:
            raise DataError(f"{path}: not a score track ({exc})") from exc


def inference_frames(
    n_samples: int,
    sample_rate: int = SAMPLE_RATE,
    inference_period_ms: int = 250,
    window_frames: int = 49,
    hop_ms: int = 20,
    frame_ms: int = 30,
) -> tuple[np.ndarray, np.ndarray]:
    """(times_ms, last_frame) of every inference the device would run.

    At time t the device has seen floor(t * sr / 1000) samples; frame k
    (samples [k*hop, k*hop + frame)) is complete when k*hop + frame <= that.
    Inference runs every ``inference_period_ms`` once ``window_frames`` frames exist,
    on the newest ``window_frames`` frames.
    """
    hop = sample_rate * hop_ms // 1000
    frame = sample_rate * frame_ms // 1000
    duration_ms = n_samples * 1000 // sample_rate
    times = np.arange(inference_period_ms, duration_ms + 1, inference_period_ms, dtype=np.int64)
    seen = times * sample_rate // 1000
    last = (seen - frame) // hop
    keep = (seen >= frame) & (last >= window_frames - 1)
    return times[keep], last[keep]


def score_stream(
    stream_features_fn: Callable[[np.ndarray], np.ndarray],
    scorer: Callable[[np.ndarray], np.ndarray],
    stream: Stream,
    inference_period_ms: int = 250,
    window_frames: int = 49,
    hop_ms: int = 20,
    *,
    frame_ms: int = 30,
    batch_size: int = 512,
) -> ScoreTrack:
    """Score ``stream`` as the device would, once per ``inference_period_ms``.

    ``stream_features_fn(audio int16 (n,)) -> float32 (n_frames, n_coeff)`` is
    called once on the whole stream (e.g. ``Frontend(spec).stream_features``);
    frame k must cover samples [k*hop, k*hop + frame). ``scorer(float32
    (N, window_frames, n_coeff)) -> uint8 (N, C)`` scores windows in batches
    (quantising features and running the model is the scorer's job).
    """
    if inference_period_ms <= 0 or window_frames <= 0 or hop_ms <= 0 or frame_ms <= 0:
        raise KwsError("inference_period_ms, window_frames, hop_ms and frame_ms must be positive")
    sr = stream.sample_rate
    hop = sr * hop_ms // 1000
    frame = sr * frame_ms // 1000
    n = len(stream.audio)
    features = np.asarray(stream_features_fn(stream.audio))
    expected = 0 if n < frame else 1 + (n - frame) // hop
    if features.ndim != 2 or features.shape[0] != expected:
        raise KwsError(
            f"stream features have shape {features.shape}, expected ({expected}, n_coeff) for "
            f"{n} samples with {frame_ms} ms frames every {hop_ms} ms",
            hint="the feature function must return frame k for samples [k*hop, k*hop+frame) and no padding",
        )
    times, last = inference_frames(n, sr, inference_period_ms, window_frames, hop_ms, frame_ms)
    offsets = np.arange(window_frames - 1, -1, -1, dtype=np.int64)
    scores: np.ndarray | None = None
    for start in range(0, len(times), batch_size):
        ends = last[start : start + batch_size]
        batch = features[ends[:, None] - offsets[None, :]]  # (N, window_frames, n_coeff), a copy
        out = _check_scores(scorer(batch.astype(np.float32, copy=False)), len(ends), scores)
        if scores is None:
            scores = np.empty((len(times), out.shape[1]), dtype=np.uint8)
        scores[start : start + len(ends)] = out
    if scores is None:
        raise KwsError(f"stream of {stream.duration_s:.2f} s is too short for one {window_frames}-frame inference")
    return ScoreTrack(times, scores, stream.duration_s)


def _check_scores(out: Any, rows: int, previous: np.ndarray | None) -> np.ndarray:
    out = np.asarray(out)
    if out.ndim != 2 or out.shape[0] != rows:
        raise ModelError(f"scorer returned shape {out.shape}, expected ({rows}, n_classes)")
    if previous is not None and out.shape[1] != previous.shape[1]:
        raise ModelError("scorer returned a different number of classes between batches")
    if out.dtype != np.uint8:
        if not np.issubdtype(out.dtype, np.integer) or out.size and (out.min() < 0 or out.max() > 255):
            raise ModelError(
                f"scorer must return uint8 scores 0..255, got {out.dtype}",
                hint="convert float probabilities with probs_to_scores, int8 softmax with int8_to_scores",
            )
        out = out.astype(np.uint8)
    return out


# --- the device recogniser over a score track ----------------------------------------


class Detection(NamedTuple):
    time_s: float
    label: str
    avg_score: int


def _make_recognizer(labels: Sequence[str], params: Mapping[str, Any] | None):
    params = dict(params or {})
    params.pop("labels", None)
    try:
        # Looked up at call time on the device module, the one file the boards run.
        return device_recognizer.Recognizer(list(labels), **params)
    except (TypeError, ValueError) as exc:
        raise KwsError(f"recogniser parameters: {exc}") from exc


def run_recognizer(track: ScoreTrack, labels: Sequence[str], params: Mapping[str, Any] | None = None) -> list[Detection]:
    """Feed every score row to the device's Recognizer; return its detections.

    ``params`` are Recognizer keyword arguments (average_window_ms,
    detection_threshold, suppression_ms, minimum_count, ignore_labels, max_results).
    """
    labels = list(labels)
    if track.scores.ndim != 2 or track.scores.shape[1] != len(labels):
        raise KwsError(f"score track has {track.scores.shape[-1]} classes but {len(labels)} labels were given")
    rec = _make_recognizer(labels, params)
    return _run(rec, labels, track.times_ms.tolist(), track.scores.tolist())


class _WindowStats:
    """What the device recogniser's window holds at every inference, for all thresholds at once.

    The ring (results younger than ``average_window_ms``, at most
    ``max_results``) does not depend on the threshold: after result ``j`` is
    added it holds results ``start_j .. j`` with ``start_j = max(first i with
    t_i > t_j - window, j - max_results + 1)``, so the integer sums are
    differences of one cumulative sum, and the top class, its average and every
    class's average (for the latch) follow with a few array operations. Only the
    latch and the suppression timer depend on the threshold; :func:`_run_fast`
    replays them over the few inferences where anything can happen.
    """

    def __init__(self, rec: Any, times: np.ndarray, scores: np.ndarray):
        t = np.asarray(times)
        n = len(t)
        idx = np.arange(n)
        lo_time = np.searchsorted(t, t - rec.average_window_ms, side="right")
        start = np.maximum(lo_time, idx - rec.max_results + 1)
        cum = np.zeros((n + 1, scores.shape[1]), dtype=np.int64)
        np.cumsum(scores, axis=0, dtype=np.int64, out=cum[1:])
        sums = cum[idx + 1] - cum[start]
        count = (idx + 1 - start)[:, None]
        self.times = t
        self.averages = sums // count  # (T, C): the latch test reads the latched class
        self.best = np.argmax(sums, axis=1)  # first maximum: ties go to the lowest index
        self.best_avg = self.averages[idx, self.best]
        # before result j is added the window is empty (the latch is released) when every
        # earlier result has aged out
        self.emptied = lo_time >= idx
        self.eligible = ((idx + 1 - start) >= rec.minimum_count) & ~np.frombuffer(bytes(rec._ignored), dtype=np.uint8)[self.best].astype(bool)
        self._releases: dict[tuple[int, int], list[int]] = {}

    def releases(self, label: int, threshold: int) -> list[int]:
        """Inferences at which a latch on ``label`` is released at ``threshold`` (sorted)."""
        key = (label, threshold)
        if key not in self._releases:
            self._releases[key] = np.flatnonzero(self.emptied | (self.averages[:, label] < threshold)).tolist()
        return self._releases[key]


def _run_fast(rec: Any, labels: list[str], stats: _WindowStats) -> list[Detection]:
    """The device recogniser's detections for ``rec``'s threshold, from precomputed window stats.

    Equal to feeding every row to ``rec.update`` (``_run``; tested on random
    and adversarial tracks): a detection needs an eligible inference whose top
    average reaches the threshold, outside the suppression time, whose top
    class is not latched; the latch set by a detection of class L is released
    at the first later inference whose window was empty before it was added or
    whose class-L average is below the threshold.
    """
    threshold = rec.threshold_score
    suppression = rec.suppression_ms
    cand = np.flatnonzero(stats.eligible & (stats.best_avg >= threshold))
    cand_times = stats.times[cand].tolist()
    cand_best = stats.best[cand].tolist()
    cand_avg = stats.best_avg[cand].tolist()
    cand = cand.tolist()
    found = []
    latched = -1
    release_at = -1  # inference index at which the latch goes
    last_det = None
    i, n = 0, len(cand)
    while i < n:
        j = cand[i]
        if latched >= 0 and release_at <= j:
            latched = -1
        b = cand_best[i]
        if b == latched:
            i += 1
            continue
        now = cand_times[i]
        if last_det is not None and now - last_det < suppression:
            # skip the candidates certainly inside the suppression time (the test above decides
            # the last ones exactly)
            i = max(i + 1, bisect.bisect_left(cand_times, last_det + suppression - 1, i + 1))
            continue
        last_det = now
        latched = b
        release = stats.releases(b, threshold)
        k = bisect.bisect_right(release, j)
        release_at = release[k] if k < len(release) else len(stats.times)
        found.append(Detection(now / 1000.0, labels[b], cand_avg[i]))
        i += 1
    return found


def _fast_ok(times: np.ndarray, scores: np.ndarray) -> bool:
    """The vectorised recogniser needs what ``update`` would accept: times that never go back, scores 0..255."""
    times = np.asarray(times)
    if scores.ndim != 2 or not len(times) or times.ndim != 1 or len(times) != len(scores):
        return False
    if not np.issubdtype(times.dtype, np.integer) or not np.issubdtype(scores.dtype, np.integer):
        return False
    if not bool(np.all(np.diff(times) >= 0)):
        return False
    return scores.dtype == np.uint8 or (int(scores.min()) >= 0 and int(scores.max()) <= 255)


def _run(rec: Any, labels: list[str], times: list[int], rows: list[list[int]]) -> list[Detection]:
    update = rec.update
    found = []
    for t, row in zip(times, rows):
        hit = update(row, t)
        if hit is not None:
            found.append(Detection(t / 1000.0, labels[hit[0]], hit[1]))
    return found


# --- matching detections to the answer key ---------------------------------------------


@dataclass
class StreamResult:
    """What a user would feel over ``duration_s`` of audio.

    false_accepts counts every detection that is not the first correct detection
    of a keyword event: detections in noise, on unknown words (also counted in
    ``fa_on_distractors``), of the wrong keyword, and second detections of one
    event (also counted in ``duplicates``).
    """

    duration_s: float
    n_events: int
    hits: int
    false_rejects: int
    false_accepts: int
    duplicates: int
    fa_on_distractors: int
    per_keyword: dict[str, dict[str, int]]
    tolerance_s: float

    @property
    def fa_per_hour(self) -> float:
        return self.false_accepts / (self.duration_s / SECONDS_PER_HOUR) if self.duration_s > 0 else math.nan

    @property
    def fa_per_hour_upper95(self) -> float:
        """One-sided 95 % upper bound on the true false-accept rate (Poisson).

        Zero false accepts in one hour still allows up to 3.0 per hour: to show
        0.5/h, stream about six hours.
        """
        from scipy.stats import chi2

        hours = self.duration_s / SECONDS_PER_HOUR
        return float(chi2.ppf(0.95, 2 * (self.false_accepts + 1)) / 2 / hours) if hours > 0 else math.nan

    @property
    def frr(self) -> float:
        """Fraction of keyword events with no correct detection (0 when there are none)."""
        return self.false_rejects / self.n_events if self.n_events else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "duration_s": self.duration_s,
            "hours": self.duration_s / SECONDS_PER_HOUR,
            "events": self.n_events,
            "hits": self.hits,
            "false_rejects": self.false_rejects,
            "false_reject_rate": self.frr,
            "false_accepts": self.false_accepts,
            "false_accepts_per_hour": self.fa_per_hour,
            "false_accepts_per_hour_upper95": self.fa_per_hour_upper95,
            "duplicates": self.duplicates,
            "false_accepts_on_unknown_words": self.fa_on_distractors,
            "tolerance_s": self.tolerance_s,
            "per_keyword": self.per_keyword,
        }

    def summary(self) -> str:
        return (
            f"{self.fa_per_hour:.2f} false accepts/hour ({self.false_accepts} in {self.duration_s / 60:.1f} min, "
            f"95% upper bound {self.fa_per_hour_upper95:.2f}/h), "
            f"false-reject rate {100 * self.frr:.1f}% ({self.false_rejects}/{self.n_events} keywords missed)"
        )


def match(
    detections: Sequence[Detection | tuple[float, str, Any]],
    events: Sequence[Event | tuple[float, float, str]],
    tolerance_s: float = 1.0,
    duration_s: float | None = None,
    distractors: Sequence[Event | tuple[float, float, str]] = (),
) -> StreamResult:
    """Score detections against the answer key.

    A detection at time t hits an event with the same label when
    start <= t <= end + tolerance_s (the recogniser averages over a window, so it
    fires after the word). Each event takes at most one hit: the earliest
    detection; when windows of two events overlap, the earlier un-hit event
    takes it. Every other detection is a false accept. Events never hit are false
    rejects. ``duration_s`` (for false accepts per hour) defaults to the end of
    the last event or detection, but pass the real stream length.
    """
    if tolerance_s < 0:
        raise KwsError(f"tolerance_s must be >= 0, got {tolerance_s}")
    evs = sorted((float(s), float(e), str(lab)) for s, e, lab in events)
    starts = [e[0] for e in evs]
    longest = max((e[1] - e[0] for e in evs), default=0.0)
    hit = [False] * len(evs)
    per_keyword: dict[str, dict[str, int]] = {}

    def counts(label: str) -> dict[str, int]:
        return per_keyword.setdefault(label, {"events": 0, "hits": 0, "misses": 0, "false_accepts": 0})

    for _, _, lab in evs:
        counts(lab)["events"] += 1
    dis = sorted((float(s), float(e)) for s, e, _ in distractors)
    dis_starts = [d[0] for d in dis]
    dis_longest = max((d[1] - d[0] for d in dis), default=0.0)

    false_accepts = duplicates = on_distractors = 0
    for det in sorted(detections, key=lambda d: (d[0], str(d[1]))):
        t, lab = float(det[0]), str(det[1])
        chosen = -1
        already = False
        # Candidates start at or before t and no earlier than t - longest - tolerance.
        i = bisect.bisect_right(starts, t) - 1
        while i >= 0 and starts[i] >= t - longest - tolerance_s:
            s, e, elab = evs[i]
            if elab == lab and t <= e + tolerance_s:
                if not hit[i]:
                    chosen = i  # keeps moving to earlier events: the earliest un-hit wins
                else:
                    already = True
            i -= 1
        if chosen >= 0:
            hit[chosen] = True
            counts(lab)["hits"] += 1
            continue
        false_accepts += 1
        counts(lab)["false_accepts"] += 1
        if already:
            duplicates += 1
        j = bisect.bisect_right(dis_starts, t) - 1
        while j >= 0 and dis_starts[j] >= t - dis_longest - tolerance_s:
            if t <= dis[j][1] + tolerance_s:
                on_distractors += 1
                break
            j -= 1

    for (_, _, lab), was_hit in zip(evs, hit):
        if not was_hit:
            counts(lab)["misses"] += 1
    n_hits = sum(hit)
    if duration_s is None:
        ends = [e[1] for e in evs] + [float(d[0]) for d in detections]
        duration_s = max(ends, default=0.0)
    return StreamResult(
        duration_s=float(duration_s),
        n_events=len(evs),
        hits=n_hits,
        false_rejects=len(evs) - n_hits,
        false_accepts=false_accepts,
        duplicates=duplicates,
        fa_on_distractors=on_distractors,
        per_keyword=dict(sorted(per_keyword.items())),
        tolerance_s=float(tolerance_s),
    )


def evaluate(
    track: ScoreTrack,
    stream: Stream,
    labels: Sequence[str],
    params: Mapping[str, Any] | None = None,
    tolerance_s: float = 1.0,
) -> StreamResult:
    """run_recognizer + match against the stream's keywords and unknown words."""
    detections = run_recognizer(track, labels, params)
    return match(detections, stream.events, tolerance_s, track.duration_s, stream.distractors)


# --- thresholds ---------------------------------------------------------------------


class SweepPoint(NamedTuple):
    threshold: float
    fa_per_hour: float
    frr: float


def sweep_thresholds(
    track: ScoreTrack,
    events: Sequence[Event | tuple[float, float, str]],
    labels: Sequence[str],
    params: Mapping[str, Any] | None,
    thresholds: Iterable[float],
    tolerance_s: float = 1.0,
) -> list[SweepPoint]:
    """(threshold, false accepts/hour, false-reject rate) for each detection threshold.

    One pass per distinct integer threshold score over the precomputed track,
    through the vectorised twin of the device recogniser (``_run_fast``: the
    window, which does not depend on the threshold, is computed once; tested
    equal to ``Recognizer.update`` row by row). Tracks it cannot take (times
    going back, scores outside 0..255) go through the device class itself,
    which reports the problem.
    """
    labels = list(labels)
    if track.scores.shape[1] != len(labels):
        raise KwsError(f"score track has {track.scores.shape[1]} classes but {len(labels)} labels were given")
    fast = _fast_ok(track.times_ms, track.scores)
    if not fast:
        times = track.times_ms.tolist()
        rows = track.scores.tolist()  # once: the per-threshold passes reuse the Python lists
    stats = None  # the window does not depend on the threshold: computed once
    base = dict(params or {})
    by_score: dict[int, tuple[float, float]] = {}  # thresholds with one integer score share a pass
    points = []
    for threshold in thresholds:
        rec = _make_recognizer(labels, {**base, "detection_threshold": float(threshold)})
        if rec.threshold_score not in by_score:
            if fast:
                if stats is None:
                    stats = _WindowStats(rec, track.times_ms, track.scores)
                detections = _run_fast(rec, labels, stats)
            else:
                detections = _run(rec, labels, times, rows)
            result = match(detections, events, tolerance_s, track.duration_s)
            by_score[rec.threshold_score] = (result.fa_per_hour, result.frr)
        points.append(SweepPoint(float(threshold), *by_score[rec.threshold_score]))
    return points


def threshold_for_target(sweep: Sequence[SweepPoint | tuple[float, float, float]], target_fa_per_hour: float = 0.5) -> SweepPoint | None:
    """The operating point with at most ``target_fa_per_hour`` false accepts per hour
    and the fewest misses (ties: fewer false accepts, then the higher threshold).
    None when no threshold reaches the target."""
    ok = [SweepPoint(*p) for p in sweep if p[1] <= target_fa_per_hour]
    if not ok:
        return None
    return min(ok, key=lambda p: (p.frr, p.fa_per_hour, -p.threshold))


def plot_det(
    sweep: Sequence[SweepPoint | tuple[float, float, float]],
    path: str | os.PathLike,
    target_fa_per_hour: float | None = None,
    title: str | None = None,
) -> Path:
    """Save a DET-style curve (false-reject rate vs false accepts per hour, log x) as PNG.

    Points with zero false accepts are drawn at the left edge of the axis (marked
    "0") since a log axis has no zero. Written atomically.
    """
    # The object API with an explicit Agg canvas: no pyplot, no global backend switch.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    points = sorted((SweepPoint(*p) for p in sweep), key=lambda p: p.threshold)
    if not points:
        raise KwsError("plot_det needs at least one sweep point")
    positive = [p.fa_per_hour for p in points if p.fa_per_hour > 0]
    floor = min(positive) / 4 if positive else 0.01
    if target_fa_per_hour:
        floor = min(floor, target_fa_per_hour / 4)
    xs = [p.fa_per_hour if p.fa_per_hour > 0 else floor for p in points]
    ys = [100 * p.frr for p in points]

    fig = Figure(figsize=(6, 4.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot(xs, ys, marker="o", markersize=3)
    every = max(1, len(points) // 8)  # label a few points with their threshold
    for p, x, y in list(zip(points, xs, ys))[::every]:
        ax.annotate(f"{p.threshold:.2f}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_xscale("log")
    ax.axvline(floor, color="0.8", linewidth=0.8)
    ax.text(floor, 1.0, " 0", transform=ax.get_xaxis_transform(), va="top", fontsize=7, color="0.4")
    if target_fa_per_hour:
        ax.axvline(target_fa_per_hour, color="tab:red", linestyle="--", linewidth=1)
        chosen = threshold_for_target(points, target_fa_per_hour)
        label = f"target {target_fa_per_hour:g}/h"
        if chosen is not None:
            label += f": threshold {chosen.threshold:.2f}, FRR {100 * chosen.frr:.1f}%"
        ax.text(target_fa_per_hour, 0.98, " " + label, transform=ax.get_xaxis_transform(), va="top", fontsize=7, color="tab:red")
    ax.set_xlabel("false accepts per hour (log)")
    ax.set_ylabel("false-reject rate (%)")
    ax.set_ylim(-2, 102)
    ax.grid(True, which="both", alpha=0.3)
    ax.set_title(title or "Streaming detection: misses vs false triggers (labels: threshold)", fontsize=9)
    fig.tight_layout()
    with output_file(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")
    return Path(path)
