"""The model zoo: small keyword-spotting networks that convert to int8 TFLite.

Every model takes MFCC features shaped ``(batch, n_frames, n_coeffs, 1)``
(time, coefficient, channel) and ends in a softmax over ``n_classes``. They are
built from a deliberately small set of layers so that the converted int8 graph
holds only the builtin ops our device engine implements (``ALLOWED_OPS`` in
``kws_kit.tflite_info``): convolutions, depthwise convolutions, fully connected,
average pooling / mean, reshape, add and softmax. Batch norm is folded into the
preceding convolution by the converter; ReLU/ReLU6 are fused into the op.

Rules the builders follow (each one avoids an op the engine does not have):

* no ``Conv1D``: it converts to EXPAND_DIMS/SQUEEZE around a CONV_2D. Temporal
  models reshape ``(T, C, 1)`` to ``(T, 1, C)`` and use ``(k, 1)`` kernels.
* no ``Concatenate``, no ``Multiply``, no activations other than ReLU/ReLU6.
* batch norm directly after a convolution (so it folds), never after an add.
* build with ``batch_size=1`` for conversion: a dynamic batch dimension brings
  SHAPE / STRIDED_SLICE / PACK ops from Flatten and Reshape.
* dilated convolutions only with a static batch size: then the converter
  folds the SPACE_TO_BATCH_ND / BATCH_TO_SPACE_ND pair into the kernel's
  ``dilation_h_factor`` (which the device engine must honour).

``describe()`` reports parameters, multiply-accumulates, the int8 flash size and
the tensor-arena estimate; flash and arena come from actually converting the
model with random weights, cached on disk (see ``cache_dir()``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Callable

from kws_kit.errors import ModelError

DEFAULT_INPUT_SHAPE = (49, 10)
DEFAULT_N_CLASSES = 12


@dataclasses.dataclass(frozen=True)
class ModelEntry:
    name: str
    description: str
    builder: Callable  # (n_frames, n_coeffs, n_classes, batch_size) -> keras.Model
    # Position in the expected-accuracy ranking used by ``pick_model`` (higher is
    # better); see docs/models.md for where each rank comes from.
    rank: int


# --------------------------------------------------------------------------- #
# Building blocks
# --------------------------------------------------------------------------- #


def _layers():
    import keras

    return keras, keras.layers


def _depthwise_he(channels):
    """He-normal for a depthwise kernel.

    Keras counts every input channel in a depthwise kernel's fan-in, which
    makes its default init ~sqrt(channels) too small: activations then shrink
    layer after layer and an untrained model's logits collapse to a range the
    int8 softmax cannot represent. Each output only sees kh*kw inputs.
    """
    import keras

    return keras.initializers.VarianceScaling(scale=2.0 * int(channels), mode="fan_in", distribution="truncated_normal")


def _residual_branch_init():
    """He scale / 10 for the last convolution of a residual branch (Fixup-style start).

    A new instance per layer: Keras 3 gives every use of one unseeded
    initializer instance the same values.
    """
    import keras

    return keras.initializers.VarianceScaling(scale=0.1, mode="fan_in", distribution="truncated_normal")


def _conv_bn_relu(x, filters, kernel, strides=(1, 1), dilation=(1, 1), name=None, relu=True, init="he_normal"):
    keras, L = _layers()
    x = L.Conv2D(filters, kernel, strides=strides, dilation_rate=dilation, padding="same",
                 use_bias=False, kernel_initializer=init, name=f"{name}_conv")(x)
    x = L.BatchNormalization(name=f"{name}_bn")(x)
    if relu:
        x = L.ReLU(name=f"{name}_relu")(x)
    return x


def _dw_bn_relu(x, kernel, strides=(1, 1), dilation=(1, 1), name=None, relu=True):
    keras, L = _layers()
    x = L.DepthwiseConv2D(kernel, strides=strides, dilation_rate=dilation, padding="same",
                          use_bias=False, depthwise_initializer=_depthwise_he(x.shape[-1]), name=f"{name}_dw")(x)
    x = L.BatchNormalization(name=f"{name}_dwbn")(x)
    if relu:
        x = L.ReLU(name=f"{name}_dwrelu")(x)
    return x


def _classifier_head(x, n_classes, pool="mean", dropout=0.0):
    """Global average pool -> (dropout) -> dense -> softmax.

    ``pool="mean"`` converts to MEAN, ``pool="avg"`` to AVERAGE_POOL_2D over the
    whole map followed by a RESHAPE (the MLPerf Tiny DS-CNN layout).
    """
    keras, L = _layers()
    if pool == "avg":
        x = L.AveragePooling2D(pool_size=tuple(int(d) for d in x.shape[1:3]), name="avg_pool")(x)
        x = L.Flatten(name="flatten")(x)
    else:
        x = L.GlobalAveragePooling2D(name="mean_pool")(x)
    if dropout:
        x = L.Dropout(dropout, name="head_dropout")(x)
    x = L.Dense(n_classes, name="logits")(x)
    return L.Softmax(name="probs")(x)


def _input(n_frames, n_coeffs, batch_size):
    keras, _ = _layers()
    return keras.Input(shape=(n_frames, n_coeffs, 1), batch_size=batch_size, name="mfcc")


def _as_time_channels(x, n_frames, n_coeffs):
    """(T, C, 1) -> (T, 1, C): MFCC coefficients become channels over time."""
    _, L = _layers()
    return L.Reshape((n_frames, 1, n_coeffs), name="to_time_channels")(x)


# --------------------------------------------------------------------------- #
# Architectures
# --------------------------------------------------------------------------- #


def build_tiny_conv(n_frames, n_coeffs, n_classes, batch_size=None):
    """TensorFlow micro_speech's tiny_conv: one strided conv then a dense layer."""
    keras, L = _layers()
    inputs = _input(n_frames, n_coeffs, batch_size)
    x = L.Conv2D(8, (10, 8), strides=(2, 2), padding="same", kernel_initializer="he_normal", name="conv")(inputs)
    x = L.ReLU(name="relu")(x)
    x = L.Dropout(0.1, name="dropout")(x)
    x = L.Flatten(name="flatten")(x)
    x = L.Dense(n_classes, name="logits")(x)
    outputs = L.Softmax(name="probs")(x)
    return keras.Model(inputs, outputs, name="tiny_conv")


def _ds_cnn(name, n_frames, n_coeffs, n_classes, batch_size, filters, stem_strides, block_strides,
            dilations=None, residual=False):
    keras, L = _layers()
    inputs = _input(n_frames, n_coeffs, batch_size)
    x = _conv_bn_relu(inputs, filters, (10, 4), strides=stem_strides, name="stem")
    x = L.Dropout(0.2, name="stem_dropout")(x)
    for i, strides in enumerate(block_strides, start=1):
        # optional time dilation, capped so the kernel stays within short inputs
        d = max(1, min(dilations[i - 1], (int(x.shape[1]) - 1) // 2 or 1)) if dilations else 1
        y = _dw_bn_relu(x, (3, 3), strides=strides, dilation=(d, 1), name=f"ds{i}")
        y = _conv_bn_relu(y, filters, (1, 1), name=f"ds{i}_pw", relu=not residual)
        if residual:
            y = L.Add(name=f"ds{i}_add")([x, y]) if strides == (1, 1) else y
            y = L.ReLU(name=f"ds{i}_out")(y)
        x = y
    x = L.Dropout(0.4, name="dropout")(x)
    outputs = _classifier_head(x, n_classes, pool="avg")
    return keras.Model(inputs, outputs, name=name)


def build_ds_cnn_s(n_frames, n_coeffs, n_classes, batch_size=None, filters=64, blocks=4, dilations=None,
                   residual=False):
    """Hello Edge / MLPerf Tiny DS-CNN-S: 64-filter 10x4/2 conv, 4 DS blocks of 64.

    The keyword arguments give the variants compared in docs/models.md
    (``build()`` always uses the defaults).
    """
    return _ds_cnn("ds_cnn_s", n_frames, n_coeffs, n_classes, batch_size, filters, (2, 2), [(1, 1)] * blocks,
                   dilations=dilations, residual=bool(residual))


def build_ds_cnn_xs(n_frames, n_coeffs, n_classes, batch_size=None, filters=40, blocks=4):
    """The DS-CNN-S recipe at 40 channels (47 % of its parameters, 44 % of its MACs).

    The default until kws-kit's own training recipe was benchmarked
    (bench/bench_accuracy.py): there it is well behind tds_resnet; see docs/models.md.
    """
    return _ds_cnn("ds_cnn_xs", n_frames, n_coeffs, n_classes, batch_size, filters, (2, 2), [(1, 1)] * blocks)


def build_ds_cnn_m(n_frames, n_coeffs, n_classes, batch_size=None):
    """Hello Edge DS-CNN-M: 172 filters, stem stride (2,1), first DS block stride 2."""
    return _ds_cnn("ds_cnn_m", n_frames, n_coeffs, n_classes, batch_size, 172, (2, 1),
                   [(2, 2), (1, 1), (1, 1), (1, 1)])


def build_tc_resnet8(n_frames, n_coeffs, n_classes, batch_size=None, width=1.0):
    """TC-ResNet8 (Choi et al. 2019): temporal 9x1 convs over MFCC channels, 3 residual blocks."""
    keras, L = _layers()
    inputs = _input(n_frames, n_coeffs, batch_size)
    x = _as_time_channels(inputs, n_frames, n_coeffs)
    channels = [int(round(c * width)) for c in (16, 24, 32, 48)]
    # Glorot stem and small residual-branch start, as in tds_resnet (untrained outputs stay varied).
    x = L.Conv2D(channels[0], (3, 1), padding="same", use_bias=False, name="stem_conv")(x)
    for i, c in enumerate(channels[1:], start=1):
        y = _conv_bn_relu(x, c, (9, 1), strides=(2, 1), name=f"b{i}a")
        y = _conv_bn_relu(y, c, (9, 1), name=f"b{i}b", relu=False, init=_residual_branch_init())
        shortcut = _conv_bn_relu(x, c, (1, 1), strides=(2, 1), name=f"b{i}sc")
        x = L.Add(name=f"b{i}_add")([y, shortcut])
        x = L.ReLU(name=f"b{i}_out")(x)
    x = L.Dropout(0.3, name="dropout")(x)
    outputs = _classifier_head(x, n_classes, pool="mean")
    return keras.Model(inputs, outputs, name="tc_resnet8")


def build_tds_resnet(n_frames, n_coeffs, n_classes, batch_size=None, channels=40,
                     kernel=5, dilations=(1, 2, 4, 8), name="tds_resnet"):
    """Temporal depthwise-separable residual net: the default (see docs/models.md, "Accuracy").

    MFCCs are channels over time. A 3x1 stem widens them to ``channels``; then
    residual blocks of [depthwise (k x 1, dilated) -> BN -> ReLU -> pointwise
    -> BN] + identity -> ReLU. Dilations 1-2-4-8 cover the whole second without
    striding; each block costs only k*C + C*C weights and T*(k*C + C*C) MACs.
    """
    keras, L = _layers()
    inputs = _input(n_frames, n_coeffs, batch_size)
    x = _as_time_channels(inputs, n_frames, n_coeffs)
    # Glorot stem and a small start for each residual branch (as in Fixup / zero-init
    # residuals): the identity path dominates an untrained net, so raw-MFCC inputs
    # (c0 ~ -60) do not blow up through four additions into a saturated softmax.
    x = _conv_bn_relu(x, channels, (3, 1), name="stem", init="glorot_uniform")
    for i, d in enumerate(dilations, start=1):
        # A dilation whose kernel span is far beyond the sequence only sees
        # padding; cap it so the model still works on short inputs.
        d = max(1, min(d, (n_frames - 1) // max(1, kernel - 1) or 1))
        y = _dw_bn_relu(x, (kernel, 1), dilation=(d, 1), name=f"b{i}")
        y = _conv_bn_relu(y, channels, (1, 1), name=f"b{i}_pw", relu=False, init=_residual_branch_init())
        x = L.Add(name=f"b{i}_add")([x, y])
        x = L.ReLU(name=f"b{i}_out")(x)
    x = L.Dropout(0.2, name="dropout")(x)
    outputs = _classifier_head(x, n_classes, pool="mean")
    return keras.Model(inputs, outputs, name=name)


ZOO: dict[str, ModelEntry] = {
    e.name: e
    for e in [
        ModelEntry("tiny_conv", "micro_speech tiny_conv: one 8-filter 10x8/2 conv + dense (smallest, least accurate)",
                   build_tiny_conv, rank=0),
        ModelEntry("tc_resnet8", "TC-ResNet8: temporal 9x1 residual convs over MFCC channels (16-24-32-48)",
                   build_tc_resnet8, rank=1),
        ModelEntry("tds_resnet", "temporal depthwise-separable residual net, 40 channels, 5x1 kernels dilated 1-2-4-8 "
                   "(default; fewest MACs after tiny_conv)", build_tds_resnet, rank=4),
        ModelEntry("ds_cnn_xs", "DS-CNN at 40 channels: 10x4/2 conv + 4 depthwise-separable blocks",
                   build_ds_cnn_xs, rank=2),
        ModelEntry("ds_cnn_s", "DS-CNN-S (Hello Edge / MLPerf Tiny): 10x4/2 conv + 4 depthwise-separable blocks of 64",
                   build_ds_cnn_s, rank=3),
        ModelEntry("ds_cnn_m", "DS-CNN-M (Hello Edge): 172 filters, 4 depthwise-separable blocks (largest)",
                   build_ds_cnn_m, rank=5),
    ]
}

DEFAULT_MODEL = "tds_resnet"  # chosen by bench/bench_accuracy.py --folds 5 (docs/models.md)


def model_names() -> list[str]:
    return list(ZOO)


def ranked_names(best_first: bool = True) -> list[str]:
    return sorted(ZOO, key=lambda n: ZOO[n].rank, reverse=best_first)


def get_entry(name: str) -> ModelEntry:
    try:
        return ZOO[name]
    except KeyError:
        raise ModelError(f"unknown model {name!r}", hint=f"choose one of: {', '.join(ZOO)}") from None


def _check_shape(input_shape, n_classes):
    try:
        n_frames, n_coeffs = (int(v) for v in input_shape)
    except (TypeError, ValueError):
        raise ModelError(f"input shape must be (n_frames, n_coeffs), got {input_shape!r}") from None
    if n_frames < 2 or n_coeffs < 1:
        raise ModelError(f"input shape {input_shape!r} is too small (need at least 2 frames and 1 coefficient)")
    if int(n_classes) < 2:
        raise ModelError(f"need at least 2 classes, got {n_classes}")
    return n_frames, n_coeffs, int(n_classes)


def build(name: str, input_shape=DEFAULT_INPUT_SHAPE, n_classes: int = DEFAULT_N_CLASSES,
          batch_size: int | None = None):
    """Build zoo model ``name`` for MFCC input ``(n_frames, n_coeffs)``.

    ``batch_size=None`` for training; ``1`` for conversion to TFLite.
    """
    entry = get_entry(name)
    n_frames, n_coeffs, n_classes = _check_shape(input_shape, n_classes)
    return entry.builder(n_frames, n_coeffs, n_classes, batch_size=batch_size)


# --------------------------------------------------------------------------- #
# Analytic cost
# --------------------------------------------------------------------------- #


def count_macs(model) -> int:
    """Multiply-accumulates of one inference: conv, depthwise conv and dense layers.

    Counted per output element over the whole kernel window (taps that fall on
    zero padding included, as the int8 kernels compute them). Pooling, adds,
    ReLU and softmax are not counted; batch norm folds into the convolutions.
    """
    import keras

    macs = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            kh, kw, _, mult = layer.kernel.shape
            _, oh, ow, oc = layer.output.shape
            macs += oh * ow * oc * kh * kw
        elif isinstance(layer, keras.layers.Conv2D):
            kh, kw, cin, cout = layer.kernel.shape
            _, oh, ow, _ = layer.output.shape
            macs += oh * ow * cout * kh * kw * cin // layer.groups
        elif isinstance(layer, keras.layers.Dense):
            cin, cout = layer.kernel.shape
            macs += cin * cout
    return int(macs)


# --------------------------------------------------------------------------- #
# describe(): params, MACs, int8 flash and arena (cached)
# --------------------------------------------------------------------------- #


def cache_dir() -> Path:
    """Where describe() keeps converted-size results: $KWS_CACHE_DIR or ~/.cache/kws-kit."""
    root = os.environ.get("KWS_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "kws-kit")
    return Path(root) / "zoo"


def _cache_key(name, input_shape, n_classes) -> str:
    # Any change to this file or to the converter/engine estimate invalidates the entry.
    import tensorflow as tf

    from kws_kit import tflite_info

    h = hashlib.sha256()
    h.update(Path(__file__).read_bytes())
    h.update(Path(tflite_info.__file__).read_bytes())
    h.update(tf.__version__.encode())
    h.update(f"{name}|{tuple(input_shape)}|{n_classes}".encode())
    return f"{name}-{input_shape[0]}x{input_shape[1]}-{n_classes}-{h.hexdigest()[:16]}"


_memory_cache: dict[str, dict] = {}


def describe(name: str, input_shape=DEFAULT_INPUT_SHAPE, n_classes: int = DEFAULT_N_CLASSES,
             use_cache: bool = True) -> dict:
    """Size and cost of a zoo model.

    Returns ``name``, ``description``, ``input_shape``, ``n_classes``, ``params``
    (Keras count, batch-norm statistics included), ``macs`` (see ``count_macs``),
    ``flash_bytes`` (size of the int8 .tflite), ``param_bytes`` (constant data in
    it), ``arena_bytes`` (tensor-arena estimate, see ``kws_kit.tflite_info``),
    ``tflm_arena_bytes`` (TFLite Micro's own arena, None without tflite-micro),
    ``kws_arena_bytes`` (the ``kws`` C module's arena on a 32-bit board) and
    ``ops`` (the builtin ops used).
    """
    entry = get_entry(name)
    n_frames, n_coeffs, n_classes = _check_shape(input_shape, n_classes)
    shape = (n_frames, n_coeffs)
    key = _cache_key(name, shape, n_classes)
    if use_cache and key in _memory_cache:
        return dict(_memory_cache[key])
    path = cache_dir() / f"{key}.json"
    if use_cache and path.is_file():
        try:
            result = json.loads(path.read_text())
            _memory_cache[key] = result
            return dict(result)
        except (OSError, ValueError):
            pass  # a damaged cache entry is simply recomputed

    import numpy as np

    from kws_kit.quantize import to_int8_tflite
    from kws_kit.tflite_info import inspect_tflite

    model = build(name, shape, n_classes, batch_size=1)
    rng = np.random.default_rng(0)
    representative = rng.normal(0.0, 1.0, size=(32, n_frames, n_coeffs, 1)).astype(np.float32)
    info = inspect_tflite(to_int8_tflite(model, representative))
    result = {
        "name": name,
        "description": entry.description,
        "input_shape": list(shape),
        "n_classes": n_classes,
        "params": int(model.count_params()),
        "macs": count_macs(model),
        "flash_bytes": info.size_bytes,
        "param_bytes": info.param_bytes,
        "arena_bytes": info.arena_bytes,
        "tflm_arena_bytes": info.tflm_arena_bytes,
        "kws_arena_bytes": info.kws_arena_bytes(4),  # what the kws C module allocates on a 32-bit board
        "ops": sorted(set(info.op_names)),
    }
    _memory_cache[key] = result
    if use_cache:
        try:
            from kws_kit.atomic import write_text

            write_text(path, json.dumps(result, indent=1))
        except OSError:
            pass  # a read-only home still works, just slower
    return dict(result)
