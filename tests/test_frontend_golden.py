"""The committed golden vectors: regenerable, and reproduced by the reference and by frontend.json alone."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from frontend_helpers import GOLDEN, relative_error, slow_clip  # noqa: E402

from kws_kit import golden
from kws_kit.frontend import PRESETS, Frontend, FrontendSpec, load_bundle_json, quantize_features


@pytest.fixture(scope="module")
def committed():
    return golden.load(GOLDEN)


def test_golden_files_are_small_and_complete(committed):
    arrays, manifest = committed
    total = sum(p.stat().st_size for p in GOLDEN.iterdir() if p.is_file())
    assert total < 220_000
    for case in manifest["cases"]:
        assert arrays[f"{case}.pcm"].dtype == np.int16 and arrays[f"{case}.pcm"].shape == (16000,)
        for name, spec in PRESETS.items():
            assert arrays[f"{case}.{name}"].shape == spec.feature_shape
        assert arrays[f"{case}.mfcc10.int8"].dtype == np.int8
    assert (GOLDEN / "README.md").is_file()


def test_regenerating_matches_committed():
    assert golden.compare(GOLDEN) == []


def test_cli_writes_and_checks(tmp_path):
    assert golden.main(["--out", str(tmp_path)]) == 0
    assert golden.main(["--out", str(tmp_path), "--check"]) == 0
    arrays, _ = golden.load(tmp_path)
    arrays["sine_sweep.mfcc10"] = arrays["sine_sweep.mfcc10"] + np.float32(0.5)
    np.savez_compressed(tmp_path / "golden.npz", **arrays)
    problems = golden.compare(tmp_path)
    assert len(problems) == 1 and "sine_sweep.mfcc10" in problems[0]


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_reference_reproduces_golden(name, committed):
    arrays, manifest = committed
    frontend = load_bundle_json(GOLDEN / f"frontend_{name}.json")
    assert frontend.spec == PRESETS[name]
    for case in manifest["cases"]:
        features = frontend.clip_features(arrays[f"{case}.pcm"])
        assert relative_error(features, arrays[f"{case}.{name}"]) <= 1e-5, case


def test_golden_from_frontend_json_alone(committed):
    """What a port does: frontend.json + PCM -> features within 1e-3, int8 equal but for ties."""
    arrays, manifest = committed
    bundle = json.loads((GOLDEN / "frontend_mfcc10.json").read_text())
    q = manifest["quantization"]
    for case in manifest["cases"]:
        slow = slow_clip(arrays[f"{case}.pcm"], bundle)
        assert relative_error(slow, arrays[f"{case}.mfcc10"]) <= 1e-3, case
        slow_q = quantize_features(slow.astype(np.float32), q["scale"], q["zero_point"])
        diff = np.abs(slow_q.astype(int) - arrays[f"{case}.mfcc10.int8"].astype(int))
        assert diff.max() <= 1 and np.count_nonzero(diff) <= 2, case


def test_debug_frame_stages_are_consistent(committed):
    arrays, manifest = committed
    spec = FrontendSpec()
    k = manifest["debug_frame"]
    a, b = manifest["debug_frame_samples"]
    assert (a, b) == (k * spec.hop_length, k * spec.hop_length + spec.window_length)
    bundle = json.loads((GOLDEN / "frontend_mfcc10.json").read_text())
    tables = bundle["tables"]
    for case in manifest["cases"]:
        pcm = arrays[f"{case}.pcm"][a:b]
        windowed = arrays[f"{case}.frame.windowed"]
        n = np.arange(spec.window_length)
        np.testing.assert_allclose(windowed, pcm / 32768.0 * (0.5 - 0.5 * np.cos(2 * np.pi * n / 480)), atol=1e-7)
        power = arrays[f"{case}.frame.power"]
        np.testing.assert_allclose(power, np.abs(np.fft.fft(windowed, 512)[:257]) ** 2, rtol=1e-3, atol=1e-9)
        mel = np.array([power[s : s + len(w)] @ np.float32(w) for s, w in zip(tables["mel_starts"], tables["mel_weights"])])
        np.testing.assert_allclose(arrays[f"{case}.frame.mel"], mel, rtol=1e-4, atol=1e-12)
        np.testing.assert_allclose(arrays[f"{case}.frame.log_mel"], np.log(np.maximum(mel, spec.log_floor)), atol=1e-4)
        assert relative_error(Frontend().frame_stages(pcm)["features"], arrays[f"{case}.mfcc10"][k]) <= 1e-6
