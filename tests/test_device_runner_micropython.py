"""The flatbuffer reader and the integer arithmetic under a real MicroPython binary."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from kws_kit.device.kwsrt import int8ops
from kws_kit.tflite_info import inspect_tflite

KWSRT = Path(int8ops.__file__).resolve().parent


def _micropython():
    exe = shutil.which("micropython")
    if exe is None:
        pytest.skip("micropython not on PATH")
    return exe


def _run(exe, script: str, cwd: Path, timeout=120) -> str:
    proc = subprocess.run([exe, "-X", "heapsize=16M", "-c", script], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    return proc.stdout


@pytest.fixture(scope="module")
def small_model():
    keras = pytest.importorskip("keras")
    from kws_kit.models import zoo
    from kws_kit.quantize import to_int8_tflite

    keras.utils.set_random_seed(0)
    model = zoo.build("tds_resnet", (49, 10), 12, batch_size=1)
    rep = np.random.default_rng(0).normal(size=(16, 49, 10)).astype(np.float32)
    return to_int8_tflite(model, rep)


def test_reader_under_micropython(tmp_path, small_model):
    exe = _micropython()
    shutil.copy(KWSRT / "tflite.py", tmp_path / "tflite.py")
    (tmp_path / "model.tflite").write_bytes(small_model)
    out = _run(exe, "import tflite\nm = tflite.parse(open('model.tflite', 'rb').read())\n"
                    "for line in tflite.describe(m): print(line)\n"
                    "print('IO', m.inputs[0], m.outputs[0], m.input_tensor().scale(), m.input_tensor().zero_point())\n",
               tmp_path)
    info = inspect_tflite(small_model)
    tensors = [line.split() for line in out.splitlines() if line.startswith("T ")]
    ops = [line.split() for line in out.splitlines() if line.startswith("O ")]
    assert [op[2] for op in ops] == info.op_names
    assert len(tensors) == len(info.tensors)
    for fields, t in zip(tensors, info.tensors):
        shape = tuple(int(v) for v in fields[3].split(",")) if len(fields) == 5 else ()
        assert shape == t.shape and fields[2] == t.dtype
        assert (fields[-1] == "const") == t.is_constant
    io = next(line for line in out.splitlines() if line.startswith("IO")).split()
    assert float(io[3]) == pytest.approx(info.input_scale, rel=1e-6) and int(io[4]) == info.input_zero_point
    # damaged bytes give a ValueError there too
    out = _run(exe, "import tflite\ndata = open('model.tflite', 'rb').read()\nn = 0\n"
                    "for cut in range(0, len(data), max(1, len(data) // 40)):\n"
                    "    try:\n        tflite.parse(data[:cut])\n    except ValueError:\n        n += 1\n"
                    "print('refused', n)\n", tmp_path)
    assert int(out.split()[-1]) >= 35


def test_integer_arithmetic_under_micropython(tmp_path):
    """Multipliers, softmax fixed point and exp agree between MicroPython and CPython."""
    exe = _micropython()
    shutil.copy(KWSRT / "int8ops.py", tmp_path / "int8ops.py")
    rng = np.random.default_rng(3)
    scales = [float(np.float32(v)) for v in rng.uniform(1e-3, 0.5, 30)]
    rows = rng.integers(-128, 128, size=(10, 12)).tolist()
    script = (
        "import int8ops as K\n"
        f"scales = {scales!r}\nrows = {rows!r}\n"
        "for i in range(len(scales) - 2):\n"
        "    d = K.Dbl.from_f32(scales[i]).mul(K.Dbl.from_f32(scales[i + 1])).div(K.Dbl.from_f32(scales[i + 2]))\n"
        "    print('Q', *K.quantize_multiplier(d))\n"
        "for i, s in enumerate(scales[:10]):\n"
        "    m, sh, dmin = K.softmax_params(1.0, s * 4)\n"
        "    out = [0] * 12\n"
        "    K.softmax_row(rows[i], m, sh, dmin, out)\n"
        "    print('S', *out)\n"
        "    print('A', *K.activation_range('RELU6', s, -3))\n"
        "for x in range(-2**31, 0, 2**31 // 50):\n"
        "    print('E', K.exp_on_negative_values(x, 5))\n"
    )
    got = _run(exe, script, tmp_path).splitlines()
    expected = []
    for i in range(len(scales) - 2):
        d = int8ops.Dbl.from_f32(scales[i]).mul(int8ops.Dbl.from_f32(scales[i + 1])).div(int8ops.Dbl.from_f32(scales[i + 2]))
        expected.append("Q %d %d" % int8ops.quantize_multiplier(d))
    for i, s in enumerate(scales[:10]):
        m, sh, dmin = int8ops.softmax_params(1.0, s * 4)
        out = [0] * 12
        int8ops.softmax_row(rows[i], m, sh, dmin, out)
        expected.append("S " + " ".join(map(str, out)))
        expected.append("A %d %d" % int8ops.activation_range("RELU6", s, -3))
    for x in range(-2**31, 0, 2**31 // 50):
        expected.append("E %d" % int8ops.exp_on_negative_values(x, 5))
    assert got == expected


def test_runner_under_micropython_with_ulab(tmp_path, small_model):
    """With KWS_MICROPYTHON pointing at a MicroPython built with ulab, the runner there matches the host."""
    exe = os.environ.get("KWS_MICROPYTHON")
    if not exe:
        pytest.skip("KWS_MICROPYTHON not set (MicroPython with ulab)")
    from kws_kit.device.kwsrt.runners import UlabRunner
    from kws_kit.quantize import run_int8

    pkg = tmp_path / "kwsrt"
    shutil.copytree(KWSRT, pkg, ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "model.tflite").write_bytes(small_model)
    host = UlabRunner(small_model)
    x = np.random.default_rng(4).integers(-128, 128, size=(3, host.input_size)).astype(np.int8)
    (tmp_path / "inputs.bin").write_bytes(x.tobytes())
    out = _run(exe, "from kwsrt.runners import UlabRunner\n"
                    "r = UlabRunner(open('model.tflite', 'rb').read())\n"
                    "data = open('inputs.bin', 'rb').read()\nn = r.input_size\n"
                    "for i in range(len(data) // n):\n"
                    "    print(*r.invoke(data[i * n:(i + 1) * n]))\n", tmp_path, timeout=600)
    got = np.array([[int(v) for v in line.split()] for line in out.splitlines() if line.strip()])
    np.testing.assert_array_equal(got, run_int8(small_model, x.reshape((3,) + host.input_shape[1:])))
