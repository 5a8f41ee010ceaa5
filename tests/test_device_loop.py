"""The device streaming loop (device/kwsrt: audio, config, loop, responders, main.py)
with a stub model and front end, under CPython and the real `micropython` binary."""

from __future__ import annotations

import array
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent))
import loop_stubs  # noqa: E402

from kws_kit.device.kwsrt import audio, config, loop, responders  # noqa: E402
from kws_kit.streaming import inference_frames  # noqa: E402

HERE = Path(__file__).resolve().parent
DEVICE = HERE.parent / "device"
MICROPYTHON = shutil.which("micropython")
needs_micropython = pytest.mark.skipif(MICROPYTHON is None, reason="micropython binary not found")
PLAIN_MODULES = ("__init__", "audio", "config", "loop", "recognizer", "responders")  # no ulab needed
LABELS = ["_silence_", "go", "stop"]
BURSTS_S = (2.0, 5.0, 5.6)  # the third is inside the suppression time of the second


def burst_wav(path: Path, seconds: float = 8.0, bursts=BURSTS_S, rate: int = 16000, channels: int = 1, subtype="PCM_16"):
    rng = np.random.default_rng(0)
    x = rng.integers(-200, 200, int(seconds * rate)).astype(np.int16)
    for t in bursts:
        s = int(t * rate)
        x[s : s + rate // 2] = (8000 * np.sin(np.arange(rate // 2) * 0.2)).astype(np.int16)
    data = x if channels == 1 else np.stack([x] * channels, axis=1)
    sf.write(str(path), data, rate, subtype=subtype)
    return path


@pytest.fixture
def runtime_root(tmp_path):
    """tmp/kwsrt (the plain-MicroPython modules) + loop_stubs.py, as a board's /lib would hold them."""
    pkg = tmp_path / "root" / "kwsrt"
    pkg.mkdir(parents=True)
    for name in PLAIN_MODULES:
        shutil.copy(DEVICE / "kwsrt" / f"{name}.py", pkg / f"{name}.py")
    shutil.copy(HERE / "loop_stubs.py", tmp_path / "root" / "loop_stubs.py")
    return tmp_path / "root"


def drive(interpreter, root, *args):
    proc = subprocess.run([interpreter, str(HERE / "loop_driver.py"), str(root), *map(str, args)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


def without_timing(result):
    out = dict(result)
    lines = []
    for line in result["lines"]:
        if line.startswith("{"):
            ev = json.loads(line)
            ev.pop("infer_ms", None)
            ev.pop("fe_ms", None)
            lines.append(ev)
        else:
            lines.append(line)
    out["lines"] = lines
    return out


# --- the loop, end to end with stubs ------------------------------------------------------------


def test_wav_stream_schedule_detections_and_actions(runtime_root, tmp_path):
    wav = burst_wav(tmp_path / "bursts.wav")
    result = without_timing(drive(sys.executable, runtime_root, "wav", wav))
    n = int(8.0 * 16000)
    # Inference times are exactly the trainer's streaming schedule.
    times, _ = inference_frames(n)
    scores = [ev for ev in result["lines"] if isinstance(ev, dict) and ev["ev"] == "scores"]
    assert [ev["t_ms"] for ev in scores] == times.tolist()
    assert result["inferences"] == len(times) and result["blocks"] == n // 160
    assert result["frames"] == 1 + (n - 480) // 320 and result["now_ms"] == 8000
    dets = [ev for ev in result["lines"] if isinstance(ev, dict) and ev["ev"] == "det"]
    # One detection per burst that is not suppressed (5.6 s is 0.6 s after the 5.0 s one).
    assert [(d["label"], d["t_ms"]) for d in dets] == [("go", 2500), ("go", 5500)]
    assert all(list(d) == ["ev", "label", "score", "t_ms"] and 0.5 < d["score"] < 1 for d in dets)
    assert "heard go (0.61) at 2.500 s" in result["lines"]
    # LED: off at start, on at each detection, off again 500 ms later (polled on the audio clock).
    assert result["led"] == [0, 1, 0, 1, 0]
    assert result["d7"] == [0, 1, 0, 1, 0]
    assert result["overruns"] == 0


@needs_micropython
def test_micropython_runs_the_same_loop(runtime_root, tmp_path):
    wav = burst_wav(tmp_path / "bursts.wav")
    host = without_timing(drive(sys.executable, runtime_root, "wav", wav))
    board = without_timing(drive(MICROPYTHON, runtime_root, "wav", wav))
    assert board == host
    for mode in ("ring", "config"):
        assert drive(MICROPYTHON, runtime_root, mode) == drive(sys.executable, runtime_root, mode)


@needs_micropython
def test_steady_state_loop_allocates_nothing_under_micropython(runtime_root):
    """4,000 blocks (40 s of audio, 160 inferences) with stub model and front end: 0 bytes."""
    result = drive(MICROPYTHON, runtime_root, "alloc", 4000)
    assert result["inferences"] >= 160
    assert result["run"] == result["empty"], f"4000 blocks allocated {result['run'] - result['empty']} bytes"


def test_ring_buffer_and_config_checks_under_cpython(runtime_root):
    ring = drive(sys.executable, runtime_root, "ring")["ring"]
    assert ring[:6] == [True, 1, list(range(8)), 2, 2, [16, 32, 100]]
    assert all(ring[6:26]) and ring[26] == [0x34, 0x12, 0xFE, 0xFF]
    errors = drive(sys.executable, runtime_root, "config")["errors"]
    assert None not in errors
    assert "unknown action 'blink'" in errors[0] and "valid actions: call, led, pin, print" in errors[0]
    assert "newer than this runtime" in errors[6]
    assert "3 labels but the model has 4 outputs" in errors[8]
    assert "'up'" in errors[9] and "_silence_, go, stop" in errors[9]


# --- pieces under CPython ----------------------------------------------------------------------


def test_block_size_and_score_conversion():
    assert loop.block_samples(320, 250) == 160
    assert loop.block_samples(320, 200) == 320
    assert loop.block_samples(320, 1000) == 320
    with pytest.raises(ValueError, match="whole number of samples"):
        loop.block_samples(441, 1, 44100 + 1)
    out = bytearray(4)
    assert list(loop.to_scores(bytearray([0x80, 0xFF, 0x00, 0x7F]), -128, out)) == [0, 127, 128, 255]
    assert list(loop.to_scores(array.array("b", [-128, -1, 0, 127]), -128, out)) == [0, 127, 128, 255]
    assert list(loop.to_scores(np.array([-100, 5, 120, 127], dtype=np.int8), 10, out)) == [0, 0, 110, 117]
    assert list(loop.to_scores([-128, 0, 127, 100], -128, out)) == [0, 128, 255, 228]


def test_loop_refuses_a_ring_of_the_wrong_slot_size():
    rec = loop_stubs  # any object with labels is enough before the check
    with pytest.raises(ValueError, match="ring slots hold 320 samples, the loop needs 160"):
        loop.Loop(loop_stubs.StubSource(), audio.RingBuffer(320, 4), loop_stubs.StubFrontend(),
                  loop_stubs.StubRunner(), rec, None)


def test_wav_source_rejects_what_the_loop_cannot_play(tmp_path):
    with pytest.raises(audio.AudioFormatError, match="44100 Hz, 1 channel.*needs 16000 Hz mono 16-bit"):
        audio.WavSource(str(burst_wav(tmp_path / "a.wav", 1.0, (), rate=44100)))
    with pytest.raises(audio.AudioFormatError, match="2 channel"):
        audio.WavSource(str(burst_wav(tmp_path / "b.wav", 1.0, (), channels=2)))
    with pytest.raises(audio.AudioFormatError, match="24-bit"):
        audio.WavSource(str(burst_wav(tmp_path / "c.wav", 1.0, (), subtype="PCM_24")))
    with pytest.raises(audio.AudioFormatError, match="not integer PCM"):
        audio.WavSource(str(burst_wav(tmp_path / "d.wav", 1.0, (), subtype="FLOAT")))
    (tmp_path / "e.wav").write_bytes(b"hello, not audio")
    with pytest.raises(audio.AudioFormatError, match="not a WAV file"):
        audio.WavSource(str(tmp_path / "e.wav"))
    # A partial last slot is dropped; the samples are read verbatim.
    x = (np.arange(16000 + 100) % 3000 - 1500).astype(np.int16)
    sf.write(str(tmp_path / "f.wav"), x, 16000, subtype="PCM_16")
    src = audio.WavSource(str(tmp_path / "f.wav"))
    ring = audio.RingBuffer(160, 4)
    got = []
    while src.fill(ring):
        got.append(np.frombuffer(bytes(ring.peek()), dtype="<i2"))
        ring.advance()
    src.close()
    np.testing.assert_array_equal(np.concatenate(got), x[:16000])


def test_responders_actions_and_event_lines(tmp_path, monkeypatch):
    (tmp_path / "user_actions.py").write_text(
        "calls = []\n"
        "def on_go(label, score, t_ms):\n    calls.append((label, score, t_ms))\n"
        "def broken(label, score, t_ms):\n    raise RuntimeError('boom')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    lines = []
    pins = {}

    def factory(name):
        pins[name] = responders.FakePin(name)
        return pins[name]

    actions = config.validate_actions({
        "go": [{"do": "led", "ms": 300}, {"do": "call", "fn": "user_actions.on_go"}, {"do": "call", "fn": "user_actions.broken"}],
        "stop": [{"do": "pin", "pin": "D2", "value": 0, "ms": 0}, {"do": "print", "text": "STOP!"}],
    })
    r = responders.Responders(LABELS, actions, emit=lines.append, led_pin="LED", led_active_high=False, pin_factory=factory)
    assert pins["LED"].history == [1]  # active low: "off" is 1
    r.detected(1, 223, 1000)
    assert pins["LED"].value() == 0
    r.poll(1299)
    assert pins["LED"].value() == 0
    r.poll(1300)
    assert pins["LED"].history == [1, 0, 1]
    import user_actions

    assert user_actions.calls == [("go", 223, 1000)]
    r.detected(2, 200, 2000)
    assert pins["D2"].history == [0, 0]  # set low and kept there (ms 0)
    assert json.loads(lines[0]) == {"ev": "det", "label": "go", "score": 0.871, "t_ms": 1000}
    assert json.loads(lines[1]) == {"ev": "err", "msg": "action for go failed: boom"}
    assert lines[2:] == ['{"ev":"det","label":"stop","score":0.781,"t_ms":2000}', "STOP!"]
    start = responders.event_start("nucleo_l476rg", "kws", LABELS, 41230)
    assert start == '{"ev":"start","board":"nucleo_l476rg","runner":"kws","labels":["_silence_","go","stop"],"heap_free":41230}'
    assert json.loads(responders.event_scores(250, bytearray([1, 2, 250]), 1.234, 0.5)) == {
        "ev": "scores", "t_ms": 250, "scores": [1, 2, 250], "infer_ms": 1.23, "fe_ms": 0.5}
    with pytest.raises(ValueError, match="not a model label"):
        responders.Responders(LABELS, {"up": []})
    with pytest.raises(ValueError, match="cannot import no_such_module"):
        responders.Responders(LABELS, config.validate_actions({"go": {"do": "call", "fn": "no_such_module.f"}}))
    with pytest.raises(ValueError, match="no pin given"):
        responders.Responders(LABELS, config.validate_actions({"go": {"do": "led"}}))


def test_error_blink_pattern():
    pin = responders.FakePin()
    slept = []
    responders.blink_error(responders.Output(pin), sleep_ms=slept.append, cycles=2)
    assert pin.history == [1, 0, 1, 0, 1, 0] * 2
    assert slept == list(responders.ERROR_PATTERN_MS) * 2


def make_fake_bundle(folder: Path, labels=LABELS, version=1):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.tflite").write_bytes(b"TFL3 stub")
    (folder / "labels.txt").write_text("\n".join(labels) + "\n")
    (folder / "frontend.json").write_text(json.dumps({"version": version, "hop_length": 320, "sample_rate": 16000,
                                                      "window_length": 480, "clip_samples": 16000, "n_coeffs": 10}))
    (folder / "recognizer.json").write_text(json.dumps({"inference_period_ms": 250, "detection_threshold": 0.6}))
    return folder


def test_bundle_reading_errors(tmp_path):
    bundle = make_fake_bundle(tmp_path / "kws")
    got = config.read_bundle(str(bundle))
    assert got["labels"] == LABELS and got["model"] == b"TFL3 stub"
    (bundle / "labels.txt").unlink()
    with pytest.raises(config.ConfigError, match="missing labels.txt"):
        config.read_bundle(str(bundle))
    make_fake_bundle(tmp_path / "v2", version=2)
    with pytest.raises(config.ConfigError, match="version 2 is newer"):
        config.read_bundle(str(tmp_path / "v2"))
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(config.ConfigError, match="not valid JSON"):
        config.load_json(str(tmp_path / "bad.json"))
    with pytest.raises(config.ConfigError, match="config.json not found"):
        config.load_json(str(tmp_path / "none.json"), "config.json")
    assert config.FRONTEND_VERSION == __import__("kws_kit.device.kwsrt.frontend", fromlist=["x"]).SPEC_VERSION


# --- main.py ----------------------------------------------------------------------------------

MAIN_DRIVER = r"""
import sys
sys.path.insert(0, sys.argv[1])
import main
lines = []
try:
    main.start(sys.argv[2], emit=lines.append)
except Exception as exc:
    main.fail(exc, emit=lines.append, config_path=sys.argv[2], cycles=1)
for line in lines:
    print(line)
"""


def board_image(root: Path, tmp_path: Path, labels=LABELS, actions=None) -> Path:
    """A board's filesystem: /main.py, /lib/kwsrt with a stub runner, a fake `kws` module, /model bundle."""
    shutil.copy(DEVICE / "main.py", root / "main.py")
    shutil.copy(HERE / "loop_stubs.py", root / "kwsrt" / "runners.py")  # make_runner -> StubRunner
    shutil.copy(HERE / "loop_stubs.py", root / "kws.py")  # kws.Frontend -> StubFrontend
    bundle = make_fake_bundle(tmp_path / "model", labels)
    wav = burst_wav(tmp_path / "mic.wav", 4.0, (2.0,))
    cfg = {"board": "nucleo_l476rg", "bundle_dir": str(bundle), "led_pin": "LED",
           "audio": {"source": "wav", "sample_rate": 16000, "path": str(wav)},
           "actions": actions if actions is not None else {"go": [{"do": "print"}]}}
    (bundle / "config.json").write_text(json.dumps(cfg))
    return bundle / "config.json"


@pytest.mark.parametrize("interpreter", ["cpython", pytest.param("micropython", marks=needs_micropython)])
def test_main_runs_and_reports_errors_as_event_lines(interpreter, runtime_root, tmp_path):
    exe = sys.executable if interpreter == "cpython" else MICROPYTHON
    (tmp_path / "driver.py").write_text(MAIN_DRIVER)

    def run(cfg_path):
        proc = subprocess.run([exe, str(tmp_path / "driver.py"), str(runtime_root), str(cfg_path)],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr[-2000:]
        # Only the event lines: MicroPython also prints the traceback (sys.print_exception).
        return [line for line in proc.stdout.splitlines() if line.startswith("{")]

    cfg_path = board_image(runtime_root, tmp_path)
    lines = run(cfg_path)
    start = json.loads(lines[0])
    assert start["ev"] == "start" and start["runner"] == "stub" and start["labels"] == LABELS
    assert start["heap_free"] is None if interpreter == "cpython" else start["heap_free"] > 0
    assert [json.loads(x) for x in lines[1:]] == [{"ev": "det", "label": "go", "score": 0.609, "t_ms": 2500}]

    cfg = json.loads(cfg_path.read_text())
    cfg["actions"] = {"go": [{"do": "blink"}]}
    cfg_path.write_text(json.dumps(cfg))
    err = json.loads(run(cfg_path)[0])
    assert err["ev"] == "err" and "unknown action 'blink'" in err["msg"] and "call, led, pin, print" in err["msg"]

    cfg["actions"] = {}
    cfg_path.write_text(json.dumps(cfg))
    (tmp_path / "model" / "labels.txt").write_text("_silence_\ngo\n")
    err = json.loads(run(cfg_path)[0])
    assert err == {"ev": "err", "msg": "labels.txt has 2 labels but the model has 3 outputs"}
    (tmp_path / "model" / "recognizer.json").unlink()
    err = json.loads(run(cfg_path)[0])
    assert err["ev"] == "err" and "missing recognizer.json" in err["msg"]
