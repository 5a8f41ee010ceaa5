"""One-op int8 models through the board runner vs TensorFlow Lite Micro, for sharp diagnostics."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")
pytest.importorskip("ai_edge_litert")
pytest.importorskip("tflite_micro")

from kws_kit.device.kwsrt import runners  # noqa: E402
from kws_kit.quantize import run_int8, to_int8_tflite  # noqa: E402
from kws_kit.tflite_info import inspect_tflite  # noqa: E402

L = keras.layers
IN_SHAPE = (11, 9, 3)


def _conv(**kw):
    return lambda x: L.Conv2D(4, kw.pop("kernel", (3, 3)), bias_initializer="random_normal", **kw)(x)


def _dw(**kw):
    return lambda x: L.DepthwiseConv2D(kw.pop("kernel", (3, 3)), bias_initializer="random_normal", **kw)(x)


def _sharp_dense(x):
    """A trained-like classifier: unit c leans on input c, whose calibration range is small (QUIET_INPUTS).

    That makes the per-channel requantisation multiplier large (right shift 3..5),
    where TFLite Micro's two roundings and the reference kernel's one often differ.
    """
    return L.Dense(7, kernel_initializer=_sharp_kernel, bias_initializer="random_normal")(L.Flatten()(x))


def _sharp_kernel(shape, dtype=None):
    rng = np.random.default_rng(3)
    w = rng.normal(0, 0.02, shape).astype(np.float32)
    w[np.arange(shape[1]), np.arange(shape[1])] = rng.uniform(0.5, 1.5, shape[1])
    return w


def _add(x):
    a = L.Conv2D(4, (1, 1))(x)
    b = L.Conv2D(4, (3, 3), padding="same")(x)
    return L.ReLU()(L.Add()([a, b]))


CASES = {
    # name: (builder, expected op)
    "conv_same": (_conv(padding="same"), "CONV_2D"),
    "conv_valid_stride": (_conv(padding="valid", strides=(2, 3)), "CONV_2D"),
    "conv_same_stride_even_kernel": (_conv(kernel=(4, 2), padding="same", strides=(2, 2)), "CONV_2D"),
    "conv_dilated": (_conv(padding="same", dilation_rate=(2, 3)), "CONV_2D"),
    "conv_dilated_valid": (_conv(padding="valid", dilation_rate=(3, 2)), "CONV_2D"),
    "conv_relu": (lambda x: L.ReLU()(_conv(padding="same")(x)), "CONV_2D"),
    "conv_relu6": (lambda x: L.ReLU(max_value=6.0)(_conv(padding="same")(x)), "CONV_2D"),
    "dw_same": (_dw(padding="same"), "DEPTHWISE_CONV_2D"),
    "dw_multiplier": (_dw(padding="same", depth_multiplier=3), "DEPTHWISE_CONV_2D"),
    "dw_valid_stride": (_dw(padding="valid", strides=(2, 2)), "DEPTHWISE_CONV_2D"),
    "dw_dilated_relu6": (lambda x: L.ReLU(max_value=6.0)(_dw(padding="same", dilation_rate=(2, 2))(x)),
                         "DEPTHWISE_CONV_2D"),
    "dense": (lambda x: L.Dense(7, bias_initializer="random_normal")(L.Flatten()(x)), "FULLY_CONNECTED"),
    "dense_relu": (lambda x: L.Dense(7, activation="relu")(L.Flatten()(x)), "FULLY_CONNECTED"),
    "avgpool_same": (lambda x: L.AveragePooling2D((3, 3), strides=(2, 2), padding="same")(x), "AVERAGE_POOL_2D"),
    "avgpool_valid": (lambda x: L.AveragePooling2D((2, 3), strides=(2, 1))(x), "AVERAGE_POOL_2D"),
    "maxpool_same": (lambda x: L.MaxPooling2D((3, 2), strides=(2, 2), padding="same")(x), "MAX_POOL_2D"),
    "maxpool_valid": (lambda x: L.MaxPooling2D((2, 2))(x), "MAX_POOL_2D"),
    "mean": (lambda x: L.GlobalAveragePooling2D()(x), "MEAN"),
    "mean_keep_dims": (lambda x: L.GlobalAveragePooling2D(keepdims=True)(x), "MEAN"),
    "add_relu": (_add, "ADD"),
    "softmax": (lambda x: L.Softmax()(L.Dense(10)(L.Flatten()(x))), "SOFTMAX"),
    "dense_sharp": (_sharp_dense, "FULLY_CONNECTED"),
}
QUIET_INPUTS = {"dense_sharp": 7}  # case -> leading flattened inputs calibrated on a 20x smaller range


@pytest.fixture(scope="module")
def one_op_models():
    keras.utils.set_random_seed(1)
    rep = np.random.default_rng(0).normal(size=(24,) + IN_SHAPE).astype(np.float32)
    out = {}
    for name, (build, _) in CASES.items():
        inputs = keras.Input(IN_SHAPE, batch_size=1)
        case_rep = rep.copy()
        case_rep.reshape(len(rep), -1)[:, :QUIET_INPUTS.get(name, 0)] *= 0.05
        out[name] = to_int8_tflite(keras.Model(inputs, build(inputs)), case_rep)
    return out


@pytest.mark.parametrize("case", sorted(CASES))
def test_single_op_bit_identical(one_op_models, case):
    tfl = one_op_models[case]
    assert CASES[case][1] in inspect_tflite(tfl).op_names
    runner = runners.UlabRunner(tfl)
    rng = np.random.default_rng(2)
    x = rng.integers(-128, 128, size=(24, runner.input_size))
    x = np.concatenate([x, np.full((1, runner.input_size), -128), np.full((1, runner.input_size), 127)]).astype(np.int8)
    expected = run_int8(tfl, x.reshape((len(x),) + runner.input_shape[1:]), kernels="tflm").reshape(len(x), -1)
    got = np.array([np.frombuffer(runner.invoke(row).tobytes(), dtype=np.int8) for row in x])
    diff = np.abs(got.astype(int) - expected)
    assert diff.max() == 0, f"{case}: {np.count_nonzero(diff)} of {diff.size} outputs differ (max {diff.max()})"
    assert len(np.unique(expected)) > 2  # the case exercises a range of outputs


def test_reference_kernels_round_sharp_dense_differently(one_op_models):
    """Where ai-edge-litert's BUILTIN_REF and TFLite Micro disagree; the board runner follows TFLite Micro."""
    tfl = one_op_models["dense_sharp"]
    runner = runners.UlabRunner(tfl)
    fc = [kernel for kernel, _ in runner._steps if type(kernel).__name__ == "FullyConnected"][0]
    assert max(int(s) for s in fc.requant.shifts) >= -6  # a large multiplier: few bits shifted out
    x = np.random.default_rng(8).integers(-128, 128, size=(1500, runner.input_size)).astype(np.int8)
    shaped = x.reshape((len(x),) + runner.input_shape[1:])
    tflm = run_int8(tfl, shaped, kernels="tflm").reshape(len(x), -1).astype(int)
    ref = run_int8(tfl, shaped, kernels="reference").reshape(len(x), -1).astype(int)
    got = np.array([np.frombuffer(runner.invoke(row).tobytes(), dtype=np.int8) for row in x]).astype(int)
    np.testing.assert_array_equal(got, tflm)
    differ = ref != tflm
    assert np.abs(ref - tflm).max() == 1 and differ.sum() >= 10  # measured: ~1 in 20 unclamped outputs
    inside = (tflm > -128) & (tflm < 127)
    assert differ.sum() <= 0.2 * inside.sum()


def test_options_are_read(one_op_models):
    model = runners.tflite.parse(one_op_models["conv_dilated"])
    (op,) = [o for o in model.operators if o.name == "CONV_2D"]
    assert op.options["dilation"] == (2, 3) and op.options["padding"] == "SAME"
    model = runners.tflite.parse(one_op_models["dw_multiplier"])
    (op,) = [o for o in model.operators if o.name == "DEPTHWISE_CONV_2D"]
    assert op.options["depth_multiplier"] == 3
    model = runners.tflite.parse(one_op_models["conv_valid_stride"])
    (op,) = [o for o in model.operators if o.name == "CONV_2D"]
    assert op.options["stride"] == (2, 3) and op.options["padding"] == "VALID"
    model = runners.tflite.parse(one_op_models["avgpool_valid"])
    (op,) = [o for o in model.operators if o.name == "AVERAGE_POOL_2D"]
    assert op.options["filter"] == (2, 3) and op.options["stride"] == (2, 1)
    model = runners.tflite.parse(one_op_models["mean_keep_dims"])
    (op,) = [o for o in model.operators if o.name == "MEAN"]
    assert op.options["keep_dims"] is True
