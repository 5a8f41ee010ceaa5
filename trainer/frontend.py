"""The feature front end: one spec, one host reference, the tables the boards need.

The model is trained on exactly the features the boards compute one 20 ms hop at
a time (MicroPython + ulab, and C). To make that possible every frame depends only
on its own ``window_length`` int16 samples: no per-clip normalisation, no dB range
relative to the clip maximum, no centring or padding at the clip edges.

Per frame (defaults in brackets; docs/frontend.md explains every field)::

    x[n]   = pcm_int16[n] * pcm_scale                       [1/32768]
    X      = FFT_n_fft( x[n] * hann_periodic[n] ), zero padded  [480 -> 512]
    P[b]   = |X[b]|^2                 for b in 0 .. n_fft/2   [257 bins]
    M[m]   = sum_b W[m, b] * P[b]     (librosa.filters.mel, stored sparse)  [40 bands]
    L[m]   = ln(max(M[m], log_floor))                       [1e-7]
    c[k]   = sum_m D[k, m] * L[m]     (orthonormal DCT-II, first n_coeffs)  [10]
    (kind="logmel": c = L)

``Frontend`` is the host reference; ``clip_features``, ``batch_features`` and
``stream_features`` all run the same vectorised per-frame code.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from . import frontend_jit
from .errors import AudioError, ModelError

SPEC_VERSION = 1
KINDS = ("mfcc", "logmel")
MEL_SCALES = ("slaney", "htk")
MEL_NORMS = ("slaney", None)
WINDOWS = ("hann_periodic",)

# Frames processed per chunk in the batch paths: bounds the float64 temporaries
# to a few tens of MB whatever the batch size. The mel and DCT matrix products
# run on whole chunks, and BLAS may sum in a different order for a different
# number of rows (seen at the 1e-15 level on silent frames, where the DCT of a
# constant log-mel vector is a rounding residue), so this partition is part of
# what makes the reference's output, bit for bit: keep it.
_FRAMES_PER_CHUNK = 4096
# Within a chunk the windowing, FFT and power run on this many frames at a time in
# reused buffers (256 x 512 float64 and 256 x 257 complex128, 1 MB each, stay in
# the L2 cache); per-frame arithmetic, so the result does not depend on it.
_FFT_FRAMES = 256
# numpy >= 2.0 lets rfft write into a given array.
_RFFT_OUT = np.lib.NumpyVersion(np.__version__) >= "2.0.0"


def _fail(message: str) -> None:
    raise ModelError(f"frontend spec: {message}")


@dataclass(frozen=True)
class FrontendSpec:
    """Everything that defines the features. Saved as ``frontend.json`` in every bundle."""

    VERSION: ClassVar[int] = SPEC_VERSION

    kind: str = "mfcc"
    sample_rate: int = 16000
    clip_samples: int = 16000
    window_length: int = 480
    hop_length: int = 320
    n_fft: int = 512
    window: str = "hann_periodic"
    pcm_scale: float = 1.0 / 32768.0
    n_mels: int = 40
    fmin: float = 20.0
    fmax: float = 4000.0
    mel_scale: str = "slaney"
    mel_norm: str | None = "slaney"
    log_floor: float = 1e-7
    n_coeffs: int = 10

    def __post_init__(self) -> None:
        for name in ("sample_rate", "clip_samples", "window_length", "hop_length", "n_fft", "n_mels", "n_coeffs"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                _fail(f"{name} must be a positive integer, got {value!r}")
        for name in ("pcm_scale", "fmin", "fmax", "log_floor"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                _fail(f"{name} must be a finite number, got {value!r}")
            # Keep one canonical type so equality, JSON and the fingerprint agree.
            object.__setattr__(self, name, float(value))
        if self.kind not in KINDS:
            _fail(f"kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if self.window not in WINDOWS:
            _fail(f"window must be one of {', '.join(WINDOWS)}, got {self.window!r}")
        if self.mel_scale not in MEL_SCALES:
            _fail(f"mel_scale must be one of {', '.join(MEL_SCALES)}, got {self.mel_scale!r}")
        if self.mel_norm not in MEL_NORMS:
            _fail(f"mel_norm must be 'slaney' or null, got {self.mel_norm!r}")
        if self.n_fft & (self.n_fft - 1):
            _fail(f"n_fft must be a power of two (the boards' FFT needs it), got {self.n_fft}")
        if self.window_length > self.n_fft:
            _fail(f"window_length {self.window_length} is longer than n_fft {self.n_fft}")
        if self.window_length > self.clip_samples:
            _fail(f"window_length {self.window_length} is longer than clip_samples {self.clip_samples}")
        if self.pcm_scale <= 0:
            _fail(f"pcm_scale must be positive, got {self.pcm_scale}")
        if self.log_floor <= 0:
            _fail(f"log_floor must be positive, got {self.log_floor}")
        if not 0 <= self.fmin < self.fmax <= self.sample_rate / 2:
            _fail(f"need 0 <= fmin < fmax <= sample_rate/2, got fmin={self.fmin} fmax={self.fmax}")
        if self.kind == "logmel" and self.n_coeffs != self.n_mels:
            _fail(f"kind 'logmel' needs n_coeffs == n_mels ({self.n_mels}), got {self.n_coeffs}")
        if self.n_coeffs > self.n_mels:
            _fail(f"n_coeffs {self.n_coeffs} exceeds n_mels {self.n_mels}")

    # -- derived sizes ---------------------------------------------------------
    @property
    def n_frames(self) -> int:
        """Frames per clip: frame k covers samples [k*hop, k*hop + window)."""
        return 1 + (self.clip_samples - self.window_length) // self.hop_length

    @property
    def n_bins(self) -> int:
        return self.n_fft // 2 + 1

    @property
    def feature_shape(self) -> tuple[int, int]:
        return (self.n_frames, self.n_coeffs)

    # -- serialisation ---------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"version": SPEC_VERSION, **dataclasses.asdict(self)}

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=False) + ("\n" if indent else "")

    @classmethod
    def from_dict(cls, data: Any) -> "FrontendSpec":
        """Validate and build a spec; a bundle's ``tables`` entry is allowed and ignored here."""
        if not isinstance(data, dict):
            _fail(f"expected a JSON object, got {type(data).__name__}")
        version = data.get("version")
        if version is None:
            _fail("no 'version' field")
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            _fail(f"version must be a positive integer, got {version!r}")
        if version > SPEC_VERSION:
            raise ModelError(
                f"frontend spec version {version} is newer than this kws-kit understands (up to {SPEC_VERSION})",
                hint="upgrade kws-kit",
            )
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names - {"version", "tables"})
        if unknown:
            _fail(f"unknown field(s) {', '.join(unknown)}")
        missing = sorted(names - set(data))
        if missing:
            _fail(f"missing field(s) {', '.join(missing)}")
        return cls(**{name: data[name] for name in names})

    @classmethod
    def from_json(cls, text: str) -> "FrontendSpec":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ModelError(f"frontend spec: not valid JSON ({exc})") from exc
        return cls.from_dict(data)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "FrontendSpec":
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ModelError(f"{path}: cannot read frontend spec ({exc.strerror or exc})") from exc
        except UnicodeDecodeError as exc:
            raise ModelError(f"{path}: frontend spec is not UTF-8 text") from exc
        try:
            return cls.from_json(text)
        except ModelError as exc:
            raise ModelError(f"{path}: {exc.message}", hint=exc.hint) from exc

    def fingerprint(self) -> str:
        """Short stable hash of every field: keys feature caches and checks run folders."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


PRESETS: dict[str, FrontendSpec] = {
    "mfcc10": FrontendSpec(),
    "mfcc13": FrontendSpec(n_coeffs=13),
    "logmel40": FrontendSpec(kind="logmel", n_coeffs=40),
}


def preset(name: str) -> FrontendSpec:
    try:
        return PRESETS[name]
    except KeyError:
        raise ModelError(f"unknown front end preset {name!r}", hint=f"choose one of {', '.join(PRESETS)}") from None


# -- tables -------------------------------------------------------------------


def _mel_matrix(spec: FrontendSpec) -> np.ndarray:
    """(n_mels, n_bins) float32 weights, exactly as librosa.filters.mel makes them."""
    import warnings

    import librosa

    with warnings.catch_warnings():
        # librosa warns about empty bands for odd specs; device_tables reports them instead.
        warnings.simplefilter("ignore", UserWarning)
        return librosa.filters.mel(
            sr=spec.sample_rate,
            n_fft=spec.n_fft,
            n_mels=spec.n_mels,
            fmin=spec.fmin,
            fmax=spec.fmax,
            htk=spec.mel_scale == "htk",
            norm=spec.mel_norm,
            dtype=np.float32,
        )


def _float32_literal(value: float) -> float:
    # 9 significant digits round-trip a float32 exactly and keep frontend.json short.
    return float(f"{float(value):.9g}")


_TABLE_CACHE: dict[FrontendSpec, dict[str, Any]] = {}


def device_tables(spec: FrontendSpec) -> dict[str, Any]:
    """What a board needs and cannot cheaply compute: the mel weights, stored sparse.

    ``mel_starts[m]`` is the first FFT bin of band m and ``mel_weights[m]`` its
    contiguous float32 weights (a dense n_mels x n_bins matrix would not fit a
    Nucleo heap). The Hann window and the DCT matrix are computed on the board
    from the spec at start-up (formulas in ``computed_on_device``).
    """
    cached = _TABLE_CACHE.get(spec)
    if cached is None:
        dense = _mel_matrix(spec)
        starts, weights = [], []
        for band in dense:
            nonzero = np.flatnonzero(band)
            if nonzero.size == 0:
                starts.append(0)
                weights.append([])
                continue
            lo, hi = int(nonzero[0]), int(nonzero[-1]) + 1
            starts.append(lo)
            weights.append([_float32_literal(w) for w in band[lo:hi]])
        bins_used = max((s + len(w) for s, w in zip(starts, weights)), default=0)
        cached = {
            "mel_starts": starts,
            "mel_weights": weights,
            "bins_used": bins_used,
            "computed_on_device": {
                "window": "w[n] = 0.5 - 0.5*cos(2*pi*n/window_length), n = 0..window_length-1 (periodic Hann)",
                "dct": "D[k][m] = sqrt((1 if k == 0 else 2)/n_mels) * cos(pi*k*(2*m+1)/(2*n_mels)), k < n_coeffs",
                "power": "P[b] = re(X[b])^2 + im(X[b])^2 for b < bins_used (higher bins have zero weight)",
            },
        }
        _TABLE_CACHE[spec] = cached
    return json.loads(json.dumps(cached))  # a private copy: callers may edit theirs


def spec_to_bundle_json(spec: FrontendSpec) -> dict[str, Any]:
    """The contents of a bundle's frontend.json: the spec fields plus ``tables``."""
    return {**spec.to_dict(), "tables": device_tables(spec)}


def load_bundle_json(path_or_data: str | os.PathLike | dict) -> "Frontend":
    """A Frontend from a bundle's frontend.json, using the tables stored in it (what the board uses)."""
    if isinstance(path_or_data, dict):
        data = path_or_data
        spec = FrontendSpec.from_dict(data)
    else:
        spec = FrontendSpec.load(path_or_data)
        data = json.loads(Path(path_or_data).read_text(encoding="utf-8"))
    return Frontend(spec, tables=data.get("tables"))


def _dense_from_tables(spec: FrontendSpec, tables: Any) -> np.ndarray:
    if not isinstance(tables, dict):
        _fail("tables must be an object")
    starts, weights = tables.get("mel_starts"), tables.get("mel_weights")
    if not isinstance(starts, list) or not isinstance(weights, list) or len(starts) != spec.n_mels or len(weights) != spec.n_mels:
        _fail(f"tables need mel_starts and mel_weights lists of {spec.n_mels} bands")
    dense = np.zeros((spec.n_mels, spec.n_bins), dtype=np.float64)
    for m, (start, band) in enumerate(zip(starts, weights)):
        if isinstance(start, bool) or not isinstance(start, int) or not isinstance(band, list):
            _fail(f"tables: band {m} is malformed")
        if start < 0 or start + len(band) > spec.n_bins:
            _fail(f"tables: band {m} runs outside the {spec.n_bins} FFT bins")
        try:
            dense[m, start : start + len(band)] = np.asarray(band, dtype=np.float32)
        except (TypeError, ValueError):
            _fail(f"tables: band {m} has non-numeric weights")
    return dense


def hann_periodic(length: int) -> np.ndarray:
    n = np.arange(length, dtype=np.float64)
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * n / length)


def dct_matrix(n_mels: int, n_coeffs: int) -> np.ndarray:
    """(n_coeffs, n_mels) orthonormal DCT-II rows, as scipy.fft.dct(norm='ortho')."""
    k = np.arange(n_coeffs, dtype=np.float64)[:, None]
    m = np.arange(n_mels, dtype=np.float64)[None, :]
    basis = np.cos(np.pi * k * (2.0 * m + 1.0) / (2.0 * n_mels)) * math.sqrt(2.0 / n_mels)
    basis[0] *= math.sqrt(0.5)
    return basis


# -- int8 input quantisation -----------------------------------------------------


def quantize_features(features: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """Features to the model's int8 input, in float32 steps a board can repeat exactly.

    q = clamp(floor(((x / scale) + zero_point) + 0.5), -128, 127), where x, scale
    and every intermediate are IEEE float32 and each operation rounds to float32.
    A board with float32 arithmetic gets identical results; one computing in
    double may differ only where a value lands within rounding of a .5 tie.
    """
    scale = float(scale)
    if not math.isfinite(scale) or scale <= 0:
        raise ModelError(f"input quantisation scale must be a positive number, got {scale}")
    if isinstance(zero_point, bool) or int(zero_point) != zero_point or not -128 <= zero_point <= 127:
        raise ModelError(f"input quantisation zero point must be an integer in [-128, 127], got {zero_point}")
    x = np.asarray(features, dtype=np.float32)
    t = np.floor(((x / np.float32(scale)) + np.float32(int(zero_point))) + np.float32(0.5))
    return np.clip(t, -128, 127).astype(np.int8)


# -- the reference ----------------------------------------------------------------


def as_pcm16(x: Any) -> np.ndarray:
    """int16 PCM as the board's microphone gives it; float audio goes through audio_io.to_int16."""
    arr = np.asarray(x)
    if arr.dtype == np.int16:
        return arr
    if np.issubdtype(arr.dtype, np.floating):
        from .audio_io import to_int16

        return to_int16(arr)
    raise AudioError(f"front end expects int16 PCM or float audio in [-1, 1], got {arr.dtype} samples")


class Frontend:
    """Host reference for a :class:`FrontendSpec` (float64 inside, float32 out).

    ``jit``: let ``stream_features`` window the frames with a compiled loop
    (``frontend_jit``; the same multiply, bit-identical) where numba is installed.
    """

    jit = True

    def __init__(self, spec: FrontendSpec | None = None, tables: dict | None = None):
        self.spec = spec = spec if spec is not None else FrontendSpec()
        dense = _dense_from_tables(spec, tables if tables is not None else device_tables(spec))
        used = np.flatnonzero(dense.any(axis=0))
        # Only bins some band uses are needed after the FFT; the rest is skipped.
        self._bin_lo = int(used[0]) if used.size else 0
        self._bin_hi = int(used[-1]) + 1 if used.size else 1
        self._mel = np.ascontiguousarray(dense[:, self._bin_lo : self._bin_hi].T)  # (bins, n_mels)
        # PCM scaling folded into the window: one multiply per sample instead of two.
        self._window = hann_periodic(spec.window_length) * spec.pcm_scale
        self._dct = None if spec.kind == "logmel" else np.ascontiguousarray(dct_matrix(spec.n_mels, spec.n_coeffs).T)

    def __repr__(self) -> str:
        return f"Frontend({self.spec!r})"

    # One implementation of the per-frame maths, for any leading shape.
    def _frames_to_features(self, frames: np.ndarray, out: np.ndarray, work: "_Workspace | None" = None,
                            pcm_start: int | None = None) -> None:
        """Features of ``frames`` (..., window_length) int16 into ``out`` (..., n_coeffs).

        With ``work`` (``_workspace``; the chunked paths) the power spectrum is
        computed ``_FFT_FRAMES`` frames at a time in reused buffers: the same
        arithmetic (``rfft(..., n=n_fft)`` transforms exactly such a zero-padded
        copy), bit-identical output, about 1.3x less CPU time for a long stream.
        """
        if work is None:
            spectrum = np.fft.rfft(frames * self._window, n=self.spec.n_fft, axis=-1)[..., self._bin_lo : self._bin_hi]
            power = np.square(spectrum.real)
            power += np.square(spectrum.imag)
        else:
            power = self._power_chunked(frames, work, pcm_start)
        mel = power @ self._mel
        np.maximum(mel, self.spec.log_floor, out=mel)
        np.log(mel, out=mel)
        out[...] = mel if self._dct is None else mel @ self._dct

    def _power_chunked(self, frames: np.ndarray, work: "_Workspace", pcm_start: int | None = None) -> np.ndarray:
        """Power spectra of ``frames`` in ``work``'s buffers. ``pcm_start``: ``frames`` are
        ``work.pcm``'s frames from that sample on (the stream path), so the compiled
        windowing loop (``frontend_jit``, where numba is installed) reads them there."""
        lead = frames.shape[:-1]
        per_item = int(np.prod(lead[1:], dtype=np.int64))  # frames per entry of the first axis
        bins = self._bin_hi - self._bin_lo
        power = work.power[: int(np.prod(lead, dtype=np.int64))].reshape(lead + (bins,))
        step = max(1, len(work.padded) // max(1, per_item))
        for i in range(0, lead[0], step):
            part = frames[i : i + step]
            rows = len(part) * per_item
            padded = work.padded[:rows]  # columns from window_length on stay zero
            if pcm_start is not None and work.jit:
                frontend_jit.window_frames(work.pcm, pcm_start + i * self.spec.hop_length, self.spec.hop_length,
                                           rows, self._window, padded)
            else:
                windowed = padded[:, : self.spec.window_length].reshape(part.shape)  # a view (first axis split)
                np.multiply(part, self._window, out=windowed)
            if _RFFT_OUT:
                spectrum = np.fft.rfft(padded, axis=-1, out=work.spectrum[:rows])
            else:  # pragma: no cover - numpy 1.x
                spectrum = np.fft.rfft(padded, axis=-1)
            spectrum = spectrum[:, self._bin_lo : self._bin_hi]
            p = power[i : i + step].reshape(rows, bins)
            imag = work.imag[:rows]
            np.square(spectrum.real, out=p)
            np.square(spectrum.imag, out=imag)
            p += imag
        return power

    def _workspace(self, frames: int) -> "_Workspace":
        """Buffers for chunks of up to ``frames`` frames."""
        per_fft = max(min(frames, _FFT_FRAMES), self.spec.n_frames)
        return _Workspace(frames, per_fft, self.spec.n_fft, self._bin_hi - self._bin_lo)

    def _frames(self, pcm: np.ndarray) -> np.ndarray:
        """Strided view (..., n_frames, window_length) over the last axis; no copy."""
        spec = self.spec
        view = np.lib.stride_tricks.sliding_window_view(pcm, spec.window_length, axis=-1)
        return view[..., :: spec.hop_length, :]

    def clip_features(self, pcm: Any) -> np.ndarray:
        """(n_frames, n_coeffs) float32 features of one clip of exactly clip_samples samples."""
        pcm = as_pcm16(pcm)
        if pcm.ndim != 1:
            raise AudioError(f"clip_features expects one clip (1-D samples), got shape {pcm.shape}")
        if len(pcm) != self.spec.clip_samples:
            raise AudioError(
                f"clip_features expects {self.spec.clip_samples} samples, got {len(pcm)}",
                hint="cut or pad clips with audio_io.fit_length first",
            )
        return self.batch_features(pcm[None, :])[0]

    def batch_features(self, pcm: Any) -> np.ndarray:
        """(N, n_frames, n_coeffs) float32 features of N clips, shape (N, clip_samples)."""
        spec = self.spec
        pcm = as_pcm16(pcm)
        if pcm.ndim != 2 or pcm.shape[1] != spec.clip_samples:
            raise AudioError(
                f"batch_features expects shape (clips, {spec.clip_samples}), got {pcm.shape}",
                hint="cut or pad clips with audio_io.fit_length first",
            )
        out = np.empty((pcm.shape[0], spec.n_frames, spec.n_coeffs), dtype=np.float32)
        frames = self._frames(pcm)
        step = max(1, _FRAMES_PER_CHUNK // spec.n_frames)
        work = self._workspace(min(step, pcm.shape[0]) * spec.n_frames)
        for start in range(0, pcm.shape[0], step):
            self._frames_to_features(frames[start : start + step], out[start : start + step], work)
        return out

    def stream_features(self, pcm: Any) -> np.ndarray:
        """(n_total_frames, n_coeffs) features of a long stream; frame k covers [k*hop, k*hop+window).

        Frames j .. j+n_frames-1 equal clip_features(pcm[j*hop : j*hop + clip_samples]).
        """
        spec = self.spec
        pcm = as_pcm16(pcm)
        if pcm.ndim != 1:
            raise AudioError(f"stream_features expects 1-D samples, got shape {pcm.shape}")
        total = 0 if len(pcm) < spec.window_length else 1 + (len(pcm) - spec.window_length) // spec.hop_length
        out = np.empty((total, spec.n_coeffs), dtype=np.float32)
        if total:
            frames = self._frames(pcm)
            work = self._workspace(min(total, _FRAMES_PER_CHUNK))
            work.pcm, work.jit = pcm, frontend_jit.AVAILABLE and self.jit
            for start in range(0, total, _FRAMES_PER_CHUNK):
                end = start + _FRAMES_PER_CHUNK
                self._frames_to_features(frames[start:end], out[start:end], work, start * spec.hop_length)
        return out

    def frame_stages(self, frame_pcm: Any) -> dict[str, np.ndarray]:
        """Every intermediate of one frame (window_length int16 samples), for debugging ports."""
        spec = self.spec
        pcm = as_pcm16(frame_pcm)
        if pcm.shape != (spec.window_length,):
            raise AudioError(f"frame_stages expects {spec.window_length} samples, got shape {pcm.shape}")
        windowed = pcm * self._window
        spectrum = np.fft.rfft(windowed, n=spec.n_fft)
        power = np.square(spectrum.real) + np.square(spectrum.imag)
        mel = power[self._bin_lo : self._bin_hi] @ self._mel
        log_mel = np.log(np.maximum(mel, spec.log_floor))
        features = np.empty(spec.n_coeffs, dtype=np.float32)
        self._frames_to_features(pcm[None, :], features[None, :])
        return {"windowed": windowed, "power": power, "mel": mel, "log_mel": log_mel, "features": features}


class _Workspace:
    """Reused buffers of the chunked feature paths: a chunk's power spectrum, and the
    zero-padded frames, spectrum and squared imaginary parts of ``fft_frames`` frames."""

    def __init__(self, frames: int, fft_frames: int, n_fft: int, bins: int):
        self.pcm: np.ndarray | None = None  # the stream path's 1-D PCM (compiled windowing)
        self.jit = False
        self.power = np.empty((frames, bins))
        self.padded = np.zeros((fft_frames, n_fft))  # the tail past window_length stays zero
        self.spectrum = np.empty((fft_frames, n_fft // 2 + 1), dtype=np.complex128)
        self.imag = np.empty((fft_frames, bins))
