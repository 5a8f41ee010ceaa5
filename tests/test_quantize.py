"""Int8 export, inspection and host execution of zoo models."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")
pytest.importorskip("ai_edge_litert")

from kws_kit.errors import ModelError  # noqa: E402
from kws_kit.models import zoo  # noqa: E402
from kws_kit.quantize import Int8Runner, run_int8, to_int8_tflite, with_batch_size_one  # noqa: E402
from kws_kit.tflite_info import ALLOWED_OPS, OpInfo, TensorInfo, inspect_tflite, plan_arena  # noqa: E402

FORBIDDEN = {"SHAPE", "STRIDED_SLICE", "PACK", "QUANTIZE", "DEQUANTIZE", "SPACE_TO_BATCH_ND", "BATCH_TO_SPACE_ND"}
SHAPES = {"real": ((49, 10), 12), "tiny": ((12, 4), 3)}


def _representative(shape, n=24, seed=0):
    return np.random.default_rng(seed).normal(size=(n, *shape)).astype(np.float32)


@pytest.fixture(scope="session")
def converted():
    """Every zoo model at the real and a tiny shape, random weights, converted once per session.

    Built with a dynamic batch size, so the export's batch-1 rebuild is exercised.
    """
    keras.utils.set_random_seed(0)
    out = {}
    for size, (shape, n_classes) in SHAPES.items():
        for name in zoo.model_names():
            model = zoo.build(name, shape, n_classes)
            rep = _representative(shape)
            out[name, size] = (model, rep, to_int8_tflite(model, rep))
    return out


@pytest.mark.parametrize("size", sorted(SHAPES))
@pytest.mark.parametrize("name", sorted(zoo.ZOO))
def test_int8_graph_uses_only_engine_ops(converted, name, size):
    model, rep, tflite = converted[name, size]
    info = inspect_tflite(tflite)
    (n_frames, n_coeffs), n_classes = SHAPES[size]
    assert set(info.op_names) <= ALLOWED_OPS
    assert not set(info.op_names) & FORBIDDEN
    assert info.input_dtype == info.output_dtype == "int8"
    assert info.input_shape == (1, n_frames, n_coeffs, 1)
    assert info.output_shape == (1, n_classes)
    # int8 softmax output: scale 1/256, zero point -128
    assert info.output_scale == pytest.approx(1 / 256) and info.output_zero_point == -128
    assert info.size_bytes == len(tflite)
    assert 0 < info.param_bytes < info.size_bytes
    assert info.n_subgraphs == 1
    # MACs read from the int8 graph agree with the analytic Keras count
    assert info.macs == zoo.count_macs(model)
    # the arena holds at least the biggest activation, and the plan never exceeds keeping all alive
    activations = [t for t in info.tensors if not t.is_constant]
    assert max(t.nbytes for t in activations) <= info.activation_bytes <= sum(-(-t.nbytes // 16) * 16 for t in activations)
    assert info.arena_bytes > info.activation_bytes
    # TFLite Micro's own arena (when installed): the plan never exceeds it, the estimate stays close
    if info.tflm_arena_bytes is not None:
        assert info.activation_bytes < info.tflm_arena_bytes
        assert 0.8 * info.tflm_arena_bytes <= info.arena_bytes <= 1.5 * info.tflm_arena_bytes
        assert info.budget_arena_bytes == max(info.arena_bytes, info.tflm_arena_bytes)
        assert inspect_tflite(tflite, measure_tflm=False).tflm_arena_bytes is None


@pytest.mark.parametrize("name", sorted(zoo.ZOO))
def test_int8_outputs_track_float_outputs(converted, name):
    model, rep, tflite = converted[name, "real"]
    runner = Int8Runner(tflite)
    q = runner.quantize_input(rep[..., None])
    y = runner(q)
    assert y.dtype == np.int8 and y.shape == (len(rep), 12)
    probs = runner.dequantize_output(y)
    expected = model.predict(rep[..., None], verbose=0)
    err = np.abs(probs - expected)
    # a few int8 output steps (1/256) at most
    assert err.mean() < 2 / 256 and err.max() < 8 / 256
    # run_int8 (fresh interpreter) repeats the reference run exactly
    np.testing.assert_array_equal(run_int8(tflite, q), y)
    # the optimised kernels round CONV_2D/FULLY_CONNECTED differently (1 LSB per op), so only close
    builtin = run_int8(tflite, q, kernels="builtin")
    assert np.abs(builtin.astype(int) - y).max() <= 16
    assert (builtin.argmax(1) == y.argmax(1)).mean() >= 0.9


def test_trained_model_keeps_its_decisions_in_int8():
    """A model with confident outputs: int8 argmax matches float argmax."""
    keras.utils.set_random_seed(1)
    rng = np.random.default_rng(1)
    shape, n_classes = (12, 5), 3
    centres = rng.normal(size=(n_classes, *shape)).astype(np.float32)
    labels = rng.integers(0, n_classes, 300)
    x = (centres[labels] + 0.7 * rng.normal(size=(300, *shape))).astype(np.float32)[..., None]
    model = zoo.build("tiny_conv", shape, n_classes)
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy")
    model.fit(x, labels, epochs=15, batch_size=32, verbose=0)
    float_pred = model.predict(x, verbose=0).argmax(1)
    assert (float_pred == labels).mean() > 0.9
    runner = Int8Runner(to_int8_tflite(model, x[:100]))
    int8_pred = runner(runner.quantize_input(x)).argmax(1)
    assert (int8_pred == float_pred).mean() >= 0.97


def test_batch_one_rebuild_keeps_weights():
    model = zoo.build(zoo.DEFAULT_MODEL, (20, 6), 4)
    one = with_batch_size_one(model)
    assert one is not model and one.inputs[0].shape[0] == 1
    x = _representative((20, 6), n=1)[..., None]
    np.testing.assert_allclose(one.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    assert with_batch_size_one(one) is one


def test_input_quantisation_can_be_pinned_to_the_front_end():
    model = zoo.build("tiny_conv", (12, 4), 3)
    rep = _representative((12, 4), n=20)
    info = inspect_tflite(to_int8_tflite(model, rep, input_quant=(0.05, -7)))
    assert info.input_scale == pytest.approx(0.05, rel=1e-5)
    assert info.input_zero_point == -7


def test_unsupported_op_is_refused_by_name():
    inputs = keras.Input((12, 4, 1), batch_size=1)
    x = keras.layers.Conv2D(4, 3, padding="same", activation="tanh")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Softmax()(keras.layers.Dense(3)(x))
    with pytest.raises(ModelError, match="TANH"):
        to_int8_tflite(keras.Model(inputs, outputs), _representative((12, 4)))


@pytest.mark.parametrize("rep_shape,match", [((3, 12, 4), "need at least"), ((30, 12, 5), "shape"), ((30, 7), "shape")])
def test_bad_representative_sets(rep_shape, match):
    model = zoo.build("tiny_conv", (12, 4), 3)
    with pytest.raises(ModelError, match=match):
        to_int8_tflite(model, np.zeros(rep_shape, np.float32))


def test_nan_representative_set():
    rep = _representative((12, 4))
    rep[3, 2, 1] = np.nan
    with pytest.raises(ModelError, match="NaN"):
        to_int8_tflite(zoo.build("tiny_conv", (12, 4), 3), rep)


def test_corrupt_models_are_one_line_errors(converted, tmp_path):
    good = converted[zoo.DEFAULT_MODEL, "real"][2]
    rng = np.random.default_rng(0)
    bad_inputs = [b"", b"hello", rng.bytes(4000), good[:4] + b"XXXX" + good[8:]]
    # truncated at many points, and random junk behind a valid-looking header
    bad_inputs += [good[:cut] for cut in (8, 16, 64, 500, len(good) // 2, len(good) - 200)]
    bad_inputs += [good[:8] + rng.bytes(600) for _ in range(20)]
    for blob in bad_inputs:
        with pytest.raises(ModelError) as err:
            inspect_tflite(blob)
        assert "\n" not in err.value.one_line()
    path = tmp_path / "model.tflite"
    path.write_bytes(good[: len(good) // 3])
    with pytest.raises(ModelError):
        inspect_tflite(path)
    with pytest.raises(ModelError, match="cannot read"):
        inspect_tflite(tmp_path / "missing.tflite")
    with pytest.raises(ModelError):
        run_int8(good[: len(good) // 2], np.zeros((1, 49, 10), np.int8))


def test_inspect_reads_a_path(converted, tmp_path):
    tflite = converted["tiny_conv", "real"][2]
    path = tmp_path / "m.tflite"
    path.write_bytes(tflite)
    assert inspect_tflite(path).op_names == inspect_tflite(tflite).op_names


def test_run_int8_checks_its_inputs(converted):
    tflite = converted["tiny_conv", "real"][2]
    with pytest.raises(ModelError, match="int8"):
        run_int8(tflite, np.zeros((2, 49, 10), np.float32))
    with pytest.raises(ModelError, match="shape"):
        run_int8(tflite, np.zeros((2, 40, 10), np.int8))
    # (N, T, C) and (N, T, C, 1) are both accepted
    x = np.random.default_rng(0).integers(-128, 128, size=(3, 49, 10)).astype(np.int8)
    np.testing.assert_array_equal(run_int8(tflite, x), run_int8(tflite, x[..., None]))


def test_dilations_survive_conversion(converted):
    info = inspect_tflite(converted["tds_resnet", "real"][2])
    dilations = [op.options["dilation"][0] for op in info.ops if op.name == "DEPTHWISE_CONV_2D"]
    assert max(dilations) > 1


def _t(i, nbytes, const=False):
    return TensorInfo(i, f"t{i}", (nbytes,), "int8", nbytes, const, (), ())


def test_arena_plan_reuses_dead_tensors():
    # chain 0 -> 1 -> 2 -> 3 with sizes 100, 200, 50, 30: at most two neighbours are alive at once
    tensors = [_t(0, 100), _t(1, 200), _t(2, 50), _t(3, 30), _t(4, 999, const=True)]
    ops = [OpInfo("CONV_2D", (0, 4), (1,), {}), OpInfo("CONV_2D", (1, 4), (2,), {}), OpInfo("FULLY_CONNECTED", (2,), (3,), {})]
    assert plan_arena(tensors, ops, [0], [3]) == 208 + 112  # tensors 1 and 0 (aligned to 16)
    # a skip connection keeps tensor 0 alive until the last op
    ops_skip = ops[:2] + [OpInfo("ADD", (2, 0), (3,), {})]
    assert plan_arena(tensors, ops_skip, [0], [3]) == 208 + 112 + 64


def test_dead_model_is_refused_instead_of_aborting(monkeypatch):
    """Logits that span ~nothing make the reference/TFLite Micro softmax abort the process."""
    from kws_kit import quantize

    model = zoo.build("tiny_conv", (12, 4), 3)
    logits = model.get_layer("logits")
    kernel, bias = logits.get_weights()
    logits.set_weights([kernel * 1e-9, bias * 0])
    rep = _representative((12, 4))
    with pytest.raises(ModelError, match="SOFTMAX"):
        to_int8_tflite(model, rep)
    monkeypatch.setattr(quantize, "check_int8_model", lambda *args, **kwargs: None)
    unchecked = to_int8_tflite(model, rep)
    with pytest.raises(ModelError, match="SOFTMAX"):
        Int8Runner(unchecked)


def test_tflm_arena_probe_survives_a_model_tflm_aborts_on(converted):
    """A damaged tail makes TFLite Micro abort(); the probe runs it in a child
    process, so inspecting the file must still return (arena unknown)."""
    pytest.importorskip("tflite_micro")
    _model, _rep, tflite = converted["tiny_conv", "real"]
    damaged = tflite[:-64] + bytes(64)
    info = inspect_tflite(damaged)  # would kill this process if TFLM ran in it
    assert info.tflm_arena_bytes is None  # TFLite Micro aborted (SIGABRT) in the child
    assert inspect_tflite(tflite).tflm_arena_bytes > 0  # the intact model is measured


@pytest.mark.parametrize("name", sorted(zoo.ZOO))
def test_exported_models_carry_no_strings_and_aligned_buffers(converted, name):
    """to_int8_tflite strips names/signatures/metadata (RAM on the Nucleo) and aligns buffers;
    stripping is idempotent and changes no output bit (checked against the unstripped
    flatbuffer rebuilt with names, through TFLite Micro and the batched engine)."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils as fbu

    from kws_kit.quantize import strip_tflite

    _model, rep, tflite = converted[name, "real"]
    assert strip_tflite(tflite) == tflite
    root = schema.Model.GetRootAs(tflite, 0)
    graph = root.Subgraphs(0)
    assert root.MetadataLength() == 0 and root.SignatureDefsLength() == 0
    assert all(not graph.Tensors(i).Name() for i in range(graph.TensorsLength()))
    for i in range(root.BuffersLength()):
        buf = root.Buffers(i)
        if buf.DataLength():
            assert buf._tab.Vector(buf._tab.Offset(4)) % 16 == 0  # noqa: SLF001
    # give the model names back (the stock packer), then strip again: same bytes, same outputs
    named = fbu.convert_bytearray_to_object(bytearray(tflite))
    for i, t in enumerate(named.subgraphs[0].tensors):
        t.name = f"tensor_{i}_with_a_long_name".encode()
    renamed = bytes(fbu.convert_object_to_bytearray(named))
    assert len(renamed) > len(tflite) and strip_tflite(renamed) == tflite
    x = np.random.default_rng(5).integers(-128, 128, size=(6,) + tuple(rep.shape[1:]) + (1,)).astype(np.int8)
    for kernels in ("tflm", "batch"):
        if kernels == "tflm":
            pytest.importorskip("tflite_micro")
        np.testing.assert_array_equal(run_int8(renamed, x, kernels=kernels), run_int8(tflite, x, kernels=kernels))
