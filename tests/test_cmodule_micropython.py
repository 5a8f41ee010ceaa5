"""The `kws` MicroPython binding, run in a MicroPython build that includes the module.

Set KWS_MICROPYTHON_KWS to such a binary (e.g. the unix port built with
USER_C_MODULES pointing at device/cmodule/kws, see docs/cmodule.md); skipped otherwise.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

import cmodule_build as cb

MICROPYTHON = os.environ.get("KWS_MICROPYTHON_KWS")
pytestmark = pytest.mark.skipif(not MICROPYTHON, reason="KWS_MICROPYTHON_KWS (MicroPython with the kws module) not set")
GOLDEN = Path(__file__).resolve().parent / "golden"

SCRIPT = """import kws, json, sys
model = open(sys.argv[1], 'rb').read()
inp = open(sys.argv[2], 'rb').read()
m = kws.Model(model, 40000)
print("meta", m.input_size, m.output_size, m.input_zero_point, m.output_zero_point, m.arena_used, round(m.input_scale, 6))
out = bytearray(m.output_size)
res = []
for i in range(len(inp) // m.input_size):
    m.invoke(inp[i * m.input_size:(i + 1) * m.input_size], out)
    res.append(bytes(out).hex())
print("out", ",".join(res))
try:
    kws.Model(model[:len(model)//2], 40000)
except ValueError as e:
    print("err", e)
try:
    kws.Model(model, 1000)
except MemoryError as e:
    print("mem", e)
spec = json.load(open(sys.argv[3]))
fe = kws.Frontend(spec)
pcm = open(sys.argv[4], 'rb').read()
n = 0
for a in range(0, len(pcm), 640):
    n += fe.push(pcm[a:a + 640])
q = bytearray(fe.n_frames * fe.n_coeffs)
fe.features_int8(q, float(sys.argv[5]), int(sys.argv[6]))
print("fe", n, fe.frames_ready, bytes(q).hex())
fe8 = kws.Frontend(spec, float(sys.argv[5]), int(sys.argv[6]))
for a in range(0, len(pcm), 640):
    fe8.push(pcm[a:a + 640])
q8 = bytearray(fe8.n_frames * fe8.n_coeffs)
fe8.features_int8(q8, float(sys.argv[5]), int(sys.argv[6]))
print("fe8", bytes(q8).hex())
for call in (lambda: fe8.features(bytearray(4 * len(q8))), lambda: fe8.features_int8(q8, 1.0, 0),
             lambda: kws.Frontend(spec, 0.0, 0), lambda: kws.Frontend(spec, 1.0)):
    try:
        call()
        print("noerr")
    except (ValueError, TypeError) as e:
        print("err8", type(e).__name__)
"""


@pytest.fixture(scope="module")
def zoo_tflite(request):
    pytest.importorskip("keras")
    return cb.zoo_models(cb.model_cache_dir(request))


def test_binding_model_and_frontend_match_the_host(zoo_tflite, tmp_path):
    from kws_kit import golden
    pytest.importorskip("tflite_micro")
    arrays, manifest = golden.load(GOLDEN)
    q = manifest["quantization"]
    tflite = zoo_tflite["tds_resnet"]
    x = cb.test_inputs(tflite, n_real=5, n_random=5, seed=9)
    (tmp_path / "m.tflite").write_bytes(tflite)
    (tmp_path / "in.bin").write_bytes(x.tobytes())
    (tmp_path / "pcm.bin").write_bytes(arrays["vowel_word.pcm"].tobytes())
    (tmp_path / "t.py").write_text(SCRIPT)
    proc = subprocess.run([MICROPYTHON, str(tmp_path / "t.py"), str(tmp_path / "m.tflite"), str(tmp_path / "in.bin"),
                           str(GOLDEN / "frontend_mfcc10.json"), str(tmp_path / "pcm.bin"), repr(q["scale"]),
                           str(q["zero_point"])], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("err8 ") == 4 and "noerr" not in proc.stdout, proc.stdout
    lines = dict(line.split(" ", 1) for line in proc.stdout.splitlines() if not line.startswith("err8"))
    size_in, size_out, zp_in, zp_out, arena_used, _ = lines["meta"].split()
    assert (int(size_in), int(size_out), int(zp_out)) == (490, 12, -128) and int(arena_used) > 0
    assert "damaged" in lines["err"] and "arena too small" in lines["mem"]
    got = np.array([np.frombuffer(bytes.fromhex(h), np.int8) for h in lines["out"].split(",")])
    np.testing.assert_array_equal(got, cb.tflm_outputs(tflite, x))
    n, ready, features = lines["fe"].split()
    assert int(n) == 49 and int(ready) == 49
    np.testing.assert_array_equal(np.frombuffer(bytes.fromhex(features), np.int8).reshape(49, 10),
                                  arrays["vowel_word.mfcc10.int8"])
    # the board's mode (kws.Frontend made with the input quantisation): the same int8 features
    assert lines["fe8"] == features
