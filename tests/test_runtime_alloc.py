"""No allocation per inference on the Nucleo's path (kws C front end + kws C runner), in real MicroPython.

The C module is replaced by a fake whose methods allocate nothing, so what is measured is the
runtime's own Python code between the two: ``KwsFrontend.features_int8()`` hands the runner a
bytearray, which ``KwsCRunner.invoke`` must pass to the module as it is (it used to copy it into a
490-int list: 2.6 KB per inference, bench/bench_runtime_heap.py). With ``KWS_MICROPYTHON_KWS`` the
same check runs against the real module.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from virtual_board import needs_micropython

ROOT = Path(__file__).resolve().parents[1]
BUNDLE = ROOT / "models" / "bundles" / "yes_no_go_stop"

FAKE_KWS = """
class Model:
    def __init__(self, model, arena):
        self.input_scale, self.input_zero_point = 0.5, -3
        self.output_scale, self.output_zero_point = 1 / 256, -128
        self.arena_used = arena
    def invoke(self, inp, out):
        out[0] = inp[0]
        return out

class Frontend:
    def __init__(self, spec, scale, zero_point):
        pass
    def push(self, pcm):
        return 1
    def features_int8(self, buf, scale, zero_point):
        buf[0] = 1
"""

SCRIPT = """
import gc, sys, json
sys.path.insert(0, 'lib')
if sys.argv[1] == 'fake':
    sys.path.insert(0, 'fake')
import kws
from kwsrt import loop, runners
spec = json.load(open('frontend.json'))
model = open('model.tflite', 'rb').read()
runner = runners.make_runner(model, 40000, ('kws',))
fe = loop.KwsFrontend(kws, spec, runner.input_scale, runner.input_zero_point)
pcm = bytearray(640)
def cycle(n):
    for i in range(n):
        fe.push(pcm)
        runner.invoke(fe.features_int8())
cycle(3)
out = []
for n in (0, 50):
    gc.collect()
    a = gc.mem_alloc()
    cycle(n)
    out.append(gc.mem_alloc() - a)
print(json.dumps({'empty': out[0], 'run': out[1], 'runner': runner.name}))
"""


def _run(micropython: str, tmp_path: Path, mode: str) -> dict:
    shutil.copytree(ROOT / "device" / "kwsrt", tmp_path / "lib" / "kwsrt", ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "fake").mkdir(exist_ok=True)
    (tmp_path / "fake" / "kws.py").write_text(FAKE_KWS)
    shutil.copy(BUNDLE / "model.tflite", tmp_path / "model.tflite")
    shutil.copy(BUNDLE / "frontend.json", tmp_path / "frontend.json")
    (tmp_path / "probe.py").write_text(SCRIPT)
    proc = subprocess.run([micropython, "probe.py", mode], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@needs_micropython
def test_kws_path_allocates_nothing_per_inference(tmp_path):
    result = _run(shutil.which("micropython"), tmp_path, "fake")
    assert result["runner"] == "kws"
    assert result["run"] - result["empty"] == 0, result


@pytest.mark.skipif(not os.environ.get("KWS_MICROPYTHON_KWS"), reason="KWS_MICROPYTHON_KWS not set")
def test_kws_path_allocates_nothing_with_the_real_module(tmp_path):
    result = _run(os.environ["KWS_MICROPYTHON_KWS"], tmp_path, "real")
    assert result["run"] - result["empty"] == 0, result
