"""The batched int8 engine against TensorFlow Lite Micro (the truth) and the scalar primitives."""

from __future__ import annotations

import numpy as np
import pytest

from kws_kit import int8_batch as ib
from kws_kit.device.kwsrt import int8ops
from kws_kit.errors import ModelError

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1


def _int32_samples(rng, n):
    edges = np.array([0, 1, -1, INT32_MIN, INT32_MAX, INT32_MIN + 1, 1 << 30, -(1 << 30), (1 << 30) + 1])
    return np.concatenate([edges, rng.integers(INT32_MIN, INT32_MAX, n, endpoint=True),
                           rng.integers(-(1 << 16), 1 << 16, n)]).astype(np.int64)


def test_fixed_point_primitives_match_the_scalar_code():
    rng = np.random.default_rng(0)
    a = _int32_samples(rng, 3000)
    b = np.concatenate([a[:9], rng.integers(INT32_MIN, INT32_MAX, len(a) - 9, endpoint=True)])
    np.testing.assert_array_equal(ib.srdhm(a, b), [int8ops.srdhm(int(x), int(y)) for x, y in zip(a, b)])
    for e in (0, 1, 2, 5, 12, 31):
        np.testing.assert_array_equal(ib.rdbpot(a, e), [int8ops.rdbpot(int(x), e) for x in a])
    neg = -np.abs(a[a != INT32_MIN])
    np.testing.assert_array_equal(ib.exp_on_negative_values_q5(neg),
                                  [int8ops.exp_on_negative_values(int(x), 5) for x in neg])
    pos = rng.integers(1, INT32_MAX, 2000, endpoint=True)
    pos = np.concatenate([pos, [1, 2, 4095, 4096, 1 << 12, INT32_MAX]]).astype(np.int64)
    scale, bits = ib.get_reciprocal(pos, 12)
    expected = [int8ops.get_reciprocal(int(x), 12) for x in pos]
    np.testing.assert_array_equal(scale, [s for s, _ in expected])
    np.testing.assert_array_equal(bits, [u for _, u in expected])


@pytest.mark.parametrize("bound_known", [True, False])
def test_requantizer_is_multiply_by_quantized_multiplier(bound_known):
    rng = np.random.default_rng(1)
    channels = 24
    mults = rng.integers(1 << 30, INT32_MAX, channels, endpoint=True)
    shifts = rng.integers(-20, 3, channels)
    shifts[:3] = (0, 1, -1)
    acc = rng.integers(-(1 << 24), 1 << 24, (400, channels)).astype(np.int64)
    acc[:4] = [[(1 << 24) - 1], [-(1 << 24)], [0], [-1]]
    if not bound_known:
        acc[:2] = [[INT32_MAX], [INT32_MIN]]  # the int32 wrap of a large accumulator shifted left
        acc[4:50] = rng.integers(INT32_MIN, INT32_MAX, (46, channels))
    zp, lo, hi = -7, -100, 120
    got = ib.Requantizer(mults, shifts, zp, lo, hi, bound=(1 << 24) if bound_known else None)(acc.copy())
    expected = [[min(max(int8ops.mbqm(int(v), int(mults[c]), int(shifts[c])) + zp, lo), hi)
                 for c, v in enumerate(row)] for row in acc]
    assert got.dtype == np.int8
    np.testing.assert_array_equal(got, expected)


def test_softmax_rows_match_the_scalar_kernel():
    rng = np.random.default_rng(2)
    for beta, in_scale in ((1.0, 0.1), (1.0, 0.0123), (1.0, 0.9)):
        mult, shift, diff_min = int8ops.softmax_params(beta, in_scale)

        class Fake:  # the prepared constants _Softmax reads
            depth, rows = 12, 1

        kernel = ib._Softmax.__new__(ib._Softmax)
        kernel.k = Fake()
        kernel.k.mult, kernel.k.shift, kernel.k.diff_min = mult, shift, diff_min
        x = rng.integers(-128, 128, (300, 12))
        x[0], x[1], x[2, :6] = -128, 127, 127
        got = kernel.run(x.astype(np.int8))
        out = [0] * 12
        for row, g in zip(x.tolist(), got):
            int8ops.softmax_row(row, mult, shift, diff_min, out)
            assert g.tolist() == out


# --------------------------------------------------------------------------- #
# Whole models vs TensorFlow Lite Micro
# --------------------------------------------------------------------------- #


def _tflm_trace(tfl):
    runtime = pytest.importorskip("tflite_micro").runtime
    interp = runtime.Interpreter.from_bytes(tfl, arena_size=4 << 20,
                                            intrepreter_config=runtime.InterpreterConfig.kPreserveAllTensors)
    shape = tuple(interp.get_input_details(0)["shape"])

    def run(row):
        interp.set_input(row.reshape(shape), 0)
        interp.invoke()
        return lambda j: np.asarray(interp.GetTensor(j, 0)["tensor_data"]).reshape(-1).astype(np.int8)

    return run


def _first_difference(tfl, engine, x, traces):
    """Name the first op whose output differs from TFLite Micro's, for a sharp failure message."""
    tflm = _tflm_trace(tfl)
    for i, row in enumerate(x):
        tensor = tflm(row)
        for kernel, op in engine.steps:
            expected = tensor(op.outputs[0])
            got = traces[op.outputs[0]][i]
            if not np.array_equal(got, expected):
                diff = np.abs(got.astype(int) - expected)
                return (f"input {i}: op {op.index} {op.name} differs in {np.count_nonzero(diff)} of "
                        f"{diff.size} values (max {diff.max()} LSB)")
    return "no op differs"


@pytest.mark.slow
@pytest.mark.parametrize("name", __import__("kws_kit.models.zoo", fromlist=["zoo"]).model_names())
def test_zoo_models_bit_identical_to_tflm(name):
    pytest.importorskip("keras")
    pytest.importorskip("tflite_micro")
    from kws_kit.quantize import run_int8
    from kws_kit.tflite_info import inspect_tflite
    from zoo_trained import realistic_inputs, trained_like_int8

    tfl = trained_like_int8(name)
    info = inspect_tflite(tfl)
    x = realistic_inputs(info.input_scale, info.input_zero_point)
    assert len(x) >= 200
    expected = run_int8(tfl, x, kernels="tflm").reshape(len(x), -1)
    engine = ib.BatchInterpreter(tfl, chunk=64)  # several chunks, the last one partial
    got, traces = engine.run(x, trace=True)
    if not np.array_equal(got, expected):
        pytest.fail(f"{name}: {_first_difference(tfl, engine, x, traces)}")
    assert len({r.tobytes() for r in got}) > 20  # not one constant answer
    # the run_int8 / Int8Runner entry point gives the same, shaped like the other kernels
    via_runner = run_int8(tfl, x, kernels="batch")
    assert via_runner.shape[1:] == run_int8(tfl, x[:2], kernels="tflm").shape[1:]
    np.testing.assert_array_equal(via_runner.reshape(len(x), -1), expected)


@pytest.fixture(scope="module")
def one_op_models():
    keras = pytest.importorskip("keras")
    pytest.importorskip("tflite_micro")
    import test_device_runner_ops as ops
    from kws_kit.quantize import to_int8_tflite

    keras.utils.set_random_seed(1)
    rep = np.random.default_rng(0).normal(size=(24,) + ops.IN_SHAPE).astype(np.float32)
    out = {}
    for name, (build, _) in ops.CASES.items():
        inputs = keras.Input(ops.IN_SHAPE, batch_size=1)
        case_rep = rep.copy()
        case_rep.reshape(len(rep), -1)[:, :ops.QUIET_INPUTS.get(name, 0)] *= 0.05
        out[name] = to_int8_tflite(keras.Model(inputs, build(inputs)), case_rep)
    return out


@pytest.mark.slow
def test_one_op_models_bit_identical_to_tflm(one_op_models):
    """Every option the device runner's one-op tests cover: padding, stride, dilation, depth multiplier, ..."""
    from kws_kit.quantize import run_int8

    rng = np.random.default_rng(3)
    failures = []
    for name, tfl in sorted(one_op_models.items()):
        engine = ib.BatchInterpreter(tfl)
        x = rng.integers(-128, 128, size=(200, engine.input_size))
        x = np.concatenate([x, np.full((1, engine.input_size), -128), np.full((1, engine.input_size), 127)])
        x = x.astype(np.int8).reshape((len(x),) + engine.input_shape[1:])
        expected = run_int8(tfl, x, kernels="tflm").reshape(len(x), -1)
        # the channel-major kernels (default: compiled loops where numba is installed), the same
        # with numpy only, and the NHWC kernels they fall back to
        engines = (("channel-major", engine), ("channel-major numpy", ib.BatchInterpreter(tfl, jit=False)),
                   ("nhwc", ib.BatchInterpreter(tfl, channel_major=False)))
        for layout, eng in engines:
            got = eng.run(x)
            if not np.array_equal(got, expected):
                failures.append(f"{name} ({layout}): {np.count_nonzero(got != expected)} of {got.size} differ")
        assert len(np.unique(expected)) > 2, name
    assert not failures, failures


def test_bad_inputs_and_models_are_refused():
    with pytest.raises(ModelError, match="TFLite"):
        ib.BatchInterpreter(b"not a model at all, just some bytes")
    pytest.importorskip("keras")
    from zoo_trained import trained_like_int8

    engine = ib.interpreter_for(trained_like_int8("tiny_conv"))
    assert ib.interpreter_for(trained_like_int8("tiny_conv")) is engine  # prepared once
    with pytest.raises(ModelError, match="int8 inputs"):
        engine.run(np.zeros((2, engine.input_size), dtype=np.float32))
    with pytest.raises(ModelError, match="do not match"):
        engine.run(np.zeros((2, engine.input_size + 1), dtype=np.int8))


# --------------------------------------------------------------------------- #
# Channel-major kernels
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("relu", [True, False])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_channel_requantizer_is_multiply_by_quantized_multiplier(relu, dtype):
    """Every accumulator near each channel's rounding ties and clamps, with and without a ReLU floor."""
    rng = np.random.default_rng(5)
    channels = 16
    mults = rng.integers(1 << 30, INT32_MAX, channels, endpoint=True)
    shifts = rng.integers(-14, 1, channels)
    shifts[:2] = (0, -1)
    bias = rng.integers(-5000, 5000, channels)
    zp = -20
    lo, hi = (zp, 127) if relu else (-128, 127)
    bound = 40 * 255 * 128
    r = ib.ChannelRequantizer(bias, mults, shifts, zp, lo, hi, bound)
    assert r.ok and r.need_adj == (not relu)
    # accumulators: random, plus a band around every value where the output steps (ties included)
    acc = [rng.integers(-bound, bound, 3000)]
    for c in range(channels):
        scale = mults[c] / 2.0 ** (31 - shifts[c])
        steps = (np.arange(lo - zp - 1, hi - zp + 2) - 0.5) / scale - bias[c]
        acc.append(np.round(steps)[:, None] + np.arange(-2, 3)[None, :])
    acc = np.clip(np.concatenate([a.reshape(-1) for a in acc]), -bound, bound).astype(np.int64)
    acc = np.broadcast_to(acc, (channels, len(acc)))
    out = np.empty(acc.shape, dtype=np.uint8)
    r(acc.astype(dtype), out)
    for c in range(channels):
        expected = [min(max(int8ops.mbqm(int(v) + int(bias[c]), int(mults[c]), int(shifts[c])) + zp, lo), hi) + 128
                    for v in acc[c]]
        np.testing.assert_array_equal(out[c], expected, err_msg=f"channel {c}")


def test_channel_requantizer_refuses_what_float64_cannot_do_exactly():
    assert not ib.ChannelRequantizer([0], [1 << 30], [1], 0, -128, 127, 1000).ok  # left shift
    assert not ib.ChannelRequantizer([0], [1 << 30], [-3], 0, -128, 127, 1 << 40).ok  # too large a sum


def test_layout_conversions_round_trip():
    x = np.random.default_rng(6).integers(-128, 128, (5, 7 * 3)).astype(np.int8)
    cm = ib.to_channel_major(x, 7, 3)
    assert cm.shape == (3, 5, 7) and cm.dtype == np.uint8
    assert cm[2, 4, 6] == int(x[4, 6 * 3 + 2]) + 128
    np.testing.assert_array_equal(ib.to_nhwc(cm), x)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["tds_resnet", "ds_cnn_s"])
def test_chunking_and_batch_sizes_do_not_change_outputs(name):
    """Chunk boundaries, a batch of one and odd batch sizes: every row equals the row run alone,
    and both layouts agree (the zoo test above checks them against TFLite Micro)."""
    pytest.importorskip("keras")
    from zoo_trained import realistic_inputs, trained_like_int8

    tfl = trained_like_int8(name)
    ref = ib.BatchInterpreter(tfl, chunk=1000)
    x = realistic_inputs(ref.input_scale, ref.input_zero_point)[:67]
    expected = ref.run(x)
    np.testing.assert_array_equal(ib.BatchInterpreter(tfl, chunk=1000, channel_major=False).run(x), expected)
    numpy_only = ib.BatchInterpreter(tfl, chunk=1000, jit=False)
    assert not numpy_only.jit and ref.jit == ib.int8_jit.AVAILABLE
    np.testing.assert_array_equal(numpy_only.run(x), expected)
    # depthwise -> pointwise hand-over in float32 (tds_resnet's blocks); tracing turns it off
    assert bool(ref._feeds) == (name == "tds_resnet" and ib.int8_jit.AVAILABLE)
    np.testing.assert_array_equal(ref.run(x, trace=True)[0], expected)
    for chunk in (1, 7, 16, 64):
        engine = ib.BatchInterpreter(tfl, chunk=chunk)
        np.testing.assert_array_equal(engine.run(x), expected, err_msg=f"chunk {chunk}")
    one = ib.BatchInterpreter(tfl)
    for i in (0, 33, 66):
        np.testing.assert_array_equal(one.run(x[i:i + 1]), expected[i:i + 1])
    assert any(cm is not None for cm in ref.cm_steps)  # the channel-major path is the one tested


# --------------------------------------------------------------------------- #
# Compiled loops (int8_jit) against the scalar kernels
# --------------------------------------------------------------------------- #

needs_jit = pytest.mark.skipif(not ib.int8_jit.AVAILABLE, reason="numba is not installed")


def _mbqm_u8(v, bias, mult, shift, zp, lo, hi):
    return min(max(int8ops.mbqm(int(v) + int(bias), int(mult), int(shift)) + zp, lo), hi) + 128


@needs_jit
@pytest.mark.parametrize("relu", [True, False])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
def test_jit_requantize_is_multiply_by_quantized_multiplier(relu, dtype):
    """Accumulators at and around every value where each channel's output steps, both clamps."""
    rng = np.random.default_rng(7)
    channels = 12
    mults = rng.integers(1 << 30, INT32_MAX, channels, endpoint=True)
    mults[0] = INT32_MAX
    shifts = rng.integers(-14, 1, channels)
    shifts[:3] = (0, -1, -31)
    bias = rng.integers(-5000, 5000, channels)
    zp = -20
    lo, hi = (zp, 127) if relu else (-128, 127)
    bound = 40 * 255 * 128
    rq = ib.int8_jit.Requant(bias, mults, shifts, zp, lo, hi)
    assert rq.ok
    acc = [rng.integers(-bound, bound, 2000), np.array([-bound, bound, 0, 1, -1])]
    for c in range(channels):
        scale = mults[c] / 2.0 ** (31 - shifts[c])
        steps = (np.arange(lo - zp - 1, hi - zp + 2) - 0.5) / scale - bias[c]
        acc.append(np.round(steps[np.abs(steps) < 2 * bound])[:, None] + np.arange(-2, 3)[None, :])
    acc = np.clip(np.concatenate([a.reshape(-1) for a in acc]), -bound, bound).astype(np.int64)
    acc = np.ascontiguousarray(np.broadcast_to(acc, (channels, len(acc))))
    out = np.empty(acc.shape, dtype=np.uint8)
    ib.int8_jit.requantize(acc.astype(dtype), rq, out)
    for c in range(channels):
        expected = [_mbqm_u8(v, bias[c], mults[c], shifts[c], zp, lo, hi) for v in acc[c]]
        np.testing.assert_array_equal(out[c], expected, err_msg=f"channel {c}")


@needs_jit
def test_jit_requant_refuses_left_shifts():
    assert not ib.int8_jit.Requant([0, 0], [1 << 30, 1 << 30], [0, 1], 0, -128, 127).ok
    assert not ib.int8_jit.Requant([0], [0], [-1], 0, -128, 127).ok


@needs_jit
def test_jit_depthwise_equals_the_scalar_sum():
    """Extreme weights, inputs and zero points, a depth multiplier (source channels), "same"
    padding with dilation: every output equals the int64 sum of (x - zp) * w + bias
    requantised by the scalar kernel."""
    rng = np.random.default_rng(8)
    cin, n, p = 3, 9, 23
    source = np.array([0, 0, 1, 1, 2, 2], dtype=np.int64)  # depth multiplier 2
    cout = len(source)
    offsets = np.array([-6, -3, 0, 3, 6, 30], dtype=np.int64)  # 5 taps dilation 3, one all padding
    pos = np.arange(p)
    index = np.array([np.where((pos + o >= 0) & (pos + o < p), pos + o, -1) for o in offsets])
    taps = len(offsets)
    x = rng.integers(0, 256, (cin, n, p)).astype(np.uint8)
    x[:, 0], x[:, 1] = 0, 255
    weights = rng.integers(-127, 128, (taps, cout)).astype(np.int64)
    weights[:, 0], weights[:, 1] = 127, -127
    for zp, relu in ((128, False), (0, True), (255, False), (100, True)):
        mults = rng.integers(1 << 30, INT32_MAX, cout, endpoint=True)
        shifts = rng.integers(-12, -6, cout)
        bias = rng.integers(-20000, 20000, cout)
        out_zp = -5
        lo, hi = (out_zp, 127) if relu else (-128, 127)
        rq = ib.int8_jit.Requant(bias, mults, shifts, out_zp, lo, hi)
        out = np.empty((cout, n, p), dtype=np.uint8)
        ib.int8_jit.depthwise(x, source, zp, weights, rq, out, offsets)
        # the float32 centred output a following pointwise convolution reads
        as_input = np.empty(out.shape, dtype=np.float32)
        ib.int8_jit.depthwise(x, source, zp, weights, rq, as_input, offsets, centre=out_zp + 128)
        np.testing.assert_array_equal(as_input, out.astype(np.float32) - (out_zp + 128))
        centred = x.astype(np.int64) - zp
        for c in range(cout):
            acc = np.zeros((n, p), dtype=np.int64)
            for t in range(taps):
                inside = index[t] >= 0
                acc[:, inside] += weights[t, c] * centred[source[c]][:, index[t][inside]]
            expected = [[_mbqm_u8(v, bias[c], mults[c], shifts[c], out_zp, lo, hi) for v in row] for row in acc]
            np.testing.assert_array_equal(out[c], expected, err_msg=f"zp {zp} channel {c}")


def test_shift_offsets_only_for_plain_shifts():
    pos = np.arange(6)
    same = np.array([np.where((pos + o >= 0) & (pos + o < 6), pos + o, -1) for o in (-2, 0, 2)])
    assert ib._shift_offsets(same, 6, 6) == [-2, 0, 2]
    assert ib._shift_offsets(same[:, :3], 6, 3) is None  # fewer outputs (a stride)
    wrapped = same.copy()
    wrapped[0, 0] = 4  # reads the other end instead of the padding
    assert ib._shift_offsets(wrapped, 6, 6) is None
    assert ib._shift_offsets(np.full((1, 6), -1), 6, 6) is None  # a tap that only sees padding


@needs_jit
def test_jit_add_table_lookup():
    rng = np.random.default_rng(9)
    table = rng.integers(0, 256, 1 << 16).astype(np.uint8)
    a = rng.integers(0, 256, (4, 5, 7)).astype(np.uint8)
    b = rng.integers(0, 256, (4, 5, 7)).astype(np.uint8)
    a[0, 0, :2], b[0, 0, :2] = (0, 255), (255, 0)
    got = ib.int8_jit.add_table(a, b, table)
    np.testing.assert_array_equal(got, table[a.astype(np.intp) * 256 + b])
