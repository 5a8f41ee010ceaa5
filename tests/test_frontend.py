"""The feature front end: spec, host reference, parity with a per-frame port and librosa."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from frontend_helpers import GOLDEN, SPEECH_COMMANDS, relative_error, slow_clip  # noqa: E402

from kws_kit.errors import AudioError, ModelError
from kws_kit.frontend import (
    PRESETS,
    Frontend,
    FrontendSpec,
    dct_matrix,
    device_tables,
    load_bundle_json,
    preset,
    quantize_features,
    spec_to_bundle_json,
)
from kws_kit.golden import make_signals


@pytest.fixture(scope="module")
def signals():
    return make_signals()


# -- spec --------------------------------------------------------------------------


def test_default_spec_shapes():
    spec = FrontendSpec()
    assert spec.n_frames == 49 and spec.n_frames * spec.hop_length - spec.hop_length + spec.window_length <= 16000
    assert spec.feature_shape == (49, 10)
    assert preset("mfcc13").feature_shape == (49, 13)
    assert preset("logmel40").feature_shape == (49, 40)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_spec_json_round_trip(name, tmp_path):
    spec = PRESETS[name]
    assert FrontendSpec.from_json(spec.to_json()) == spec
    assert FrontendSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    path = tmp_path / "frontend.json"
    path.write_text(json.dumps(spec_to_bundle_json(spec)))
    loaded = FrontendSpec.load(path)  # a bundle file: the tables entry is accepted
    assert loaded == spec and loaded.fingerprint() == spec.fingerprint()


def test_fingerprint_stable_and_sensitive():
    spec = FrontendSpec()
    assert spec.fingerprint() == FrontendSpec().fingerprint() == FrontendSpec.from_json(spec.to_json()).fingerprint()
    # An int given where a float is expected must not change the identity.
    assert FrontendSpec(fmin=20, fmax=4000).fingerprint() == spec.fingerprint()
    changed = {
        "kind": "logmel", "n_coeffs": 13, "n_mels": 32, "fmin": 0.0, "fmax": 8000.0, "log_floor": 1e-6,
        "mel_scale": "htk", "mel_norm": None, "hop_length": 160, "window_length": 400, "pcm_scale": 1 / 32767,
    }
    prints = {spec.fingerprint()}
    for field, value in changed.items():
        other = dataclasses.replace(spec, **{field: value, **({"n_coeffs": 40} if value == "logmel" else {})})
        prints.add(other.fingerprint())
    assert len(prints) == len(changed) + 1
    # Stable across runs and versions: the committed golden manifest recorded them.
    manifest = json.loads((GOLDEN / "manifest.json").read_text())
    for name, entry in manifest["presets"].items():
        assert PRESETS[name].fingerprint() == entry["fingerprint"]


@pytest.mark.parametrize(
    "change, words",
    [
        ({"version": 2}, "newer"),
        ({"version": 0}, "version"),
        ({"version": "1"}, "version"),
        ({"colour": "blue"}, "unknown field"),
        ({"n_fft": 500}, "power of two"),
        ({"window_length": 600}, "longer than n_fft"),
        ({"kind": "spectrogram"}, "kind"),
        ({"fmax": 9000.0}, "fmax"),
        ({"n_coeffs": 50}, "exceeds"),
        ({"kind": "logmel"}, "n_coeffs == n_mels"),
        ({"hop_length": True}, "hop_length"),
        ({"log_floor": 0.0}, "log_floor"),
        ({"fmin": float("nan")}, "fmin"),
        ({"mel_norm": "l2"}, "mel_norm"),
    ],
)
def test_spec_validation_errors(change, words):
    data = {**FrontendSpec().to_dict(), **change}
    with pytest.raises(ModelError) as info:
        FrontendSpec.from_dict(data)
    line = info.value.one_line()
    assert words in line and "\n" not in line


def test_spec_missing_fields_and_files(tmp_path):
    data = FrontendSpec().to_dict()
    del data["hop_length"]
    with pytest.raises(ModelError, match="missing field"):
        FrontendSpec.from_dict(data)
    del data["version"]
    with pytest.raises(ModelError, match="version"):
        FrontendSpec.from_dict(data)
    with pytest.raises(ModelError, match="cannot read"):
        FrontendSpec.load(tmp_path / "absent.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ModelError, match="bad.json.*not valid JSON"):
        FrontendSpec.load(bad)
    with pytest.raises(ModelError, match="unknown front end preset"):
        preset("mfcc99")


# -- tables --------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_sparse_tables_rebuild_librosa_mel(name):
    import librosa

    spec = PRESETS[name]
    tables = device_tables(spec)
    dense = librosa.filters.mel(sr=spec.sample_rate, n_fft=spec.n_fft, n_mels=spec.n_mels, fmin=spec.fmin, fmax=spec.fmax)
    rebuilt = np.zeros_like(dense)
    for m, (start, weights) in enumerate(zip(tables["mel_starts"], tables["mel_weights"])):
        assert weights, f"band {m} is empty"
        rebuilt[m, start : start + len(weights)] = np.float32(weights)
    np.testing.assert_array_equal(rebuilt, dense)  # float32-exact after the JSON round trip
    assert tables["bins_used"] == max(s + len(w) for s, w in zip(tables["mel_starts"], tables["mel_weights"]))
    assert tables["bins_used"] <= spec.n_bins
    # The point of sparse: far less than a dense float matrix on a board.
    assert sum(len(w) for w in tables["mel_weights"]) < dense.size // 20


def test_dct_matrix_is_scipy_orthonormal_dct():
    from scipy.fft import dct

    x = np.random.default_rng(0).standard_normal(40)
    np.testing.assert_allclose(dct_matrix(40, 13) @ x, dct(x, type=2, norm="ortho")[:13], atol=1e-12)


def test_bundle_tables_are_used(signals):
    bundle = spec_to_bundle_json(FrontendSpec())
    pcm = signals["vowel_word"]
    reference = Frontend().clip_features(pcm)
    np.testing.assert_array_equal(load_bundle_json(bundle).clip_features(pcm), reference)
    bundle["tables"]["mel_weights"][5] = [w * 2 for w in bundle["tables"]["mel_weights"][5]]
    assert not np.allclose(load_bundle_json(bundle).clip_features(pcm), reference)
    bundle["tables"]["mel_starts"][0] = 300
    with pytest.raises(ModelError, match="outside"):
        load_bundle_json(bundle)


# -- the reference -------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_reference_matches_slow_per_frame_port(name, signals):
    """Host vectorised reference vs loops + complex np.fft.fft + sparse tables in float32."""
    bundle = spec_to_bundle_json(PRESETS[name])
    frontend = Frontend(PRESETS[name])
    for case, pcm in signals.items():
        err = relative_error(slow_clip(pcm, bundle), frontend.clip_features(pcm))
        assert err <= 1e-3, (case, err)


def test_batch_clip_and_stream_agree(signals):
    frontend = Frontend()
    pcm = np.stack(list(signals.values()))
    batch = frontend.batch_features(pcm)
    assert batch.shape == (len(pcm), 49, 10) and batch.dtype == np.float32
    for row, clip in zip(batch, pcm):
        np.testing.assert_allclose(frontend.clip_features(clip), row, rtol=1e-6, atol=1e-5)

    # A 3.3 s stream: any window of 49 frames is the clip at that hop offset.
    stream = np.concatenate([signals["vowel_word"], signals["chirps_noise"], signals["sine_sweep"][:5000]])
    frames = frontend.stream_features(stream)
    assert frames.shape == (1 + (len(stream) - 480) // 320, 10)
    for j in (0, 1, 7, 33, 50, (len(stream) - 16000) // 320):
        clip = stream[j * 320 : j * 320 + 16000]
        np.testing.assert_allclose(frames[j : j + 49], frontend.clip_features(clip), rtol=1e-6, atol=1e-5)
    assert frontend.stream_features(stream[:479]).shape == (0, 10)
    assert frontend.stream_features(stream[:480]).shape == (1, 10)


def _plain_chunked(frontend, frames, step):
    """Features by the plain per-chunk code (``_frames_to_features`` on ``step`` rows at a time)."""
    n_coeffs = frontend.spec.n_coeffs
    out = np.empty(frames.shape[:-1] + (n_coeffs,), dtype=np.float32)
    for start in range(0, len(frames), step):
        frontend._frames_to_features(frames[start : start + step], out[start : start + step])
    return out


def test_chunked_fast_paths_equal_the_plain_code_bit_for_bit(signals):
    """stream_features / batch_features window, FFT and square in reused buffers, a few hundred
    frames at a time: the output must equal, bit for bit, the plain per-chunk code (one
    rfft(..., n=n_fft) of the whole chunk, fresh temporaries) on the same chunk partition."""
    from kws_kit import frontend as fe_module

    rng = np.random.default_rng(11)
    chunk = fe_module._FRAMES_PER_CHUNK
    parts = list(signals.values()) + [
        np.zeros(20000, dtype=np.int16),  # digital silence: log floor, DCT rounding residues
        np.full(9000, 32767, dtype=np.int16),
        np.full(9000, -32768, dtype=np.int16),
        rng.integers(-32768, 32768, 30011).astype(np.int16),
        rng.integers(-2, 3, 7777).astype(np.int16),
    ]
    stream = np.concatenate(parts)
    # more than two 4096-frame chunks, and a partial last one
    stream = np.concatenate([stream] * (1 + (2 * chunk + 100) * 320 // len(stream)))[: (2 * chunk + 77) * 320 + 480 + 111]
    clips = stream[: (chunk // 49 + 5) * 16000].reshape(-1, 16000)  # more clips than one chunk holds
    for spec in (FrontendSpec(), PRESETS["logmel40"], FrontendSpec(window_length=400, hop_length=160)):
        frontend = Frontend(spec)
        frames = frontend._frames(stream)
        assert np.array_equal(frontend.stream_features(stream), _plain_chunked(frontend, frames, chunk)), spec
        # and the float64 power spectra themselves (float32 features would hide most rounding changes)
        part = frames[chunk - 300 : chunk + 300]
        spectrum = np.fft.rfft(part * frontend._window, n=spec.n_fft, axis=-1)[:, frontend._bin_lo : frontend._bin_hi]
        power = frontend._power_chunked(part, frontend._workspace(len(part)))
        assert np.array_equal(power, np.square(spectrum.real) + np.square(spectrum.imag)), spec
        step = max(1, chunk // spec.n_frames)
        expected = _plain_chunked(frontend, frontend._frames(clips), step)
        assert np.array_equal(frontend.batch_features(clips), expected), spec
        assert np.array_equal(frontend.clip_features(clips[3]), expected[3])


def test_compiled_windowing_equals_numpy():
    """frontend_jit.window_frames (numba, the stream path) computes numpy's frames * window bit for bit."""
    from kws_kit import frontend_jit

    if not frontend_jit.AVAILABLE:
        pytest.skip("numba is not installed")
    rng = np.random.default_rng(12)
    pcm = np.concatenate([rng.integers(-32768, 32768, 20000), [-32768, 32767] * 600, np.zeros(999)]).astype(np.int16)
    for wl, hop in ((480, 320), (400, 160), (1024, 1)):
        window = Frontend(FrontendSpec(window_length=wl, hop_length=hop, n_fft=1024))._window
        count = 1 + (len(pcm) - wl - 37) // hop
        out = np.full((count + 2, wl + 5), 7.0)
        frontend_jit.window_frames(pcm, 37, hop, count, window, out)
        frames = np.lib.stride_tricks.sliding_window_view(pcm[37:], wl)[::hop][:count]
        assert np.array_equal(out[:count, :wl], frames * window)
        assert np.all(out[:count, wl:] == 7.0) and np.all(out[count:] == 7.0)  # nothing else written
    with pytest.raises(ValueError, match="outside"):
        frontend_jit.window_frames(pcm, len(pcm) - 100, 320, 1, window, out)
    with pytest.raises(ValueError, match="rows"):
        frontend_jit.window_frames(pcm, 0, 1, len(out) + 1, window, out)
    stream = pcm[: 300 * 320]
    plain = Frontend()
    plain.jit = False
    np.testing.assert_array_equal(Frontend().stream_features(stream), plain.stream_features(stream))


def test_frames_depend_only_on_their_samples(signals):
    """No clip-level normalisation: changing audio outside a frame leaves that frame alone."""
    frontend = Frontend()
    pcm = signals["chirps_noise"].copy()
    before = frontend.clip_features(pcm)
    pcm[10 * 320 + 480 :] = 32767  # everything after frame 10 (and its overlaps) becomes full scale
    after = frontend.clip_features(pcm)
    np.testing.assert_array_equal(after[:11], before[:11])
    assert not np.allclose(after[20:], before[20:])


def test_input_types():
    frontend = Frontend()
    float_audio = np.sin(np.arange(16000) * 0.05) * 0.3
    from kws_kit.audio_io import to_int16

    np.testing.assert_array_equal(frontend.clip_features(float_audio), frontend.clip_features(to_int16(float_audio)))
    with pytest.raises(AudioError, match="int16"):
        frontend.clip_features(np.zeros(16000, dtype=np.int32))
    with pytest.raises(AudioError, match="expects 16000 samples, got 15999") as info:
        frontend.clip_features(np.zeros(15999, dtype=np.int16))
    assert "fit_length" in info.value.one_line()
    with pytest.raises(AudioError):
        frontend.batch_features(np.zeros(16000, dtype=np.int16))


def test_silence_sits_at_the_log_floor():
    spec = preset("logmel40")
    features = Frontend(spec).clip_features(np.zeros(16000, dtype=np.int16))
    np.testing.assert_allclose(features, np.log(spec.log_floor), rtol=1e-6)


# -- librosa: the pipeline is the standard one ------------------------------------------


def _librosa_mel(pcm, spec):
    """librosa's power mel spectrogram, aligned with our frames.

    librosa centres a 480-sample window inside each 512-sample frame, so its frame
    k sees samples [k*hop + 16, k*hop + 496): pad 16 zeros in front to align (a
    time shift does not change |X|^2). center=False: no reflection padding.
    """
    import librosa

    offset = (spec.n_fft - spec.window_length) // 2
    y = np.concatenate([np.zeros(offset), pcm * spec.pcm_scale, np.zeros(offset)]).astype(np.float32)
    return librosa.feature.melspectrogram(
        y=y, sr=spec.sample_rate, n_fft=spec.n_fft, hop_length=spec.hop_length, win_length=spec.window_length,
        window="hann", center=False, power=2.0, n_mels=spec.n_mels, fmin=spec.fmin, fmax=spec.fmax,
        htk=spec.mel_scale == "htk", norm=spec.mel_norm,
    )


@pytest.mark.parametrize("name", ["mfcc10", "mfcc13"])
def test_matches_librosa_mfcc(name, signals):
    import librosa

    spec = PRESETS[name]
    frontend = Frontend(spec)
    for case, pcm in signals.items():
        log_mel = np.log(np.maximum(_librosa_mel(pcm, spec), spec.log_floor))
        theirs = librosa.feature.mfcc(S=log_mel, n_mfcc=spec.n_coeffs, dct_type=2, norm="ortho").T
        err = relative_error(frontend.clip_features(pcm), theirs)
        assert err <= 1e-3, (case, err)


def test_matches_librosa_mfcc_in_decibels(signals):
    """librosa.feature.mfcc straight from audio: dB = 10/ln(10) x our natural log, where
    neither our floor nor librosa's top_db=80 clipping is reached (the chirps case)."""
    import librosa

    spec = FrontendSpec()
    pcm = signals["chirps_noise"]
    mel = _librosa_mel(pcm, spec)
    assert mel.min() > spec.log_floor and mel.max() / mel.min() < 1e8  # the comparison is valid
    offset = (spec.n_fft - spec.window_length) // 2
    y = np.concatenate([np.zeros(offset), pcm * spec.pcm_scale, np.zeros(offset)]).astype(np.float32)
    theirs = librosa.feature.mfcc(
        y=y, sr=16000, n_mfcc=10, n_fft=512, hop_length=320, win_length=480, window="hann", center=False,
        n_mels=40, fmin=20.0, fmax=4000.0,
    ).T
    ours_db = Frontend(spec).clip_features(pcm) * (10.0 / np.log(10.0))
    assert relative_error(ours_db, theirs) <= 1e-3


# -- int8 input quantisation ----------------------------------------------------------


def test_quantize_formula_ties_and_clamp():
    x = np.array([0.25, -0.25, 0.75, -0.75, 0.0, 1000.0, -1000.0, 0.2, 0.3], dtype=np.float32)
    q = quantize_features(x, 0.5, 0)
    # x/scale = 0.5 -> 1, -0.5 -> 0 (ties round up), 1.5 -> 2, -1.5 -> -1; clamped at the ends.
    assert q.dtype == np.int8
    assert q.tolist() == [1, 0, 2, -1, 0, 127, -128, 0, 1]
    assert quantize_features(x, 0.5, -10).tolist() == [-9, -10, -8, -11, -10, 127, -128, -10, -9]


def test_quantize_matches_float32_steps_and_float64_except_ties():
    rng = np.random.default_rng(1)
    x = (rng.standard_normal(200_000) * 40).astype(np.float32)
    scale, zero_point = 0.5061481595039368, 73
    q = quantize_features(x, scale, zero_point)
    # The formula step by step in float32 scalars, as a board with single floats would.
    for i in range(0, len(x), 997):
        t = np.floor((x[i] / np.float32(scale) + np.float32(zero_point)) + np.float32(0.5))
        assert q[i] == int(min(127, max(-128, t)))
    # In double precision only values within rounding of a .5 tie may differ.
    q64 = np.clip(np.floor(x.astype(np.float64) / scale + zero_point + 0.5), -128, 127)
    differ = np.flatnonzero(q64 != q)
    frac = (x[differ].astype(np.float64) / scale + zero_point + 0.5) % 1.0
    assert np.all(np.minimum(frac, 1 - frac) < 1e-5)
    with pytest.raises(ModelError):
        quantize_features(x, 0.0, 0)
    with pytest.raises(ModelError):
        quantize_features(x, 1.0, 200)


# -- real recordings -------------------------------------------------------------------


@pytest.mark.skipif(not SPEECH_COMMANDS.is_dir(), reason="shared Speech Commands recordings not present")
def test_real_recordings_slow_port_matches_reference():
    from kws_kit.audio_io import fit_length, load, to_int16

    words = ["yes", "no", "go", "_silence_"]
    files = [sorted((SPEECH_COMMANDS / w).glob("*.wav"))[i] for w in words for i in (0, 7)]
    bundle = spec_to_bundle_json(FrontendSpec())
    frontend = Frontend()
    for path in files:
        pcm = to_int16(fit_length(load(path), 16000))
        err = relative_error(slow_clip(pcm, bundle), frontend.clip_features(pcm))
        assert err <= 1e-3, (path.name, err)
