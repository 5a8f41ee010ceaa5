"""The board's pure-Python int8 runner against TensorFlow Lite Micro: bit-identical outputs."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")
pytest.importorskip("ai_edge_litert")
pytest.importorskip("tflite_micro")

from conftest import tone_word  # noqa: E402
from kws_kit.device.kwsrt import int8ops, runners, tflite  # noqa: E402
from kws_kit.frontend import Frontend, quantize_features  # noqa: E402
from kws_kit.models import zoo  # noqa: E402
from kws_kit.quantize import run_int8, to_int8_tflite  # noqa: E402
from kws_kit.tflite_info import inspect_tflite  # noqa: E402
from zoo_trained import realistic_batch_norm  # noqa: E402

SHAPE, N_CLASSES = (49, 10), 12
WORDS = ["yes", "no", "up", "down", "left", "right", "go", "stop"]


@pytest.fixture(scope="session")
def audio_features():
    """(16, 49, 10) float features of generated 'words' from the project front end."""
    pcm = np.stack([tone_word(w, seed=s) for s in range(2) for w in WORDS])
    return Frontend().batch_features(pcm)


@pytest.fixture(scope="session")
def zoo_int8(audio_features):
    """Every zoo model with random weights, int8-converted once per session."""
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    out = {}
    for name in zoo.model_names():
        model = zoo.build(name, SHAPE, N_CLASSES, batch_size=1)
        realistic_batch_norm(model, rng)
        rep = np.concatenate([audio_features, rng.normal(audio_features.mean(), audio_features.std(),
                                                         size=(16,) + SHAPE)]).astype(np.float32)
        out[name] = to_int8_tflite(model, rep)
    return out


def inputs_for(runner, audio_features, rng):
    """>= 50 int8 inputs: random, all-extreme, mixed extremes, and real front-end features."""
    n = runner.input_size
    rand = rng.integers(-128, 128, size=(26, n))
    extremes = np.array([np.full(n, -128), np.full(n, 127), np.full(n, runner.input_zero_point)])
    mixed = rng.choice([-128, 127], size=(5, n))
    real = quantize_features(audio_features, runner.input_scale, runner.input_zero_point).reshape(len(audio_features), n)
    return np.concatenate([rand, extremes, mixed, real]).astype(np.int8)


@pytest.mark.parametrize("name", zoo.model_names())
def test_zoo_model_bit_identical(zoo_int8, audio_features, name):
    tfl = zoo_int8[name]
    runner = runners.UlabRunner(tfl)
    x = inputs_for(runner, audio_features, np.random.default_rng(1))
    assert len(x) >= 50
    expected = run_int8(tfl, x.reshape((len(x),) + runner.input_shape[1:]), kernels="tflm")
    got = np.array([np.frombuffer(runner.invoke(row).tobytes(), dtype=np.int8) for row in x])
    assert got.shape == expected.shape == (len(x), N_CLASSES)
    mismatched = np.flatnonzero(np.any(got != expected, axis=1))
    assert mismatched.size == 0, f"{name}: {mismatched.size} of {len(x)} inputs differ, first row {mismatched[:1]}"
    # not one constant answer (random weights can saturate the softmax; tests/test_tflm_parity.py
    # checks bit-identity on trained-like models whose outputs spread widely)
    assert len({bytes(r) for r in got}) > 3


@pytest.mark.parametrize("name", zoo.model_names())
def test_reader_matches_host_inspection(zoo_int8, name):
    tfl = zoo_int8[name]
    model = tflite.parse(tfl)
    info = inspect_tflite(tfl)
    assert model.op_names() == info.op_names
    assert [t.shape for t in model.tensors] == [t.shape for t in info.tensors]
    for ours, theirs in zip(model.tensors, info.tensors):
        assert ours.type_name() == theirs.dtype
        assert ours.scales == pytest.approx(theirs.scale, rel=0, abs=0)
        assert ours.zero_points == theirs.zero_point
        assert ours.is_constant() == theirs.is_constant
    for op, ref in zip(model.operators, info.ops):
        assert op.inputs == ref.inputs and op.outputs == ref.outputs
        for key, value in ref.options.items():
            assert op.options[key] == value, (op.name, key)


def test_runner_interface_and_plan(zoo_int8):
    tfl = zoo_int8["tds_resnet"]
    info = inspect_tflite(tfl)
    runner = runners.make_runner(tfl, info.arena_bytes, prefer=("kws", "ml", "ulab"))
    assert isinstance(runner, runners.UlabRunner) and runner.name == "ulab"
    assert runner.input_scale == pytest.approx(info.input_scale) and runner.input_zero_point == info.input_zero_point
    assert runner.output_scale == pytest.approx(1 / 256) and runner.output_zero_point == -128
    # liveness sharing: the arena is the host's plan, far below keeping every activation
    assert runner.arena_size == info.activation_bytes
    total = sum(t.nbytes() for t in runner.model.tensors if not t.is_constant())
    assert runner.arena_size < total
    # every accepted input form gives the same answer; the output buffer is reused
    x = np.random.default_rng(3).integers(-128, 128, runner.input_size).astype(np.int8)
    first = runner.invoke(x)
    snapshot = bytes(first.tobytes())
    from array import array

    for form in (x.tobytes(), bytearray(x.tobytes()), array("b", x.tolist()), x.tolist()):
        out = runner.invoke(form)
        assert out is first and out.typecode == "b" and len(out) == N_CLASSES
        assert bytes(out.tobytes()) == snapshot
    with pytest.raises(ValueError, match="expected 490 input values"):
        runner.invoke(x[:-1])


def test_make_runner_prefers_c_module_then_openmv(zoo_int8, monkeypatch):
    """KwsCRunner / OpenMVRunner against fakes of the board modules (the real ones exist only there)."""
    import sys
    import types

    tfl = zoo_int8["tiny_conv"]
    reference = runners.UlabRunner(tfl)
    x = np.random.default_rng(4).integers(-128, 128, reference.input_size).astype(np.int8)
    expected = bytes(reference.invoke(x).tobytes())

    class FakeKwsModel:
        def __init__(self, model_bytes, arena_size):
            self._r = runners.UlabRunner(model_bytes)
            self.input_scale, self.input_zero_point = self._r.input_scale, self._r.input_zero_point
            self.output_scale, self.output_zero_point = self._r.output_scale, self._r.output_zero_point
            self.arena_used = arena_size

        def invoke(self, in_buf, out_buf):
            assert len(in_buf) == self._r.input_size and len(out_buf) == self._r.output_size
            out_buf[:] = self._r.invoke(in_buf)

    monkeypatch.setitem(sys.modules, "kws", types.SimpleNamespace(Model=FakeKwsModel))
    r = runners.make_runner(tfl, 12345)
    assert isinstance(r, runners.KwsCRunner) and r.arena_used == 12345
    assert bytes(r.invoke(x).tobytes()) == expected

    class FakeMlModel:
        """OpenMV ml.Model: quantises float inputs, returns dequantised float outputs."""

        def __init__(self, model_bytes):
            self._r = runners.UlabRunner(model_bytes)

        def predict(self, inputs):
            r = self._r
            q = np.clip(np.floor(np.asarray(inputs[0]).reshape(-1) / r.input_scale + 0.5) + r.input_zero_point, -128, 127)
            y = np.frombuffer(r.invoke(q.astype(np.int8)).tobytes(), dtype=np.int8)
            return [((y.astype(np.float32) - r.output_zero_point) * r.output_scale).reshape(1, -1)]

    monkeypatch.delitem(sys.modules, "kws")
    monkeypatch.setitem(sys.modules, "kws", None)  # import kws -> ImportError
    monkeypatch.setitem(sys.modules, "ml", types.SimpleNamespace(Model=FakeMlModel))
    r = runners.make_runner(tfl, 0)
    assert isinstance(r, runners.OpenMVRunner)
    assert bytes(r.invoke(x).tobytes()) == expected
    monkeypatch.setitem(sys.modules, "ml", None)
    with pytest.raises(ValueError, match="no model runner"):
        runners.make_runner(tfl, 0, prefer=("kws", "ml"))
    with pytest.raises(ValueError, match="unknown runner"):
        runners.make_runner(tfl, 0, prefer=("gpu",))


# --------------------------------------------------------------------------- #
# Bad models
# --------------------------------------------------------------------------- #


def test_not_a_model_and_unsupported_ops():
    with pytest.raises(ValueError, match="not a TFLite model"):
        runners.UlabRunner(b"")
    with pytest.raises(ValueError, match="not a TFLite model"):
        runners.UlabRunner(b"\x00" * 64)
    inputs = keras.Input((6, 4, 2), batch_size=1)
    outputs = keras.layers.Multiply()([inputs, inputs])
    rep = np.random.default_rng(0).normal(size=(16, 6, 4, 2)).astype(np.float32)
    tfl = to_int8_tflite(keras.Model(inputs, outputs), rep, allowed_ops={"MUL"})
    with pytest.raises(ValueError, match="unsupported op.*MUL"):
        runners.UlabRunner(tfl)


def test_float_model_is_refused():
    import tensorflow as tf

    inputs = keras.Input((6, 4, 2), batch_size=1)
    model = keras.Model(inputs, keras.layers.Conv2D(3, 3)(inputs))
    tfl = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    with pytest.raises(ValueError, match="float32"):
        runners.UlabRunner(tfl)


def test_damaged_models_raise_value_error(zoo_int8):
    """Truncations, byte flips and random bytes: ValueError or a working model, never a crash or hang."""
    tfl = zoo_int8["tiny_conv"]
    rng = np.random.default_rng(5)
    damaged = [tfl[:n] for n in sorted(set(rng.integers(0, len(tfl), 60).tolist()))]
    damaged += [tfl[:8] + bytes(rng.integers(0, 256, 64, dtype=np.uint8))]
    damaged += [bytes(rng.integers(0, 256, 300, dtype=np.uint8)) for _ in range(5)]
    structure_end = min(len(tfl), 4096)  # flatbuffer tables and vectors, not weight bytes
    for _ in range(250):
        b = bytearray(tfl)
        for pos in rng.integers(0, structure_end, rng.integers(1, 4)):
            b[pos] = int(rng.integers(0, 256))
        damaged.append(bytes(b))
    refused = 0
    for data in damaged:
        try:
            runner = runners.UlabRunner(data)
        except ValueError as exc:
            assert str(exc)
            refused += 1
            continue
        try:
            runner.invoke(bytes(runner.input_size))
        except ValueError:
            pass
    assert refused > len(damaged) // 4


# --------------------------------------------------------------------------- #
# Arithmetic primitives
# --------------------------------------------------------------------------- #


def test_quantize_multiplier_matches_double_arithmetic():
    rng = np.random.default_rng(6)
    for _ in range(2000):
        a, b, c = (float(np.float32(v)) for v in rng.uniform(1e-4, 2.0, 3))
        d = int8ops.Dbl.from_f32(a).mul(int8ops.Dbl.from_f32(b)).div(int8ops.Dbl.from_f32(c))
        exact = a * b / c  # Python floats are IEEE doubles
        assert d.to_float() == exact
        q, shift = int8ops.quantize_multiplier(d)
        m, e = np.frexp(exact)
        expected = int(np.floor(m * 2**31 + 0.5))
        if expected == 2**31:
            expected, e = expected // 2, e + 1
        assert (q, shift) == (expected, e)


def test_fixed_point_primitives_against_wide_integers():
    rng = np.random.default_rng(7)
    for _ in range(3000):
        a = int(rng.integers(-2**31, 2**31))
        b = int(rng.integers(0, 2**31))
        exact = a * b / 2**31
        assert abs(int8ops.srdhm(a, b) - exact) <= 0.5
        e = int(rng.integers(0, 31))
        r = int8ops.rdbpot(a, e)
        assert abs(r - a / 2**e) <= 0.5
        if abs(a / 2**e - round(a / 2**e)) == 0.5:  # ties go away from zero
            assert abs(r) > abs(a / 2**e)
    assert int8ops.srdhm(-2**31, -2**31) == 2**31 - 1
    # exp(x) for x in Q5.26 within a few LSB of the real thing
    for x in np.linspace(-31.9, 0, 300):
        raw = int(round(x * 2**26))
        got = int8ops.exp_on_negative_values(raw, 5) / 2**31
        assert abs(got - np.exp(raw / 2**26)) < 1e-6
