"""`kws-kit simulate` runs the device loop and agrees with the trainer's streaming evaluation."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent))
import runtime_bundle  # noqa: E402

from kws_kit import streaming  # noqa: E402
from kws_kit.bundle import load_bundle  # noqa: E402
from kws_kit.cli import main  # noqa: E402
from kws_kit.errors import BoardError, ModelError  # noqa: E402
from kws_kit.simulate import simulate  # noqa: E402


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return runtime_bundle.tiny_bundle(tmp_path_factory.mktemp("runtime"))


@pytest.fixture(scope="module")
def stream(tmp_path_factory):
    s = runtime_bundle.word_stream(40.0, seed=1)
    path = tmp_path_factory.mktemp("stream") / "stream.wav"
    s.save_wav(path)
    return s, path


def trainer_view(bundle_dir: Path, stream):
    """The trainer's streaming evaluation of the same audio: score track and detections."""
    from kws_kit.evaluate import int8_scorer, recognizer_params
    from kws_kit.frontend import Frontend

    b = load_bundle(bundle_dir)
    track = streaming.score_stream(Frontend(b.spec()).stream_features, int8_scorer(b), stream,
                                   int(b.recognizer["inference_period_ms"]))
    return track, streaming.run_recognizer(track, b.labels, recognizer_params(b.recognizer))


def with_threshold(bundle_dir: Path, tmp_path: Path, threshold: float) -> Path:
    copy = tmp_path / f"bundle_{threshold}"
    shutil.copytree(bundle_dir, copy)
    rec = json.loads((copy / "recognizer.json").read_text())
    rec["detection_threshold"] = threshold
    (copy / "recognizer.json").write_text(json.dumps(rec))
    return copy


@pytest.mark.parametrize("threshold", [None, 0.4])
def test_simulate_matches_streaming_evaluation(bundle, stream, tmp_path, threshold):
    """Core promise: the device loop and the trainer's evaluation see the same scores at
    the same times and report the same detections."""
    s, wav = stream
    b = bundle if threshold is None else with_threshold(bundle, tmp_path, threshold)
    result = simulate(b, wav, "nucleo", verbose=True)
    track, expected = trainer_view(b, s)
    scores = [json.loads(line) for line in result.lines if line.startswith('{"ev":"scores"')]
    assert [ev["t_ms"] for ev in scores] == track.times_ms.tolist()
    device_scores = np.array([ev["scores"] for ev in scores], dtype=np.uint8)
    mismatched = np.flatnonzero(np.any(device_scores != track.scores, axis=1))
    assert mismatched.size == 0, f"{mismatched.size} of {len(scores)} inferences differ, first at {scores[mismatched[0]]['t_ms']} ms"
    got = [(d["t_ms"] / 1000.0, d["label"]) for d in result.detections]
    assert got == [(d.time_s, d.label) for d in expected]
    assert [round(d["score"] * 256) for d in result.detections] == [d.avg_score for d in expected]
    assert len(got) >= 2  # the comparison means something
    assert result.overruns == 0 and result.inferences == len(track.times_ms)
    if threshold == 0.4:  # a lower threshold finds at least the detections of the default one
        assert len(got) >= len(trainer_view(bundle, s)[1])


def test_stereo_or_other_rates_are_converted_on_the_host(bundle, stream, tmp_path):
    s, wav = stream
    stereo = tmp_path / "stereo.wav"
    sf.write(str(stereo), np.stack([s.audio, s.audio], axis=1), 16000, subtype="PCM_16")
    mono = simulate(bundle, wav, "esp32s3")
    converted = simulate(bundle, stereo, "esp32s3")
    assert mono.note is None
    assert "converted stereo.wav (16000 Hz, 2 channel(s))" in converted.note
    assert converted.detections == mono.detections
    assert mono.board == "esp32s3" and mono.heap["fits"]


def test_heap_estimate_and_timing(bundle, stream):
    _, wav = stream
    result = simulate(bundle, wav, "nucleo")
    h = result.heap
    info = load_bundle(bundle)
    assert h["model_bytes"] == len(info.model_bytes)
    assert h["buffers"]["audio_ring"] == 4 * 320  # 40 ms: kws.AudioIn buffers in C
    # the Nucleo runs the kws C front end: its state (int8 window, frame scratch on the C stack)
    from kws_kit.kws_frontend_memory import kws_frontend_heap_bytes

    spec = json.loads((Path(bundle) / "frontend.json").read_text())
    assert h["buffers"]["frontend"] == kws_frontend_heap_bytes(spec) < 8 * 1024
    assert simulate(bundle, wav, "esp32s3").heap["buffers"]["frontend"] > 49 * 10 * 4  # ulab: the float window
    assert h["total_bytes"] == h["model_bytes"] + h["arena_bytes"] + h["buffer_bytes"] + h["runtime_bytes"]
    assert h["heap_budget_bytes"] == 61440
    assert 0 < result.fe_us_per_frame["mean"] <= result.fe_us_per_frame["max"]
    assert 0 < result.infer_us["mean"] <= result.infer_us["max"]


def run_cli(args, capsys):
    rc = main([str(a) for a in args])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_cli_outputs_and_errors(bundle, stream, tmp_path, capsys):
    _, wav = stream
    rc, out, err = run_cli(["simulate", "--board", "nucleo", "--model", bundle, wav, "--json"], capsys)
    assert rc == 0, err
    payload = json.loads(out)
    assert payload["board"] == "nucleo_l476rg" and payload["detections"] and "lines" not in payload
    rc, out, err = run_cli(["simulate", "--model", bundle, wav, "--verbose"], capsys)
    assert rc == 0 and '{"ev":"scores","t_ms":1000,' in out and "detections:" in out and "estimated heap" in out

    rc, out, err = run_cli(["simulate", "--board", "arduino", "--model", bundle, wav], capsys)
    assert rc == 1 and "unknown board 'arduino'" in err and "nucleo_l476rg" in err and "esp32s3" in err
    assert len(err.strip().splitlines()) == 1

    broken = tmp_path / "broken"
    shutil.copytree(bundle, broken)
    (broken / "frontend.json").unlink()
    rc, out, err = run_cli(["simulate", "--model", broken, wav], capsys)
    assert rc == 1 and "missing frontend.json" in err and "Traceback" not in err

    (tmp_path / "x.wav").write_bytes(b"not audio at all")
    rc, out, err = run_cli(["simulate", "--model", bundle, tmp_path / "x.wav"], capsys)
    assert rc == 1 and "x.wav" in err and len(err.strip().splitlines()) == 1
    rc, out, err = run_cli(["simulate", "--model", bundle, tmp_path / "none.wav"], capsys)
    assert rc == 1 and "no such file" in err


def test_python_api_errors(bundle, stream):
    _, wav = stream
    with pytest.raises(BoardError) as caught:
        simulate(bundle, wav, "pico")
    assert "known boards" in caught.value.one_line()
    with pytest.raises(ModelError, match="not found"):
        simulate(Path(bundle).parent / "missing", wav)
