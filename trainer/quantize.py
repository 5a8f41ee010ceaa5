"""Full-integer (int8) export of a Keras model, and running the result on the host.

``to_int8_tflite`` turns a trained Keras model into an int8 TFLite flatbuffer
(int8 input, int8 output, per-channel weights, activations calibrated on a
representative set) and refuses any op the device engine does not implement.
``run_int8`` / :class:`Int8Runner` execute it on the host; by default with
the TensorFlow Lite Micro interpreter itself (PyPI ``tflite-micro``), so the
host sees exactly the integer arithmetic the boards run. ai-edge-litert's
reference kernels stay available (``kernels="reference"``); they round
per-channel FULLY_CONNECTED once where TFLite Micro rounds twice.
"""

from __future__ import annotations

import contextlib
import functools
import os
import warnings

import numpy as np

from .errors import ModelError
from .tflite_info import ALLOWED_OPS, TfliteInfo, inspect_tflite

DEFAULT_MIN_SAMPLES = 16


@contextlib.contextmanager
def _quiet():
    """Silence the converter's chatter (Keras export prints, C++ logging on fd 2)."""
    if os.environ.get("KWS_DEBUG_CONVERTER"):
        yield
        return
    saved = []
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        for fd in (1, 2):
            saved.append((fd, os.dup(fd)))
            os.dup2(devnull, fd)
        os.close(devnull)
    except OSError:
        pass  # no real file descriptors (some embedded runners): just stay noisy
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
                yield
    finally:
        for fd, copy in saved:
            os.dup2(copy, fd)
            os.close(copy)


def _input_feature_shape(model) -> tuple[int, ...]:
    shape = tuple(model.inputs[0].shape[1:])
    if any(d is None for d in shape):
        raise ModelError(f"model input shape {shape} has an unknown dimension; int8 export needs a fixed shape")
    return tuple(int(d) for d in shape)


def with_batch_size_one(model):
    """Return ``model`` if its batch size is already 1, else a copy built for batch 1 with the same weights."""
    import keras

    if len(model.inputs) != 1:
        raise ModelError(f"expected a model with one input, got {len(model.inputs)}")
    if model.inputs[0].shape[0] == 1:
        return model
    try:
        config = model.get_config()
    except NotImplementedError:
        raise ModelError("cannot rebuild this model for batch size 1 (subclassed model without get_config); "
                         "build it with keras.Input(batch_size=1)") from None
    changed = 0

    def set_batch(node):
        nonlocal changed
        if isinstance(node, dict):
            if node.get("class_name") == "InputLayer" and isinstance(node.get("config"), dict):
                cfg = node["config"]
                for key in ("batch_shape", "batch_input_shape"):
                    if cfg.get(key):
                        cfg[key] = [1] + list(cfg[key][1:])
                        changed += 1
            for value in node.values():
                set_batch(value)
        elif isinstance(node, list):
            for value in node:
                set_batch(value)

    set_batch(config)
    if not changed:
        raise ModelError("cannot find the model's input layer to rebuild it for batch size 1")
    try:
        clone = model.__class__.from_config(config)
        if not clone.built:
            clone.build((1,) + _input_feature_shape(model))
        clone.set_weights(model.get_weights())
    except (TypeError, ValueError, KeyError) as exc:
        raise ModelError(f"cannot rebuild the model for batch size 1: {' '.join(str(exc).split())[:200]}") from None
    if not isinstance(clone, keras.Model) or clone.inputs[0].shape[0] != 1:
        raise ModelError("rebuilding the model for batch size 1 did not fix its batch size")
    return clone


def _prepare_representative(representative, feature_shape, min_samples) -> np.ndarray:
    rep = np.asarray(representative)
    if rep.dtype.kind not in "fiu":
        raise ModelError(f"representative data must be numeric, got dtype {rep.dtype}")
    rep = rep.astype(np.float32, copy=False)
    if rep.ndim == len(feature_shape) and feature_shape[-1] == 1:
        rep = rep[..., None]  # (N, T, C) -> (N, T, C, 1)
    if rep.ndim != len(feature_shape) + 1 or tuple(rep.shape[1:]) != tuple(feature_shape):
        raise ModelError(f"representative data has shape {tuple(rep.shape)}, the model expects "
                         f"(N, {', '.join(map(str, feature_shape))})")
    if len(rep) < min_samples:
        raise ModelError(f"representative set has {len(rep)} samples, need at least {min_samples}",
                         hint="pass more training examples for calibration")
    if not np.all(np.isfinite(rep)):
        raise ModelError("representative data contains NaN or infinite values")
    return rep


def to_int8_tflite(model, representative, min_samples: int = DEFAULT_MIN_SAMPLES,
                   input_quant: tuple[float, int] | None = None,
                   allowed_ops=ALLOWED_OPS) -> bytes:
    """Convert ``model`` to a full-integer int8 TFLite flatbuffer.

    ``representative``: float32 features ``(N, T, C)`` or ``(N, T, C, 1)`` the
    model was trained on (N >= ``min_samples``), used to calibrate activation
    ranges. ``input_quant=(scale, zero_point)`` pins the input tensor's
    quantisation to the front end's int8 feature format (so device features
    feed the model unchanged); it adds one calibration sample spanning exactly
    the representable range, and the result is checked.
    Raises :class:`ModelError` for bad data, a failed conversion, an op outside
    ``allowed_ops``, or non-int8 input/output.
    """
    import tensorflow as tf

    model1 = with_batch_size_one(model)
    feature_shape = _input_feature_shape(model1)
    rep = _prepare_representative(representative, feature_shape, min_samples)
    if input_quant is not None:
        scale, zero_point = float(input_quant[0]), int(input_quant[1])
        if not (scale > 0 and np.isfinite(scale)) or not -128 <= zero_point <= 127:
            raise ModelError(f"bad input quantisation scale={scale} zero_point={zero_point}")
        lo, hi = (-128 - zero_point) * scale, (127 - zero_point) * scale
        span = np.full((1,) + feature_shape, (lo + hi) / 2, dtype=np.float32)
        span.reshape(-1)[0], span.reshape(-1)[-1] = lo, hi
        rep = np.concatenate([np.clip(rep, lo, hi), span])

    def samples():
        for i in range(len(rep)):
            yield [rep[i : i + 1]]

    converter = tf.lite.TFLiteConverter.from_keras_model(model1)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = samples
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    try:
        with _quiet():
            flatbuffer = converter.convert()
    except Exception as exc:  # the converter raises many types; the user gets one line
        first = next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        raise ModelError(f"int8 conversion failed: {first.strip()[:300]}") from None

    flatbuffer = strip_tflite(flatbuffer)
    info = inspect_tflite(flatbuffer, measure_tflm=False)
    check_int8_model(info, allowed_ops)
    if input_quant is not None:
        if not np.isclose(info.input_scale, scale, rtol=1e-5) or info.input_zero_point != zero_point:
            raise ModelError(f"input quantisation came out as scale={info.input_scale:.6g} "
                             f"zero_point={info.input_zero_point}, wanted scale={scale:.6g} zero_point={zero_point}")
    return bytes(flatbuffer)


def strip_tflite(flatbuffer: bytes) -> bytes:
    """The same model without what no interpreter needs: tensor and subgraph names, the
    description, signature defs and the converter's metadata entries.

    About 4-5 KB of a 25-30 KB zoo model are such strings; on the Nucleo the model sits
    in the heap, so they cost RAM. Constant buffers are re-packed 16-byte aligned (the
    converter only guarantees 4). The arithmetic is untouched: tests check bit-identical
    outputs before and after.
    """
    import flatbuffers
    from ai_edge_litert.tools import flatbuffer_utils as fbu

    model = fbu.convert_bytearray_to_object(bytearray(flatbuffer))
    fbu.strip_strings(model)
    for entry in model.metadata or []:
        model.buffers[entry.buffer].data = None
    model.metadata = None
    aligned = _aligned_buffer_class()
    for buf in model.buffers or []:
        buf.__class__ = aligned
    builder = flatbuffers.Builder(len(flatbuffer))
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


@functools.lru_cache(maxsize=1)
def _aligned_buffer_class():
    from ai_edge_litert import schema_py_generated as schema

    class AlignedBuffer(schema.BufferT):
        """A BufferT whose data vector starts on a 16-byte boundary (the stock Pack uses 1)."""

        def Pack(self, builder):  # noqa: N802 - flatbuffers' name
            raw = None if self.data is None else np.asarray(self.data, dtype=np.uint8).tobytes()
            data = None
            if raw:
                builder.StartVector(1, len(raw), 16)
                builder.head -= len(raw)
                builder.Bytes[builder.head:builder.head + len(raw)] = raw
                builder.vectorNumElems = len(raw)
                data = builder.EndVector()
            schema.BufferStart(builder)
            if data is not None:
                schema.BufferAddData(builder, data)
            schema.BufferAddOffset(builder, self.offset)
            schema.BufferAddSize(builder, self.size)
            return schema.BufferEnd(builder)

    return AlignedBuffer


def check_int8_model(info: TfliteInfo, allowed_ops=ALLOWED_OPS) -> None:
    """Raise ModelError unless the model is int8 in/out and uses only ``allowed_ops``."""
    bad = info.unsupported_ops(allowed_ops)
    if bad:
        raise ModelError(f"the int8 model uses op(s) the device engine does not support: {', '.join(bad)}",
                         hint=f"supported: {', '.join(sorted(allowed_ops))}")
    if info.input_dtype != "int8" or info.output_dtype != "int8":
        raise ModelError(f"the model's input/output are {info.input_dtype}/{info.output_dtype}, not int8/int8")
    problems = info.quantisation_problems()
    if problems:
        raise ModelError(f"the int8 model would abort on the device: {problems[0]}")


# --------------------------------------------------------------------------- #
# Running int8 models on the host
# --------------------------------------------------------------------------- #


KERNELS = ("tflm", "batch", "reference", "builtin")
DEFAULT_KERNELS = "tflm"
TFLM_INSTALL_HINT = "pip install tflite-micro"


class Int8Runner:
    """One interpreter for one model, reused across calls.

    ``kernels`` picks whose integer arithmetic runs the model:

    * ``"tflm"`` (default): the TensorFlow Lite Micro interpreter itself
      (PyPI ``tflite-micro``), the code the boards run. This is the truth the
      device engines are tested against.
    * ``"batch"``: ``kws_kit.int8_batch``, a vectorised numpy engine that
      scores many inputs at once, bit-identical to TFLite Micro (tested on
      every zoo model); what evaluation uses (hundreds of times faster).
    * ``"reference"``: ai-edge-litert's reference kernels (``BUILTIN_REF``).
      They differ from TFLite Micro in one place: per-channel
      FULLY_CONNECTED requantises with one rounding where TFLite Micro rounds
      twice, so outputs can differ by a few LSB (see docs/device_runner.md).
    * ``"builtin"``: ai-edge-litert's optimised kernels without default
      delegates (``BUILTIN_WITHOUT_DEFAULT_DELEGATES``, no XNNPACK).
    """

    def __init__(self, tflite, kernels: str = DEFAULT_KERNELS):
        data = tflite if isinstance(tflite, (bytes, bytearray)) else open(os.fspath(tflite), "rb").read()
        if kernels not in KERNELS:
            raise ModelError(f"unknown kernels {kernels!r}, use one of: {', '.join(KERNELS)}")
        self.kernels = kernels
        self.info = inspect_tflite(data)  # validates before the C++ side sees the bytes
        problems = self.info.quantisation_problems()
        if problems:  # the reference kernels abort the whole process on these
            raise ModelError(f"cannot run this int8 model: {problems[0]}")
        if self.info.input_dtype != "int8" or self.info.output_dtype != "int8":
            raise ModelError("run_int8 needs a model with int8 input and output")
        self._batch = None
        if kernels == "batch":
            from .int8_batch import interpreter_for

            self._batch = interpreter_for(bytes(data))
            self.input_shape, self.output_shape = self._batch.input_shape, self._batch.output_shape
        elif kernels == "tflm":
            self._invoke_one = self._tflm_interpreter(bytes(data))
        else:
            self._invoke_one = self._litert_interpreter(bytes(data), kernels)

    def _litert_interpreter(self, data: bytes, kernels: str):
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        resolver = {"reference": OpResolverType.BUILTIN_REF,
                    "builtin": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES}[kernels]
        try:
            interp = Interpreter(model_content=data, experimental_op_resolver_type=resolver)
            interp.allocate_tensors()
        except (RuntimeError, ValueError) as exc:
            raise ModelError(f"cannot load the TFLite model: {' '.join(str(exc).split())[:200]}") from None
        in_detail, out_detail = interp.get_input_details()[0], interp.get_output_details()[0]
        self.input_shape = tuple(int(d) for d in in_detail["shape"])
        self.output_shape = tuple(int(d) for d in out_detail["shape"])
        in_index, out_index = in_detail["index"], out_detail["index"]

        def invoke_one(x1):
            interp.set_tensor(in_index, x1)
            interp.invoke()
            return interp.get_tensor(out_index)

        return invoke_one

    def _tflm_interpreter(self, data: bytes):
        try:
            from tflite_micro import runtime
        except ImportError:
            raise ModelError("kernels='tflm' needs the TensorFlow Lite Micro interpreter",
                             hint=TFLM_INSTALL_HINT) from None
        # the wrapper's default arena (10x the model size) is too small for small models with
        # large activations; the host plan plus generous room for TFLM's own bookkeeping fits
        arena = max(10 * len(data), 2 * self.info.arena_bytes + (64 << 10))
        try:
            interp = runtime.Interpreter.from_bytes(data, arena_size=arena)
            in_detail, out_detail = interp.get_input_details(0), interp.get_output_details(0)
        except (RuntimeError, ValueError) as exc:
            raise ModelError(f"TFLite Micro cannot load the model: {' '.join(str(exc).split())[:200]}") from None
        self.input_shape = tuple(int(d) for d in in_detail["shape"])
        self.output_shape = tuple(int(d) for d in out_detail["shape"])

        def invoke_one(x1):
            interp.set_input(x1, 0)
            interp.invoke()
            return interp.get_output(0)

        return invoke_one

    def __call__(self, inputs) -> np.ndarray:
        x = np.asarray(inputs)
        if x.dtype != np.int8:
            raise ModelError(f"run_int8 needs int8 inputs, got {x.dtype}")
        per_sample = int(np.prod(self.input_shape[1:]))
        if x.ndim < 1 or len(x) == 0 or x[0].size != per_sample:
            raise ModelError(f"inputs of shape {x.shape} do not match the model input {self.input_shape}")
        n = len(x)
        x = np.ascontiguousarray(x.reshape((n,) + self.input_shape[1:]))
        if self._batch is not None:
            return self._batch.run(x).reshape((n,) + self.output_shape[1:])
        out = np.empty((n,) + self.output_shape[1:], dtype=np.int8)
        invoke_one = self._invoke_one
        for i in range(n):
            out[i] = invoke_one(x[i : i + 1])[0]
        return out

    def dequantize_output(self, y: np.ndarray) -> np.ndarray:
        return (y.astype(np.float32) - self.info.output_zero_point) * self.info.output_scale

    def quantize_input(self, x: np.ndarray) -> np.ndarray:
        q = np.round(np.asarray(x, dtype=np.float32) / self.info.input_scale) + self.info.input_zero_point
        return np.clip(q, -128, 127).astype(np.int8)


def run_int8(tflite, inputs_int8, kernels: str = DEFAULT_KERNELS) -> np.ndarray:
    """Run an int8 model on int8 inputs ``(N, ...)``, one invoke per sample; returns int8 ``(N, n_classes)``.

    By default through TensorFlow Lite Micro itself (``kernels="tflm"``), what the boards compute;
    ``"batch"`` runs the same arithmetic vectorised over all inputs (``kws_kit.int8_batch``);
    ``"reference"`` / ``"builtin"`` select ai-edge-litert's kernels (see :class:`Int8Runner`).
    """
    return Int8Runner(tflite, kernels=kernels)(inputs_int8)
