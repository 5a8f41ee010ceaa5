"""The board runtime against the real TensorFlow Lite Micro interpreter, op by op.

TFLite Micro (PyPI ``tflite-micro``) is the truth: it is what the boards run.
Every zoo model, with trained-like weights, on >= 200 inputs: the pure-ulab
runner's output of every op equals TFLite Micro's bit for bit. A second test
pins down where ai-edge-litert's reference kernels (``BUILTIN_REF``, the
previous host reference) part ways with TFLite Micro, so a change on either
side shows up here.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("keras")
pytest.importorskip("ai_edge_litert")
runtime = pytest.importorskip("tflite_micro").runtime

from kws_kit.device.kwsrt import runners  # noqa: E402
from kws_kit.models import zoo  # noqa: E402
from kws_kit.quantize import run_int8  # noqa: E402
from kws_kit.tflite_info import inspect_tflite  # noqa: E402
from zoo_trained import trained_like_int8, realistic_inputs  # noqa: E402

pytestmark = pytest.mark.slow  # ~2 min: five zoo models through the Python runner, op by op
MIN_INPUTS = 200


class TflmTrace:
    """TFLite Micro keeping every tensor, so each op's output can be read after an invoke."""

    def __init__(self, tflite: bytes):
        self.interp = runtime.Interpreter.from_bytes(
            tflite, arena_size=4 << 20, intrepreter_config=runtime.InterpreterConfig.kPreserveAllTensors)
        self.input_shape = tuple(self.interp.get_input_details(0)["shape"])

    def run(self, x_row: np.ndarray):
        self.interp.set_input(x_row.reshape(self.input_shape), 0)
        self.interp.invoke()
        return self

    def tensor(self, index: int) -> np.ndarray:
        return np.asarray(self.interp.GetTensor(index, 0)["tensor_data"]).reshape(-1)


class RefTrace:
    """ai-edge-litert BUILTIN_REF keeping every tensor."""

    def __init__(self, tflite: bytes):
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        self.interp = Interpreter(model_content=tflite, experimental_op_resolver_type=OpResolverType.BUILTIN_REF,
                                  experimental_preserve_all_tensors=True)
        self.interp.allocate_tensors()
        detail = self.interp.get_input_details()[0]
        self.index, self.input_shape = detail["index"], tuple(detail["shape"])

    def run(self, x_row: np.ndarray):
        self.interp.set_tensor(self.index, x_row.reshape(self.input_shape))
        self.interp.invoke()
        return self

    def tensor(self, index: int) -> np.ndarray:
        return self.interp.get_tensor(index).reshape(-1)


@pytest.fixture(scope="module", params=zoo.model_names())
def trained(request):
    name = request.param
    tfl = trained_like_int8(name)
    info = inspect_tflite(tfl)
    x = realistic_inputs(info.input_scale, info.input_zero_point)
    assert len(x) >= MIN_INPUTS
    return name, tfl, info, x


def test_ulab_runner_matches_tflm_op_by_op(trained):
    name, tfl, info, x = trained
    runner = runners.UlabRunner(tfl)
    tflm = TflmTrace(tfl)
    outputs = []
    for row in x:
        out, trace = runner.invoke_traced(row)
        tflm.run(row)
        for op_index, (tensor, got) in enumerate(trace):
            expected = tflm.tensor(tensor).astype(np.int8)
            if got != expected.tobytes():
                diff = np.abs(np.frombuffer(got, np.int8).astype(int) - expected)
                pytest.fail(f"{name}: op {op_index} {info.ops[op_index].name} differs from TFLite Micro "
                            f"in {np.count_nonzero(diff)} of {diff.size} values (max {diff.max()} LSB)")
        outputs.append(bytes(out.tobytes()))
    # the final outputs also agree with run_int8's TFLite Micro path, and they are not one constant answer
    expected = run_int8(tfl, x, kernels="tflm")
    assert [bytes(r.tobytes()) for r in expected] == outputs
    assert len(set(outputs)) > 20


def _fully_connected_float_requant(info, op, ref: RefTrace) -> np.ndarray:
    """What ai-edge-litert's reference FULLY_CONNECTED computes: round(acc * s_in * s_w[c] / s_out) in double."""
    x_t, w_t, y_t = (info.tensors[j] for j in (op.inputs[0], op.inputs[1], op.outputs[0]))
    weights = ref.interp.get_tensor(op.inputs[1]).reshape(w_t.shape[0], -1).astype(np.int64)
    bias = ref.interp.get_tensor(op.inputs[2]).astype(np.int64) if len(op.inputs) > 2 and op.inputs[2] >= 0 else 0
    x = ref.tensor(op.inputs[0]).reshape(-1, weights.shape[1]).astype(np.int64)
    acc = (x - x_t.zero_point[0]) @ weights.T + bias
    s_in, s_out = np.float64(np.float32(x_t.scale[0])), np.float64(np.float32(y_t.scale[0]))
    s_w = np.asarray(w_t.scale, dtype=np.float32).astype(np.float64)
    scaled = acc * (s_in * s_w / s_out)
    rounded = np.where(scaled >= 0, np.floor(scaled + 0.5), -np.floor(-scaled + 0.5)).astype(np.int64)
    return np.clip(rounded + y_t.zero_point[0], -128, 127).reshape(-1)


def test_builtin_ref_differs_only_in_fully_connected_rounding(trained):
    """BUILTIN_REF vs TFLite Micro: the first op that differs is always FULLY_CONNECTED, by 1 LSB.

    ai-edge-litert's reference FULLY_CONNECTED requantises with one rounding of
    ``acc * s_in * s_w / s_out`` in double; TFLite Micro (and every other op in
    both) uses MultiplyByQuantizedMultiplier's two roundings.
    """
    name, tfl, info, x = trained
    tflm, ref = TflmTrace(tfl), RefTrace(tfl)
    fc_ops = [op for op in info.ops if op.name == "FULLY_CONNECTED"]
    first_differences = {}
    for row in x:
        tflm.run(row)
        ref.run(row)
        for op_index, op in enumerate(info.ops):
            a, b = tflm.tensor(op.outputs[0]).astype(int), ref.tensor(op.outputs[0]).astype(int)
            if not np.array_equal(a, b):
                first_differences.setdefault(op.name, []).append(int(np.abs(a - b).max()))
                break
        for op in fc_ops:  # the reference kernel is the float formula, on every input
            np.testing.assert_array_equal(ref.tensor(op.outputs[0]), _fully_connected_float_requant(info, op, ref))
    assert set(first_differences) <= {"FULLY_CONNECTED"}, f"{name}: {first_differences}"
    assert max(first_differences.get("FULLY_CONNECTED", [0])) <= 1
    _DIFFERING_INPUTS[name] = len(first_differences.get("FULLY_CONNECTED", []))


_DIFFERING_INPUTS: dict[str, int] = {}


def test_the_difference_shows_up_on_trained_like_models():
    """Across the zoo the two kernels do part ways (else the test above would prove nothing)."""
    if len(_DIFFERING_INPUTS) < len(zoo.model_names()):
        pytest.skip("needs the per-model comparison above to have run")
    assert sum(_DIFFERING_INPUTS.values()) >= 3, _DIFFERING_INPUTS


def test_tflm_kernels_need_the_package(monkeypatch):
    import sys

    from kws_kit.errors import ModelError
    from kws_kit.quantize import Int8Runner

    tfl = trained_like_int8("tiny_conv")
    monkeypatch.setitem(sys.modules, "tflite_micro", None)  # import -> ImportError
    with pytest.raises(ModelError, match="TensorFlow Lite Micro") as err:
        Int8Runner(tfl, kernels="tflm")
    assert "pip install tflite-micro" in str(err.value.hint)
    assert Int8Runner(tfl, kernels="reference").output_shape == (1, 12)
    with pytest.raises(ModelError, match="unknown kernels"):
        Int8Runner(tfl, kernels="cmsis")
