"""The device recogniser: hand-written golden cases under CPython and the real
MicroPython binary, a brute-force cross-check, and the score conversions."""

from __future__ import annotations

import inspect
import json
import math
import random
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from kws_kit.device.kwsrt import recognizer as device_recognizer
from kws_kit.device.kwsrt.recognizer import Recognizer, int8_to_scores, prob_to_score, probs_to_scores

GOLDEN_DIR = Path(__file__).resolve().parent / "golden"
GOLDEN_FILES = sorted(GOLDEN_DIR.glob("recognizer_*.json"))
RECOGNIZER_SOURCE = Path(device_recognizer.__file__)


def run_case(module, case):
    """Replay one golden case. Kept to the MicroPython subset: this very function
    is copied into the driver the `micropython` binary runs."""
    params = case["params"]
    try:
        rec = module.Recognizer(**params)
    except ValueError:
        return {"constructor_error": True, "detections": [], "problems": []}
    detections = []
    problems = []
    for step in case["steps"]:
        if step.get("reset"):
            rec.reset()
            times = []
        elif "every" in step:
            first, last, period = step["every"]
            times = range(first, last + 1, period)
        else:
            times = [step["t"]]
        for t in times:
            error = None
            found = None
            try:
                found = rec.update(step["scores"], t)
            except ValueError:
                error = "ValueError"
            if error != step.get("error"):
                problems.append("t={}: error {} expected {}".format(t, error, step.get("error")))
            if found is not None:
                detections.append([t, found[0], found[1]])
        if "averages" in step and rec.averages() != step["averages"]:
            problems.append("averages {} expected {}".format(rec.averages(), step["averages"]))
        if "count" in step and rec.count != step["count"]:
            problems.append("count {} expected {}".format(rec.count, step["count"]))
    return {"constructor_error": False, "detections": detections, "problems": problems}


def golden_cases():
    for path in GOLDEN_FILES:
        for case in json.loads(path.read_text())["cases"]:
            yield pytest.param(case, id=f"{path.stem}:{case['name']}")


def check_result(case, result):
    if case.get("constructor_error"):
        assert result["constructor_error"], case["name"]
        return
    assert not result["constructor_error"], case["name"]
    assert result["problems"] == [], case["name"]
    assert result["detections"] == case["detections"], case["name"]


def test_golden_files_present():
    assert len(GOLDEN_FILES) >= 4
    assert sum(len(json.loads(p.read_text())["cases"]) for p in GOLDEN_FILES) >= 15


@pytest.mark.parametrize("case", list(golden_cases()))
def test_golden_cpython(case):
    check_result(case, run_case(device_recognizer, case))


MICROPYTHON = shutil.which("micropython")


@pytest.mark.skipif(MICROPYTHON is None, reason="micropython binary not found")
def test_golden_micropython(tmp_path):
    """The same cases, run by the real MicroPython unix port on the device file."""
    shutil.copy(RECOGNIZER_SOURCE, tmp_path / "recognizer.py")
    for path in GOLDEN_FILES:
        shutil.copy(path, tmp_path / path.name)
    driver = (
        "import json\nimport recognizer\n\n"
        + inspect.getsource(run_case)
        + "\n\nresults = {}\n"
        + "for name in {names!r}:\n".format(names=[p.name for p in GOLDEN_FILES])
        + "    with open(name) as f:\n"
        + "        cases = json.load(f)['cases']\n"
        + "    results[name] = [run_case(recognizer, c) for c in cases]\n"
        + "print(json.dumps(results))\n"
    )
    (tmp_path / "driver.py").write_text(driver)
    proc = subprocess.run([MICROPYTHON, "driver.py"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    results = json.loads(proc.stdout)
    for path in GOLDEN_FILES:
        cases = json.loads(path.read_text())["cases"]
        assert len(results[path.name]) == len(cases)
        for case, result in zip(cases, results[path.name]):
            check_result(case, result)


# --- brute force cross-check ---------------------------------------------------


def brute_force(labels, params, sequence):
    """Recompute every decision from scratch with lists: slow, obviously right."""
    window = params["average_window_ms"]
    threshold = math.floor(params["detection_threshold"] * 256)
    threshold = min(255, threshold)
    ignored = {i for i, name in enumerate(labels) if name in ("_silence_", "_unknown_")}
    kept: list[tuple[int, list[int]]] = []
    last_detection = None
    latched = None
    out = []
    for t, scores in sequence:
        kept = [(tt, s) for tt, s in kept if t - tt < window]
        if not kept:
            latched = None
        kept.append((t, list(scores)))
        kept = kept[-params["max_results"]:]
        sums = [sum(s[c] for _, s in kept) for c in range(len(labels))]
        count = len(kept)
        top = max(range(len(labels)), key=lambda c: (sums[c], -c))
        if latched is not None and sums[latched] // count < threshold:
            latched = None
        avg = sums[top] // count
        if (
            count >= params["minimum_count"]
            and top not in ignored
            and top != latched
            and avg >= threshold
            and (last_detection is None or t - last_detection >= params["suppression_ms"])
        ):
            out.append((t, top, avg))
            last_detection = t
            latched = top
    return out


@pytest.mark.parametrize("seed", range(6))
def test_matches_brute_force_on_random_streams(seed):
    rng = random.Random(seed)
    labels = ["_silence_", "_unknown_", "yes", "no", "go"][: rng.choice([3, 4, 5])]
    params = {
        "average_window_ms": rng.choice([500, 750, 1000, 1300]),
        "detection_threshold": rng.choice([0.3, 0.5, 0.62, 0.8]),
        "suppression_ms": rng.choice([0, 400, 1500]),
        "minimum_count": rng.choice([1, 2, 3]),
        "max_results": rng.choice([3, 4, 8, 32]),
    }
    t = 0
    sequence = []
    focus = 2
    for _ in range(1500):
        t += rng.choice([0, 100, 250, 250, 250, 400, 1200])
        if rng.random() < 0.05:
            focus = rng.randrange(len(labels))
        scores = [rng.randrange(0, 90) for _ in labels]
        scores[focus] = rng.randrange(100, 256)
        sequence.append((t, scores))
    rec = Recognizer(labels, **params)
    got = []
    for t, scores in sequence:
        found = rec.update(scores, t)
        if found is not None:
            got.append((t, found[0], found[1]))
    expected = brute_force(labels, params, sequence)
    assert got == expected
    assert len(expected) > 5  # the stream exercises detections at all


def test_accepts_bytes_numpy_and_does_not_wrap_numpy_uint8():
    labels = ["_silence_", "yes"]
    rec = Recognizer(labels, detection_threshold=0.5, minimum_count=3, suppression_ms=0)
    row = np.array([0, 250], dtype=np.uint8)
    assert rec.update(row, 0) is None
    assert rec.update(bytes([0, 250]), 250) is None
    assert rec.update(bytearray([0, 250]), 500) == (1, 250)
    # sums kept as Python ints: 3 * 250 would wrap in uint8 arithmetic
    assert rec.averages() == [0, 250]
    assert all(type(v) is int for v in rec.averages())


def test_averages_out_parameter_is_filled_in_place():
    rec = Recognizer(["_silence_", "yes"], minimum_count=1)
    rec.update([10, 20], 0)
    rec.update([30, 41], 100)
    buf = [0, 0]
    assert rec.averages(buf) is buf
    assert buf == [20, 30]


def test_constructor_validation():
    with pytest.raises(ValueError):
        Recognizer([])
    with pytest.raises(ValueError):
        Recognizer(["yes"], average_window_ms=0)
    with pytest.raises(ValueError):
        Recognizer(["yes"], suppression_ms=-1)
    with pytest.raises(ValueError):
        Recognizer(["yes"], minimum_count=0)
    with pytest.raises(ValueError):
        Recognizer(["yes"], detection_threshold=-0.1)
    rec = Recognizer(["_silence_", "_unknown_", "yes"])
    assert rec.ignore_labels == ("_silence_", "_unknown_")
    assert rec.threshold_score == 153  # default 0.6


# --- score conversions --------------------------------------------------------


def test_prob_to_score_rule():
    assert prob_to_score(0.0) == 0
    assert prob_to_score(-0.5) == 0
    assert prob_to_score(float("nan")) == 0
    assert prob_to_score(1.0) == 255
    assert prob_to_score(1.5) == 255
    assert prob_to_score(255 / 256) == 255
    assert prob_to_score(np.nextafter(255 / 256, 0)) == 254
    assert prob_to_score(0.5) == 128
    assert prob_to_score(0.7) == 179
    assert probs_to_scores([0.25, 0.999]) == [64, 255]


def test_prob_to_score_agrees_in_float32_and_float64():
    # Boards have single precision: the rule must not depend on it.
    rng = np.random.default_rng(0)
    p32 = rng.random(20000, dtype=np.float32)
    p32 = np.concatenate([p32, np.arange(257, dtype=np.float32) / 256])
    from_32 = probs_to_scores(p32.tolist())
    from_exact = np.minimum(np.floor(p32.astype(np.float64) * 256), 255).astype(int).tolist()
    assert from_32 == from_exact
    assert [prob_to_score(np.float32(p)) for p in p32[:500]] == from_exact[:500]


def test_thresholds_with_three_decimals_convert_alike_in_single_precision():
    for n in range(1001):
        assert prob_to_score(float(np.float32(n / 1000))) == prob_to_score(n / 1000), n


def test_int8_to_scores():
    assert int8_to_scores([-128, 0, 127]) == [0, 128, 255]
    assert int8_to_scores(np.array([-128, -1], dtype=np.int8)) == [0, 127]
    with pytest.raises(ValueError):
        int8_to_scores([128])


@pytest.mark.skipif(MICROPYTHON is None, reason="micropython binary not found")
def test_update_does_not_allocate_under_micropython(tmp_path):
    """Steady-state update() and averages(out) must not touch the heap on a board."""
    shutil.copy(RECOGNIZER_SOURCE, tmp_path / "recognizer.py")
    (tmp_path / "alloc.py").write_text(
        "import gc\nimport recognizer\n"
        "r = recognizer.Recognizer(['_silence_', '_unknown_', 'yes', 'no'])\n"
        "quiet = bytearray([250, 3, 2, 0])\n"
        "buf = [0] * 4\n"
        "def run(n, t):\n"
        "    for i in range(n):\n"
        "        r.update(quiet, t)\n"
        "        r.averages(buf)\n"
        "        t += 250\n"
        "    return t\n"
        "t = run(20, 0)\n"
        "deltas = []\n"
        "for n in (0, 2000):\n"
        "    gc.collect()\n"
        "    before = gc.mem_alloc()\n"
        "    t = run(n, t)\n"
        "    deltas.append(gc.mem_alloc() - before)\n"
        "print(deltas[0], deltas[1])\n"
    )
    proc = subprocess.run([MICROPYTHON, "alloc.py"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    empty_run, long_run = (int(v) for v in proc.stdout.split())
    assert long_run == empty_run, f"2000 updates allocated {long_run - empty_run} bytes"
