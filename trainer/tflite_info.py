"""Read an int8 .tflite file: shapes, quantisation, ops, sizes and a tensor-arena estimate.

The flatbuffer is parsed with the schema bindings that ship with ai-edge-litert
(pure Python, no interpreter), reading every offset with bounds checks so a
truncated or foreign file becomes a one-line :class:`ModelError` instead of a
crash.

Arena estimate (what a TFLite-Micro-style engine needs at run time, besides the
model bytes themselves):

* activations: every tensor without constant data (graph input and output
  included) lives from the op that writes it (the input: from the start) to
  the last op that reads it (the output: to the end). Tensors are placed
  greedily, largest first, at the lowest 16-byte-aligned offset that does not
  overlap any already placed tensor whose lifetime intersects; the plan's
  high-water mark is the activation size. Nothing is aliased (RESHAPE copies).
* fixed overhead, documented here and in docs/models.md: ``FIXED_OVERHEAD_BYTES``
  once, ``TENSOR_OVERHEAD_BYTES`` per tensor (eval-tensor struct and pointer
  tables), ``OP_OVERHEAD_BYTES`` per op (node/registration struct and op data)
  and ``CHANNEL_OVERHEAD_BYTES`` per output channel of CONV_2D /
  DEPTHWISE_CONV_2D (per-channel int32 multiplier and shift computed at prepare
  time). The constants were fitted to TFLite Micro's recorded "tail"
  (persistent) allocations on the six zoo models, rounding up, so they also
  cover our smaller C engine.

Where the ``tflite-micro`` package is installed, ``tflm_arena_bytes`` is the
arena TFLite Micro itself allocates for the model (its recording allocator's
total); ``budget_arena_bytes`` is the larger of the two numbers. TFLM's
planner needed one activation buffer more than the plan above for tds_resnet
(7,872 vs 5,904 bytes) and matched it exactly on the other zoo models.
"""

from __future__ import annotations

import dataclasses
import os
import re
import struct
from pathlib import Path

import numpy as np

from .errors import ModelError

FIXED_OVERHEAD_BYTES = 800
TENSOR_OVERHEAD_BYTES = 32
OP_OVERHEAD_BYTES = 160
CHANNEL_OVERHEAD_BYTES = 8
ARENA_ALIGNMENT = 16

# Builtin ops our device engine implements; anything else is refused at export.
ALLOWED_OPS = frozenset({
    "CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "AVERAGE_POOL_2D", "MAX_POOL_2D",
    "MEAN", "RESHAPE", "SOFTMAX", "ADD",
})

_DTYPE_INFO = {  # TensorType enum -> (name, bytes per element)
    0: ("float32", 4), 1: ("float16", 2), 2: ("int32", 4), 3: ("uint8", 1), 4: ("int64", 8),
    5: ("string", 1), 6: ("bool", 1), 7: ("int16", 2), 8: ("complex64", 8), 9: ("int8", 1),
    10: ("float64", 8), 11: ("complex128", 16), 12: ("uint64", 8), 14: ("uint32", 4),
    15: ("uint16", 2), 16: ("int4", 1),
}


@dataclasses.dataclass
class TensorInfo:
    index: int
    name: str
    shape: tuple[int, ...]
    dtype: str
    nbytes: int
    is_constant: bool
    scale: tuple[float, ...]
    zero_point: tuple[int, ...]


@dataclasses.dataclass
class OpInfo:
    name: str
    inputs: tuple[int, ...]   # tensor indices, -1 for an omitted optional input
    outputs: tuple[int, ...]
    options: dict             # stride / padding / dilation / activation where relevant


@dataclasses.dataclass
class TfliteInfo:
    size_bytes: int
    input_shape: tuple[int, ...]
    input_dtype: str
    input_scale: float
    input_zero_point: int
    output_shape: tuple[int, ...]
    output_dtype: str
    output_scale: float
    output_zero_point: int
    op_names: list[str]
    ops: list[OpInfo]
    tensors: list[TensorInfo]
    param_bytes: int          # constant tensor data (weights, biases, shapes)
    activation_bytes: int     # greedy plan high-water mark
    overhead_bytes: int       # fixed per-tensor / per-op / per-channel part
    arena_bytes: int          # activation_bytes + overhead_bytes
    macs: int                 # multiply-accumulates of conv, depthwise and FC ops
    n_subgraphs: int
    tflm_arena_bytes: int | None = None  # TFLite Micro's own arena, when tflite-micro is installed
    input_index: int = -1     # the graph input's tensor index
    output_index: int = -1    # the graph output's tensor index

    @property
    def budget_arena_bytes(self) -> int:
        """The arena to budget for: the estimate or TFLite Micro's figure, whichever is larger."""
        return max(self.arena_bytes, self.tflm_arena_bytes or 0)

    def kws_arena_bytes(self, pointer_bytes: int = 4) -> int:
        """The arena the ``kws`` C module needs for this model (its loader's layout, see
        :func:`kws_engine_arena_bytes`); ``pointer_bytes=4`` for the boards."""
        return kws_engine_arena_bytes(self, pointer_bytes)

    def unsupported_ops(self, allowed=ALLOWED_OPS) -> list[str]:
        return sorted(set(self.op_names) - set(allowed))

    def quantisation_problems(self) -> list[str]:
        """Quantisation parameters the reference kernels (and TFLite Micro) abort on at prepare time.

        SOFTMAX turns ``beta * input_scale * 2**26`` into a fixed-point
        multiplier that must exceed 1; ADD rescales its output by
        ``2 * max(input scales) / (2**20 * output_scale)``, which must stay
        below 1. Trained models are far from both limits; a dead or untrained
        network whose activations collapse to ~0 is not.
        """
        problems = []
        for k, op in enumerate(self.ops):
            if op.name == "SOFTMAX":
                scale = self.tensors[op.inputs[0]].scale
                beta = op.options.get("beta", 1.0) or 1.0
                if scale and beta * scale[0] * 2.0**26 <= 1.0:
                    problems.append(f"op {k} SOFTMAX input scale {scale[0]:.3g} is too small "
                                    "(the logits span almost nothing: is the model trained?)")
            elif op.name == "ADD" and len(op.inputs) == 2:
                s1, s2 = (self.tensors[j].scale for j in op.inputs)
                out = self.tensors[op.outputs[0]].scale
                if s1 and s2 and out and 2 * max(s1[0], s2[0]) / (2.0**20 * out[0]) >= 1.0:
                    problems.append(f"op {k} ADD output scale {out[0]:.3g} is too small for its inputs")
        return problems

    def summary(self) -> str:
        return (f"{self.size_bytes} B flash, arena ~{self.arena_bytes} B, {len(self.ops)} ops, "
                f"input {self.input_dtype}{list(self.input_shape)} output {self.output_dtype}{list(self.output_shape)}")


def _op_name_table() -> dict[int, str]:
    from ai_edge_litert import schema_py_generated as schema

    return {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_") and isinstance(v, int)}


_ACTIVATIONS = {0: "NONE", 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6", 4: "TANH", 5: "SIGN_BIT"}
_PADDING = {0: "SAME", 1: "VALID"}


def _options(schema, op, name: str) -> dict:
    table = op.BuiltinOptions()
    if table is None:
        return {}
    if name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        cls = schema.Conv2DOptions if name == "CONV_2D" else schema.DepthwiseConv2DOptions
        o = cls()
        o.Init(table.Bytes, table.Pos)
        opts = {"stride": (o.StrideH(), o.StrideW()), "dilation": (o.DilationHFactor(), o.DilationWFactor()),
                "padding": _PADDING.get(o.Padding(), o.Padding()),
                "activation": _ACTIVATIONS.get(o.FusedActivationFunction(), o.FusedActivationFunction())}
        if name == "DEPTHWISE_CONV_2D":
            opts["depth_multiplier"] = o.DepthMultiplier()
        return opts
    if name in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
        o = schema.Pool2DOptions()
        o.Init(table.Bytes, table.Pos)
        return {"stride": (o.StrideH(), o.StrideW()), "filter": (o.FilterHeight(), o.FilterWidth()),
                "padding": _PADDING.get(o.Padding(), o.Padding()),
                "activation": _ACTIVATIONS.get(o.FusedActivationFunction(), o.FusedActivationFunction())}
    if name in ("FULLY_CONNECTED", "ADD"):
        o = schema.FullyConnectedOptions() if name == "FULLY_CONNECTED" else schema.AddOptions()
        o.Init(table.Bytes, table.Pos)
        return {"activation": _ACTIVATIONS.get(o.FusedActivationFunction(), o.FusedActivationFunction())}
    if name == "SOFTMAX":
        o = schema.SoftmaxOptions()
        o.Init(table.Bytes, table.Pos)
        return {"beta": o.Beta()}
    if name == "MEAN":
        o = schema.ReducerOptions()
        o.Init(table.Bytes, table.Pos)
        return {"keep_dims": bool(o.KeepDims())}
    return {}


def _read_bytes(source) -> tuple[bytes, str]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source), "model bytes"
    path = Path(os.fspath(source))
    try:
        return path.read_bytes(), str(path)
    except OSError as exc:
        raise ModelError(f"cannot read model file {path}: {exc.strerror or exc}") from None


def inspect_tflite(source, measure_tflm: bool = True) -> TfliteInfo:
    """Parse a .tflite model (bytes or a path) into a :class:`TfliteInfo`.

    ``measure_tflm``: also record TFLite Micro's arena (``tflm_arena_bytes``)
    when tflite-micro is installed and the model is one it can safely load.
    """
    data, what = _read_bytes(source)
    from ai_edge_litert import schema_py_generated as schema

    if len(data) < 16 or data[4:8] != b"TFL3":
        raise ModelError(f"{what} is not a TFLite model (no TFL3 identifier)")
    try:
        info = _parse(schema, data)
    except ModelError:
        raise
    except (struct.error, IndexError, ValueError, TypeError, AttributeError, KeyError, OverflowError) as exc:
        raise ModelError(f"{what} is a damaged TFLite model ({type(exc).__name__} while reading it)") from None
    if measure_tflm:
        info.tflm_arena_bytes = measure_tflm_arena(data, info)
    return info


_TFLM_ARENA_CACHE: dict[str, int | None] = {}


def measure_tflm_arena(data: bytes, info: TfliteInfo) -> int | None:
    """TFLite Micro's arena for this model (recording allocator total), or None.

    None when tflite-micro is not installed, the model is not one our export
    produces (other ops, non-int8 I/O), or TFLite Micro refuses or crashes on
    it. The C++ interpreter calls abort() on some damaged models, so it runs
    in a child process: a bad file costs a None here, never the caller's
    process. Results are cached per model digest (the child takes ~0.5 s).
    """
    if info.unsupported_ops() or info.quantisation_problems() or info.input_dtype != "int8" \
            or info.output_dtype != "int8" or info.n_subgraphs != 1:
        return None
    import hashlib
    import importlib.util

    if importlib.util.find_spec("tflite_micro") is None:
        return None
    key = hashlib.sha256(data).hexdigest()
    if key not in _TFLM_ARENA_CACHE:
        _TFLM_ARENA_CACHE[key] = _tflm_arena_in_child(data, max(1 << 20, 4 * info.arena_bytes))
    return _TFLM_ARENA_CACHE[key]


def _tflm_arena_in_child(data: bytes, arena_size: int) -> int | None:
    import subprocess
    import sys
    import tempfile

    with tempfile.TemporaryDirectory(prefix="kws-tflm-") as tmp:
        model = Path(tmp) / "model.tflite"
        model.write_bytes(data)
        try:
            run = subprocess.run(
                [sys.executable, "-c", _TFLM_CHILD, str(model), str(arena_size)],
                capture_output=True, timeout=120, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
    if run.returncode != 0:
        return None
    found = re.search(rb"Arena allocation total (\d+) bytes", run.stdout + run.stderr)
    return int(found.group(1)) if found else None


# print_allocations() writes to the C stderr, which the parent captures.
_TFLM_CHILD = """
import ctypes, sys
from tflite_micro import runtime
data = open(sys.argv[1], 'rb').read()
interp = runtime.Interpreter.from_bytes(data, arena_size=int(sys.argv[2]))
interp.print_allocations()
ctypes.CDLL(None).fflush(None)
"""


def _parse(schema, data: bytes) -> TfliteInfo:
    model = schema.Model.GetRootAs(data, 0)
    n_subgraphs = model.SubgraphsLength()
    if n_subgraphs < 1:
        raise ModelError("TFLite model has no subgraph")
    graph = model.Subgraphs(0)
    names = _op_name_table()

    def buffer_nbytes(index: int) -> int:
        if index <= 0 or index >= model.BuffersLength():
            return 0
        buf = model.Buffers(index)
        offset, size = buf.Offset(), buf.Size()
        if offset > 1:  # data stored after the flatbuffer (models over 2 GB)
            if offset + size > len(data):
                raise ModelError("TFLite model is truncated (buffer data past the end of the file)")
            return int(size)
        n = buf.DataLength()
        if n:
            # Touch the last byte so a truncated vector is caught here.
            start = buf._tab.Vector(buf._tab.Offset(4))  # noqa: SLF001 - where the data vector starts
            if start + n > len(data):
                raise ModelError("TFLite model is truncated (buffer data past the end of the file)")
        return int(n)

    tensors: list[TensorInfo] = []
    for i in range(graph.TensorsLength()):
        t = graph.Tensors(i)
        shape = tuple(int(v) for v in t.ShapeAsNumpy()) if t.ShapeLength() else ()
        dtype, itemsize = _DTYPE_INFO.get(t.Type(), (f"type{t.Type()}", 1))
        count = int(np.prod(shape)) if shape else 1
        nbytes = (count + 1) // 2 if dtype == "int4" else count * itemsize
        const_bytes = buffer_nbytes(t.Buffer())
        q = t.Quantization()
        scale, zero = (), ()
        if q is not None:
            if q.ScaleLength():
                scale = tuple(float(v) for v in q.ScaleAsNumpy())
            if q.ZeroPointLength():
                zero = tuple(int(v) for v in q.ZeroPointAsNumpy())
        name = t.Name()
        tensors.append(TensorInfo(i, name.decode("utf-8", "replace") if name else "", shape, dtype,
                                  nbytes, const_bytes > 0, scale, zero))

    n_tensors = len(tensors)

    def check_index(j: int) -> int:
        j = int(j)
        if j < -1 or j >= n_tensors:
            raise ModelError(f"TFLite model refers to tensor {j} of {n_tensors}")
        return j

    ops: list[OpInfo] = []
    for k in range(graph.OperatorsLength()):
        op = graph.Operators(k)
        code = model.OperatorCodes(op.OpcodeIndex())
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        name = names.get(builtin, f"BUILTIN_{builtin}")
        if name == "CUSTOM":
            custom = code.CustomCode()
            name = f"CUSTOM:{custom.decode('utf-8', 'replace') if custom else '?'}"
        inputs = tuple(check_index(j) for j in (op.InputsAsNumpy() if op.InputsLength() else []))
        outputs = tuple(check_index(j) for j in (op.OutputsAsNumpy() if op.OutputsLength() else []))
        ops.append(OpInfo(name, inputs, outputs, _options(schema, op, name)))

    graph_inputs = [check_index(j) for j in graph.InputsAsNumpy()] if graph.InputsLength() else []
    graph_outputs = [check_index(j) for j in graph.OutputsAsNumpy()] if graph.OutputsLength() else []
    if len(graph_inputs) != 1 or len(graph_outputs) != 1:
        raise ModelError(f"expected one input and one output, the model has {len(graph_inputs)} and {len(graph_outputs)}")
    tin, tout = tensors[graph_inputs[0]], tensors[graph_outputs[0]]

    activation_bytes = plan_arena(tensors, ops, graph_inputs, graph_outputs)
    channels = sum(tensors[op.outputs[0]].shape[-1] for op in ops
                   if op.name in ("CONV_2D", "DEPTHWISE_CONV_2D") and op.outputs and tensors[op.outputs[0]].shape)
    used = {j for op in ops for j in op.inputs + op.outputs if j >= 0}
    overhead = (FIXED_OVERHEAD_BYTES + TENSOR_OVERHEAD_BYTES * len(used) + OP_OVERHEAD_BYTES * len(ops)
                + CHANNEL_OVERHEAD_BYTES * channels)

    return TfliteInfo(
        size_bytes=len(data),
        input_shape=tin.shape, input_dtype=tin.dtype,
        input_scale=tin.scale[0] if tin.scale else 0.0, input_zero_point=tin.zero_point[0] if tin.zero_point else 0,
        output_shape=tout.shape, output_dtype=tout.dtype,
        output_scale=tout.scale[0] if tout.scale else 0.0, output_zero_point=tout.zero_point[0] if tout.zero_point else 0,
        op_names=[op.name for op in ops], ops=ops, tensors=tensors,
        param_bytes=sum(buffer_nbytes(b) for b in range(model.BuffersLength())),
        activation_bytes=activation_bytes, overhead_bytes=overhead, arena_bytes=activation_bytes + overhead,
        macs=count_macs(ops, tensors), n_subgraphs=n_subgraphs, input_index=graph_inputs[0],
        output_index=graph_outputs[0],
    )


def _align(n: int) -> int:
    return (n + ARENA_ALIGNMENT - 1) // ARENA_ALIGNMENT * ARENA_ALIGNMENT


# sizeof(struct kws_model), sizeof(kws_tensor), sizeof(kws_op) in device/cmodule/kws/kws_internal.h,
# by pointer size (Cortex-M4 / x86-64); tests/test_cmodule_arena.py checks them against both compilers.
KWS_STRUCT_BYTES = {4: (88, 64, 76), 8: (112, 72, 96)}


def kws_engine_arena_bytes(info: "TfliteInfo", pointer_bytes: int = 4) -> int:
    """What ``kws_model_load`` (device/cmodule/kws/kws_model.c) takes from its arena, computed
    the way it allocates. What the model keeps, from the arena's start: the model and op
    structs, per-channel int32 multipliers and int8 shifts (the kernels read the biases in
    the model bytes), then the activation plan (:func:`kws_plan_activations`: in-place ops
    share buffers) and the largest kernel scratch (DEPTHWISE's holds its corrected biases). While loading, the tensor table and the planner's order
    array sit at the arena's end (8-byte multiples) and are released before the activations
    are placed, so the arena needed is the larger of the two phases. The board needs more
    than TFLite Micro's arena for small models (structs, the conv kernels' int16 pixel-pair
    patches); tests/test_cmodule_arena.py checks this twin against the C loader's
    ``arena_used`` on every zoo model.
    """
    model_b, tensor_b, op_b = KWS_STRUCT_BYTES[pointer_bytes]

    def up(n: int, a: int) -> int:
        return (n + a - 1) // a * a

    def patch(k_len: int) -> int:  # kws_conv_patch_bytes
        return up(k_len, 4) * 2

    t = info.tensors
    head = up(model_b, 8) + op_b * len(info.ops)  # the model struct at the 16-aligned start, then the ops
    activation_bytes, n_buffers = kws_plan_activations(info)
    temporary = up(tensor_b * len(t), 8) + up(4 * n_buffers, 8)
    scratch = 0
    for op in info.ops:
        if op.name in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
            w = t[op.inputs[1]]
            out_c = w.shape[-1] if op.name == "DEPTHWISE_CONV_2D" else w.shape[0]
            n_scales = max(1, len(w.scale))
            if n_scales == 1 and out_c > 1 and op.name != "FULLY_CONNECTED":
                n_scales = out_c  # a per-tensor scale broadcast to every channel
            head = up(head, 4) + 4 * n_scales + n_scales  # int32 multipliers, int8 shifts
            if op.name == "CONV_2D":
                scratch = max(scratch, 2 * patch(int(np.prod(w.shape[1:]))))
            elif op.name == "DEPTHWISE_CONV_2D":
                taps = int(w.shape[1] * w.shape[2])
                # tap pointers, zero-point row, corrected biases
                scratch = max(scratch, taps * pointer_bytes + up(int(t[op.inputs[0]].shape[-1]), 4) + 4 * out_c)
            else:
                scratch = max(scratch, patch(int(w.shape[-1])))
        elif op.name == "MEAN":
            scratch = max(scratch, 4 * int(np.prod(t[op.outputs[0]].shape)))
    loading = up(head, 8) + temporary
    head = up(head, 16) + activation_bytes
    if scratch:
        head = up(head, 8) + scratch
    return max(head, loading)


def _kws_in_place(info: "TfliteInfo", op: OpInfo, which: int) -> bool:
    """kws_model.c's in_place(): may op's output overwrite its input ``which`` (0 first, 1 ADD's second)?"""
    if op.name == "ADD":
        return True
    if which or op.name not in ("RESHAPE", "CONV_2D"):
        return False
    if op.name == "RESHAPE":
        return True
    if len(op.inputs) < 2 or op.inputs[1] < 0 or len(info.tensors[op.inputs[1]].shape) != 4:
        return False  # the loader refuses such a CONV_2D
    w = info.tensors[op.inputs[1]].shape  # (out_c, k_h, k_w, in_c)
    return w[1] == 1 and w[2] == 1 and tuple(op.options.get("stride", ())) == (1, 1) and w[0] <= w[3]


def kws_plan_activations(info: "TfliteInfo") -> tuple[int, int]:
    """The kws loader's activation plan (kws_model.c's plan()): (bytes, number of buffers).

    Liveness as the loader records it (the graph input from step 0, the first three inputs
    of each op that are not constant, except RESHAPE's shape and MEAN's axes, the graph
    output to the last step). The output of an in-place op (RESHAPE, ADD, 1x1 stride-1
    CONV_2D with out_c <= in_c) shares the buffer of its first eligible input whose buffer
    dies at that op and does not hold the graph output. Buffers are placed greedily, largest
    first (then first use, then index), 16-byte aligned, at the lowest offset clear of every
    placed buffer whose lifetime overlaps.
    """
    t, ops = info.tensors, info.ops
    first: dict[int, int] = {}
    last: dict[int, int] = {}

    def touch(j: int, step: int) -> None:
        if j not in first:
            first[j] = last[j] = step
        first[j], last[j] = min(first[j], step), max(last[j], step)

    # (a model the loader refuses - an op without an output, say - still gets a number, no exception)
    if info.input_index >= 0:
        touch(info.input_index, 0)
    for k, op in enumerate(ops):
        reads = list(op.inputs[:3])
        if op.name in ("RESHAPE", "MEAN") and len(reads) > 1:
            reads[1] = -1  # the shape / axes tensor is not read at run time
        for j in reads:
            if j >= 0 and not t[j].is_constant:
                touch(j, k)
        if op.outputs and op.outputs[0] >= 0:
            touch(op.outputs[0], k)
    if info.output_index >= 0:
        touch(info.output_index, len(ops) - 1)

    owner = {j: j for j in first}
    span = {j: int(np.prod(t[j].shape)) if t[j].shape else 1 for j in first}
    for k, op in enumerate(ops):
        if not op.outputs or op.outputs[0] < 0:
            continue
        out = op.outputs[0]
        candidates = [op.inputs[0] if op.inputs else -1,
                      op.inputs[1] if op.name == "ADD" and len(op.inputs) > 1 else -1]
        for which, j in enumerate(candidates):
            if j < 0 or j not in owner or not _kws_in_place(info, op, which):
                continue
            own = owner[j]
            if last[own] != k or own == owner.get(info.output_index):
                continue
            owner[out] = own
            last[own] = max(last[own], last[out])
            span[own] = max(span[own], span[out])
            break
    order = sorted((j for j in first if owner[j] == j), key=lambda j: (-span[j], first[j], j))
    offset_of: dict[int, int] = {}
    high = 0
    for a, j in enumerate(order):
        size, offset = _align(span[j]), 0
        moved = True
        while moved:
            moved = False
            for b in order[:a]:
                if last[b] < first[j] or first[b] > last[j]:
                    continue
                if offset < offset_of[b] + _align(span[b]) and offset_of[b] < offset + size:
                    offset, moved = offset_of[b] + _align(span[b]), True
        offset_of[j] = offset
        high = max(high, offset + size)
    return high, len(order)


def plan_arena(tensors, ops, graph_inputs, graph_outputs) -> int:
    """Greedy, liveness-based placement of the activation tensors; returns the high-water mark."""
    last_step = max(len(ops) - 1, 0)
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    for j in graph_inputs:
        first[j] = 0
        last[j] = 0
    for step, op in enumerate(ops):
        for j in op.outputs:
            if j >= 0 and not tensors[j].is_constant:
                first.setdefault(j, step)
                last[j] = max(last.get(j, step), step)
        for j in op.inputs:
            if j >= 0 and not tensors[j].is_constant:
                first.setdefault(j, step)
                last[j] = max(last.get(j, step), step)
    for j in graph_outputs:
        last[j] = last_step
    order = sorted(first, key=lambda j: (-tensors[j].nbytes, first[j], j))
    placed: list[tuple[int, int, int, int]] = []  # (offset, size, first, last)
    high = 0
    for j in order:
        size = _align(tensors[j].nbytes)
        if size == 0:
            continue
        clashes = sorted((off, sz) for off, sz, f, l in placed if not (l < first[j] or f > last[j]))
        offset = 0
        for off, sz in clashes:
            if offset + size <= off:
                break
            offset = max(offset, off + sz)
        placed.append((offset, size, first[j], last[j]))
        high = max(high, offset + size)
    return high


def count_macs(ops, tensors) -> int:
    """Multiply-accumulates of CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED ops."""
    macs = 0
    for op in ops:
        if op.name not in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED") or len(op.inputs) < 2:
            continue
        weights = tensors[op.inputs[1]].shape
        out = tensors[op.outputs[0]].shape
        out_elems = int(np.prod(out)) if out else 0
        if op.name == "CONV_2D":      # filter [out_c, kh, kw, in_c]
            macs += out_elems * int(np.prod(weights[1:]))
        elif op.name == "DEPTHWISE_CONV_2D":  # filter [1, kh, kw, out_c]
            macs += out_elems * weights[1] * weights[2]
        else:                         # weights [out, in]
            macs += out_elems * weights[-1]
    return int(macs)
