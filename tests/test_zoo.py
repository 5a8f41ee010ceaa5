"""Model zoo: every architecture builds, trains a step, and describe() adds up."""

from __future__ import annotations

import os

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from kws_kit.errors import ModelError  # noqa: E402
from kws_kit.models import zoo  # noqa: E402

REQUIRED = {"tiny_conv", "ds_cnn_s", "ds_cnn_m", "tc_resnet8"}


@pytest.fixture(scope="module", autouse=True)
def private_cache(tmp_path_factory):
    old = os.environ.get("KWS_CACHE_DIR")
    os.environ["KWS_CACHE_DIR"] = str(tmp_path_factory.mktemp("kws-cache"))
    yield
    if old is None:
        os.environ.pop("KWS_CACHE_DIR", None)
    else:
        os.environ["KWS_CACHE_DIR"] = old


def test_names_and_default():
    names = zoo.model_names()
    assert REQUIRED <= set(names)
    assert zoo.DEFAULT_MODEL in names
    assert all(zoo.ZOO[n].description and zoo.ZOO[n].name == n for n in names)
    ranked = zoo.ranked_names()
    assert sorted(ranked) == sorted(names) and len({zoo.ZOO[n].rank for n in names}) == len(names)


def test_unknown_model_lists_valid_names():
    with pytest.raises(ModelError) as err:
        zoo.build("resnet50")
    text = err.value.one_line()
    assert "resnet50" in text and all(n in text for n in zoo.model_names())


@pytest.mark.parametrize("shape,n_classes", [((49, 10), 0), ((1, 10), 3), (("a", 3), 3)])
def test_bad_shapes_are_model_errors(shape, n_classes):
    with pytest.raises(ModelError):
        zoo.build("tiny_conv", shape, n_classes)


@pytest.mark.parametrize("name", sorted(zoo.ZOO))
@pytest.mark.parametrize("shape", [(49, 10), (16, 5)])
def test_builds_and_trains_one_step(name, shape):
    model = zoo.build(name, shape, n_classes=4)
    assert model.input_shape == (None, shape[0], shape[1], 1)
    assert model.output_shape == (None, 4)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, *shape, 1)).astype(np.float32)
    y = np.arange(6) % 4
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    loss = model.train_on_batch(x, y)
    assert np.isfinite(loss)
    probs = model.predict(x, verbose=0)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    # batch 1 variant (for conversion) has the same parameters
    assert zoo.build(name, shape, 4, batch_size=1).count_params() == model.count_params()


def test_tiny_conv_macs_by_hand():
    model = zoo.build("tiny_conv", (49, 10), 12)
    # conv: 'same' padding, stride 2 -> 25 x 5 outputs x 8 filters, each a 10x8x1 window
    conv = 25 * 5 * 8 * (10 * 8 * 1)
    dense = (25 * 5 * 8) * 12
    assert zoo.count_macs(model) == conv + dense == 92_000


def test_ds_cnn_s_macs_by_hand():
    model = zoo.build("ds_cnn_s", (49, 10), 12)
    stem = 25 * 5 * 64 * (10 * 4)
    block = 25 * 5 * 64 * 9 + 25 * 5 * 64 * 64
    assert zoo.count_macs(model) == stem + 4 * block + 64 * 12


def test_default_is_at_most_half_of_ds_cnn_s():
    default = zoo.build(zoo.DEFAULT_MODEL, (49, 10), 12).count_params()
    ds_cnn_s = zoo.build("ds_cnn_s", (49, 10), 12).count_params()
    assert default * 2 <= ds_cnn_s


@pytest.mark.parametrize("name", ["tiny_conv", zoo.DEFAULT_MODEL])
def test_describe_is_consistent(name):
    d = zoo.describe(name, (49, 10), 12)
    model = zoo.build(name, (49, 10), 12)
    assert d["params"] == model.count_params()
    assert d["macs"] == zoo.count_macs(model)
    assert d["param_bytes"] < d["flash_bytes"]
    # int8 weights: at most one byte per parameter plus int32 biases
    assert d["param_bytes"] <= 4 * d["params"]
    assert d["arena_bytes"] >= 49 * 10  # at least the int8 input tensor
    assert d["input_shape"] == [49, 10] and d["n_classes"] == 12
    assert set(d["ops"]) <= {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "AVERAGE_POOL_2D",
                             "MAX_POOL_2D", "MEAN", "RESHAPE", "SOFTMAX", "ADD"}


def test_describe_cache_is_written_and_reused(monkeypatch):
    zoo._memory_cache.clear()
    first = zoo.describe("tiny_conv", (20, 6), 3)
    files = list(zoo.cache_dir().glob("tiny_conv-20x6-3-*.json"))
    assert len(files) == 1
    zoo._memory_cache.clear()

    def no_conversion(*args, **kwargs):
        raise AssertionError("describe() converted although a cache entry exists")

    monkeypatch.setattr("kws_kit.quantize.to_int8_tflite", no_conversion)
    assert zoo.describe("tiny_conv", (20, 6), 3) == first
    # a damaged entry is recomputed, not trusted
    files[0].write_text("{not json")
    zoo._memory_cache.clear()
    monkeypatch.undo()
    assert zoo.describe("tiny_conv", (20, 6), 3) == first


@pytest.mark.parametrize("name", sorted(zoo.ZOO))
def test_no_two_layers_start_with_the_same_weights(name):
    """Reusing one unseeded Keras 3 initializer gives identical weights; every kernel must differ."""
    model = zoo.build(name, (49, 10), 12)
    kernels = [w.numpy().tobytes() for w in model.weights if w.name in ("kernel", "depthwise_kernel")]
    assert len(kernels) >= 2 and len(set(kernels)) == len(kernels)
