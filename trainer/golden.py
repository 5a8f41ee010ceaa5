"""Golden vectors for the feature front end: ``python -m kws_kit.golden --out tests/golden``.

Writes, deterministically:

- ``golden.npz``: for each test signal its int16 PCM (one clip), the float32
  features for the three preset specs, the int8 model input of the default spec
  (after :func:`quantize_features` with the scale/zero point in the manifest),
  and every intermediate of one frame (windowed samples, power spectrum, mel
  energies, log-mel) for debugging device ports.
- ``manifest.json``: cases, array names, shapes, quantisation parameters and
  the spec fingerprints.
- ``frontend_<preset>.json``: the bundle frontend.json of each preset.

Signals are built from exact arithmetic and a counter-based integer hash (no
library random generator), so they are the same on every machine and easy to
recreate in C. ``--check`` regenerates in memory and compares with a folder.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path

import numpy as np

from . import atomic
from .audio_io import to_int16
from .errors import KwsError
from .frontend import PRESETS, Frontend, FrontendSpec, quantize_features, spec_to_bundle_json

GOLDEN_VERSION = 1
SAMPLE_RATE = 16000
CLIP = 16000
DEBUG_FRAME = 24
FEATURE_RTOL = 1e-4  # regenerated vs committed features: relative to max(1, max |committed|) per frame

CASE_DESCRIPTIONS = {
    "sine_sweep": "exponential sine sweep 60 Hz -> 7600 Hz, amplitude 0.5",
    "chirps_noise": "three voiced syllable-like harmonic chirps (f0 glides, 1/k harmonics) over white noise",
    "silence": "digital silence (every log-mel band at the floor)",
    "clipping": "440 Hz + 1000 Hz tones driven 3x past full scale, hard-clipped to int16",
    "quiet_noise": "white noise of about 5 LSB rms, mel energies straddle the log floor",
    "vowel_word": "'yes'-like word: glottal pulses through three formant resonators, then a band-passed /s/ fricative",
}


# -- deterministic signal sources -------------------------------------------------


def _hash_uniform(n: int, seed: int) -> np.ndarray:
    """Uniform [0, 1) from splitmix64 of (seed, index): identical on every platform."""
    golden_gamma = np.array([0x9E3779B97F4A7C15], dtype=np.uint64)
    z = (np.arange(n, dtype=np.uint64) + np.array([seed], dtype=np.uint64) * golden_gamma) + golden_gamma
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) * 2.0**-53


def _noise(n: int, seed: int) -> np.ndarray:
    """Unit-variance, roughly Gaussian noise (Irwin-Hall sum of 4 uniforms)."""
    total = sum(_hash_uniform(n, seed * 4 + i) for i in range(4))
    return (total - 2.0) * np.sqrt(3.0)


def _envelope(t: np.ndarray, start: float, stop: float, ramp: float) -> np.ndarray:
    """1 inside [start, stop] with raised-cosine ramps of ``ramp`` seconds, 0 outside."""
    rise = np.clip((t - start) / ramp, 0.0, 1.0)
    fall = np.clip((stop - t) / ramp, 0.0, 1.0)
    return 0.25 * (1 - np.cos(np.pi * rise)) * (1 - np.cos(np.pi * fall))


def _harmonic_glide(t: np.ndarray, f0_start: float, f0_stop: float, start: float, stop: float) -> np.ndarray:
    f0 = f0_start + (f0_stop - f0_start) * np.clip((t - start) / (stop - start), 0, 1)
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
    out = np.zeros_like(t)
    for k in range(1, 21):
        # Harmonics above 4 kHz are dropped, as the vocal tract would.
        out += np.where(k * f0 < 4000, np.sin(k * phase) / k, 0.0)
    return out * _envelope(t, start, stop, 0.03)


def _resonator(x: np.ndarray, freq: float, bandwidth: float) -> np.ndarray:
    from scipy.signal import lfilter

    r = np.exp(-np.pi * bandwidth / SAMPLE_RATE)
    a = [1.0, -2 * r * np.cos(2 * np.pi * freq / SAMPLE_RATE), r * r]
    return lfilter([1.0 - r], a, x)


def make_signals() -> dict[str, np.ndarray]:
    """int16 PCM for every golden case, in CASE_DESCRIPTIONS order."""
    t = np.arange(CLIP, dtype=np.float64) / SAMPLE_RATE
    signals: dict[str, np.ndarray] = {}

    f0, f1 = 60.0, 7600.0
    rate = np.log(f1 / f0)
    signals["sine_sweep"] = 0.5 * np.sin(2 * np.pi * f0 / rate * (np.exp(rate * t) - 1.0))

    voiced = (
        _harmonic_glide(t, 140, 200, 0.10, 0.35)
        + _harmonic_glide(t, 220, 160, 0.45, 0.60)
        + _harmonic_glide(t, 180, 240, 0.70, 0.90)
    )
    chirps = 0.6 * voiced / np.max(np.abs(voiced)) + 0.003 * _noise(CLIP, seed=1)
    signals["chirps_noise"] = chirps

    signals["silence"] = np.zeros(CLIP)

    signals["clipping"] = 3.0 * (0.7 * np.sin(2 * np.pi * 440 * t) + 0.5 * np.sin(2 * np.pi * 1000 * t))

    signals["quiet_noise"] = (5.0 / 32768.0) * _noise(CLIP, seed=2)

    # Glottal pulse train with a falling pitch, shaped by a one-pole low-pass.
    f0 = 130.0 - 25.0 * t
    pulses = np.diff(np.floor(np.cumsum(f0) / SAMPLE_RATE), prepend=0.0)
    from scipy.signal import butter, lfilter

    source = lfilter([1.0], [1.0, -0.95], pulses)
    vowel = sum(
        gain * _resonator(source, freq, bw) for freq, bw, gain in ((450, 80, 1.0), (1900, 120, 0.6), (2600, 160, 0.4))
    )
    vowel *= _envelope(t, 0.15, 0.50, 0.04)
    b, a = butter(4, [3800 / (SAMPLE_RATE / 2), 7200 / (SAMPLE_RATE / 2)], btype="band")
    fricative = lfilter(b, a, _noise(CLIP, seed=3)) * _envelope(t, 0.52, 0.80, 0.03)
    word = 0.5 * vowel / np.max(np.abs(vowel)) + 0.15 * fricative / np.max(np.abs(fricative))
    signals["vowel_word"] = word + 0.001 * _noise(CLIP, seed=4)

    return {name: to_int16(signals[name]) for name in CASE_DESCRIPTIONS}


# -- golden set ---------------------------------------------------------------------


def _quantisation_for(features: np.ndarray) -> tuple[float, int]:
    """Scale and zero point mapping [min, max] of the features onto int8, as a converter would."""
    lo, hi = float(min(features.min(), 0.0)), float(max(features.max(), 0.0))
    scale = float(np.float32((hi - lo) / 255.0))
    zero_point = int(np.clip(np.round(-128 - lo / scale), -128, 127))
    return scale, zero_point


def generate() -> tuple[dict[str, np.ndarray], dict, dict[str, dict]]:
    """(arrays for golden.npz, manifest, {preset: frontend.json dict})."""
    signals = make_signals()
    frontends = {name: Frontend(spec) for name, spec in PRESETS.items()}
    arrays: dict[str, np.ndarray] = {}
    for case, pcm in signals.items():
        arrays[f"{case}.pcm"] = pcm
        for name, frontend in frontends.items():
            arrays[f"{case}.{name}"] = frontend.clip_features(pcm)
    default = frontends["mfcc10"]
    scale, zero_point = _quantisation_for(np.stack([arrays[f"{c}.mfcc10"] for c in signals]))
    spec = default.spec
    for case, pcm in signals.items():
        arrays[f"{case}.mfcc10.int8"] = quantize_features(arrays[f"{case}.mfcc10"], scale, zero_point)
        start = DEBUG_FRAME * spec.hop_length
        stages = default.frame_stages(pcm[start : start + spec.window_length])
        for stage in ("windowed", "power", "mel", "log_mel"):
            arrays[f"{case}.frame.{stage}"] = stages[stage].astype(np.float32)

    manifest = {
        "golden_version": GOLDEN_VERSION,
        "generator": "python -m kws_kit.golden --out tests/golden",
        "cases": {case: CASE_DESCRIPTIONS[case] for case in signals},
        "presets": {name: {"file": f"frontend_{name}.json", "fingerprint": s.fingerprint()} for name, s in PRESETS.items()},
        "arrays": {
            "<case>.pcm": "int16 (clip_samples,) input",
            "<case>.<preset>": "float32 (n_frames, n_coeffs) features from the host reference",
            "<case>.mfcc10.int8": "int8 (n_frames, n_coeffs) = quantize_features(<case>.mfcc10, scale, zero_point)",
            "<case>.frame.windowed": f"float32 (window_length,) frame {DEBUG_FRAME}: pcm * pcm_scale * hann",
            "<case>.frame.power": f"float32 (n_fft/2+1,) frame {DEBUG_FRAME}: |FFT|^2",
            "<case>.frame.mel": f"float32 (n_mels,) frame {DEBUG_FRAME}: sparse mel weights . power",
            "<case>.frame.log_mel": f"float32 (n_mels,) frame {DEBUG_FRAME}: ln(max(mel, log_floor))",
        },
        "debug_frame": DEBUG_FRAME,
        "debug_frame_samples": [DEBUG_FRAME * spec.hop_length, DEBUG_FRAME * spec.hop_length + spec.window_length],
        "quantization": {
            "preset": "mfcc10",
            "scale": scale,
            "zero_point": zero_point,
            "formula": "q = clamp(floor(((x / scale) + zero_point) + 0.5), -128, 127), float32 arithmetic",
        },
        "shapes": {key: list(value.shape) for key, value in arrays.items()},
    }
    bundles = {name: spec_to_bundle_json(s) for name, s in PRESETS.items()}
    return arrays, manifest, bundles


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def write(out: Path) -> list[Path]:
    arrays, manifest, bundles = generate()
    written = [atomic.write_bytes(out / "golden.npz", _npz_bytes(arrays))]
    written.append(atomic.write_text(out / "manifest.json", json.dumps(manifest, indent=2) + "\n"))
    for name, data in bundles.items():
        written.append(atomic.write_text(out / f"frontend_{name}.json", json.dumps(data, indent=1) + "\n"))
    return written


def load(folder: Path) -> tuple[dict[str, np.ndarray], dict]:
    with np.load(folder / "golden.npz", allow_pickle=False) as data:
        arrays = {key: data[key] for key in data.files}
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    return arrays, manifest


def _relative_error(a: np.ndarray, b: np.ndarray) -> float:
    a = np.atleast_2d(np.asarray(a, np.float64))
    b = np.atleast_2d(np.asarray(b, np.float64))
    scale = np.maximum(1.0, np.abs(b).max(axis=-1))
    return float((np.abs(a - b).max(axis=-1) / scale).max()) if a.size else 0.0


def compare(folder: Path) -> list[str]:
    """Differences between a fresh generation and the golden files in ``folder`` (empty list: same)."""
    problems: list[str] = []
    arrays, manifest, bundles = generate()
    try:
        committed, committed_manifest = load(folder)
    except (OSError, ValueError) as exc:
        return [f"cannot read golden files in {folder}: {exc}"]
    if sorted(committed) != sorted(arrays):
        problems.append(f"array names differ: {sorted(set(committed) ^ set(arrays))}")
    for key in sorted(set(committed) & set(arrays)):
        new, old = arrays[key], committed[key]
        if new.shape != old.shape or new.dtype != old.dtype:
            problems.append(f"{key}: {new.dtype}{new.shape} vs committed {old.dtype}{old.shape}")
        elif key.endswith(".pcm"):
            if not np.array_equal(new, old):
                problems.append(f"{key}: {int(np.count_nonzero(new != old))} samples differ")
        elif key.endswith(".int8"):
            # Only rounding ties may move, by one step.
            diff = np.abs(new.astype(np.int16) - old.astype(np.int16))
            if diff.max() > 1 or np.count_nonzero(diff) > 2:
                problems.append(f"{key}: {int(np.count_nonzero(diff))} int8 values differ (max {int(diff.max())})")
        else:
            err = _relative_error(new, old)
            if err > FEATURE_RTOL:
                problems.append(f"{key}: relative error {err:.2e} > {FEATURE_RTOL}")
    for key in ("cases", "presets", "quantization", "debug_frame"):
        if key == "quantization":
            a, b = manifest[key], committed_manifest.get(key, {})
            if a["zero_point"] != b.get("zero_point") or abs(a["scale"] - b.get("scale", 0)) > 1e-6 * a["scale"]:
                problems.append(f"manifest quantization differs: {a} vs {b}")
        elif manifest[key] != committed_manifest.get(key):
            problems.append(f"manifest {key} differs")
    for name, data in bundles.items():
        path = folder / f"frontend_{name}.json"
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            problems.append(f"{path.name}: unreadable ({exc})")
            continue
        old_tables, new_tables = old.pop("tables", None), dict(data).pop("tables")
        if old != {k: v for k, v in data.items() if k != "tables"}:
            problems.append(f"{path.name}: spec fields differ")
        elif (
            old_tables is None
            or old_tables["mel_starts"] != new_tables["mel_starts"]
            or any(
                len(o) != len(n) or not np.allclose(o, n, rtol=1e-6, atol=0)
                for o, n in zip(old_tables["mel_weights"], new_tables["mel_weights"])
            )
        ):
            problems.append(f"{path.name}: mel tables differ")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kws_kit.golden", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("tests/golden"), help="folder for the golden files")
    parser.add_argument("--check", action="store_true", help="compare with the files in --out instead of writing")
    args = parser.parse_args(argv)
    try:
        if args.check:
            problems = compare(args.out)
            for line in problems:
                print(line, file=sys.stderr)
            print("golden vectors match" if not problems else f"{len(problems)} difference(s)")
            return 1 if problems else 0
        for path in write(args.out):
            print(f"wrote {path} ({path.stat().st_size} bytes)")
        return 0
    except KwsError as exc:
        print(f"error: {exc.one_line()}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
