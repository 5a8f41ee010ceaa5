"""Model runners with one interface: the C module ``kws``, OpenMV ``ml``, or pure ulab.

``make_runner(model_bytes, arena_size, prefer=("kws", "ml", "ulab"))`` returns
the first runner whose engine imports. Every runner has ``input_scale``,
``input_zero_point``, ``output_scale``, ``output_zero_point``, ``input_size``,
``output_size``, ``name`` and ``invoke(features_int8) -> array('b')``:
``features_int8`` is a bytes-like object / array('b') / int8 ndarray of
``input_size`` values (row-major frame, coefficient); the returned array is
owned by the runner and overwritten by the next call.

``UlabRunner`` is an int8 TFLite interpreter in Python (kernels in
``int8ops``) whose outputs are bit-identical to TensorFlow Lite Micro's.
"""

from array import array

from . import tflite

# The ulab kernels, imported by the runners that use them (_load_int8ops): the kws C runner does not,
# and on a board the module takes 2.7 KB of heap frozen and 17 KB from a .py file (docs/runtime.md).
int8ops = None


def _load_int8ops():
    global int8ops
    if int8ops is None:
        from . import int8ops as module

        int8ops = module
    return int8ops

SUPPORTED_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "AVERAGE_POOL_2D", "MAX_POOL_2D",
                 "MEAN", "RESHAPE", "SOFTMAX", "ADD")
_BYTES = (bytearray, bytes)  # built once: a tuple written in a call is allocated on every call
ARENA_ALIGNMENT = 16
MAX_ARENA = 1 << 26  # a KWS model needing more activation memory is a damaged file


def _io_params(model):
    tin, tout = model.input_tensor(), model.output_tensor()
    if tin.dtype != tflite.INT8 or tout.dtype != tflite.INT8:
        raise ValueError("model input/output are %s/%s, expected int8/int8" % (tin.type_name(), tout.type_name()))
    return tin, tout


def _as_int8_list(features, n):
    """Input values as Python ints in -128..127 (bytes are reinterpreted as int8)."""
    if isinstance(features, (bytes, bytearray, memoryview)):
        if len(features) != n:
            raise ValueError("expected %d input values, got %d" % (n, len(features)))
        return [v - 256 if v > 127 else v for v in bytes(features)]
    values = features.tolist() if hasattr(features, "tolist") else list(features)
    if len(values) != n:
        raise ValueError("expected %d input values, got %d" % (n, len(values)))
    return values


def plan_arena(model):
    """Greedy liveness plan: {tensor index: byte offset} and the arena size.

    A tensor lives from the op that writes it (graph input: step 0) to the last
    op that reads it (graph output: the end). Tensors are placed largest first
    at the lowest aligned offset that does not overlap a placed tensor whose
    lifetime intersects, so buffers are shared between ops that never overlap.
    """
    ops = model.operators
    tensors = model.tensors
    first, last = {}, {}
    for j in model.inputs:
        first[j] = 0
        last[j] = 0
    for step, op in enumerate(ops):
        for j in op.inputs + op.outputs:
            if j >= 0 and not tensors[j].is_constant():
                if j not in first:
                    first[j] = step
                last[j] = max(last.get(j, step), step)
    end = max(len(ops) - 1, 0)
    for j in model.outputs:
        last[j] = end
    order = sorted(first, key=lambda j: (-tensors[j].nbytes(), first[j], j))
    placed = []
    offsets = {}
    high = 0
    for j in order:
        size = (tensors[j].nbytes() + ARENA_ALIGNMENT - 1) // ARENA_ALIGNMENT * ARENA_ALIGNMENT
        clashes = sorted((off, sz) for off, sz, f, l in placed if not (l < first[j] or f > last[j]))
        offset = 0
        for off, sz in clashes:
            if offset + size <= off:
                break
            offset = max(offset, off + sz)
        placed.append((offset, size, first[j], last[j]))
        offsets[j] = offset
        high = max(high, offset + size)
    return offsets, high


class UlabRunner:
    """Pure-Python int8 interpreter (ulab on the board, numpy on the host)."""

    name = "ulab"

    def __init__(self, model_bytes, arena_size=None):
        _load_int8ops()
        model = tflite.parse(model_bytes)
        if len(model.inputs) != 1 or len(model.outputs) != 1:
            raise ValueError("expected one input and one output, the model has %d and %d"
                             % (len(model.inputs), len(model.outputs)))
        tin, tout = _io_params(model)
        self.model = model
        tensors = model.tensors
        unsupported = sorted(set(op.name for op in model.operators if op.name not in SUPPORTED_OPS))
        if unsupported:
            raise ValueError("unsupported op(s) %s (the runtime supports %s)" % (", ".join(unsupported),
                                                                                  ", ".join(SUPPORTED_OPS)))
        for op in model.operators:
            for j in op.inputs + op.outputs:
                if j >= 0 and not tensors[j].is_constant() and tensors[j].dtype != tflite.INT8:
                    raise ValueError("op %d %s: tensor %r is %s, only int8 activations are supported"
                                     % (op.index, op.name, tensors[j].name, tensors[j].type_name()))
            if not op.outputs or op.outputs[0] < 0 or not op.inputs or op.inputs[0] < 0:
                raise ValueError("op %d %s has no input or output" % (op.index, op.name))
        for t in tensors:
            if t.numel() > MAX_ARENA:
                raise ValueError("tensor %r has %d elements: not a model this runtime can run" % (t.name, t.numel()))
        offsets, size = plan_arena(model)
        if size > MAX_ARENA:
            raise ValueError("the model needs %d bytes of activations" % size)
        self.arena_size = size
        self.arena = bytearray(size)
        self._views = {}
        for j, off in offsets.items():
            self._views[j] = int8ops.int8_view(self.arena, off, tensors[j].numel())
        self._steps = []
        for op in model.operators:
            name = op.name
            if name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
                kernel = int8ops.Conv(op, tensors, name == "DEPTHWISE_CONV_2D")
            elif name == "FULLY_CONNECTED":
                kernel = int8ops.FullyConnected(op, tensors)
            elif name in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
                kernel = int8ops.Pool(op, tensors, name == "AVERAGE_POOL_2D")
            elif name == "MEAN":
                kernel = int8ops.Mean(op, tensors)
            elif name == "ADD":
                kernel = int8ops.Add(op, tensors)
            elif name == "SOFTMAX":
                kernel = int8ops.Softmax(op, tensors)
            else:
                kernel = int8ops.Reshape(op, tensors)
            if name == "ADD":
                views = (self._view(op.inputs[0], op), self._view(op.inputs[1], op), self._view(op.outputs[0], op))
            else:
                views = (self._view(op.inputs[0], op), self._view(op.outputs[0], op))
            self._steps.append((kernel, views))
        self.input_scale, self.input_zero_point = tin.scale(), tin.zero_point()
        self.output_scale, self.output_zero_point = tout.scale(), tout.zero_point()
        self.input_size, self.output_size = tin.numel(), tout.numel()
        self.input_shape, self.output_shape = tin.shape, tout.shape
        self._in = self._views[model.inputs[0]]
        self._out_view = self._views[model.outputs[0]]
        self._out = array("b", bytes(self.output_size))

    def _view(self, j, op):
        if j not in self._views:
            raise ValueError("op %d %s reads a constant tensor where an activation is expected" % (op.index, op.name))
        return self._views[j]

    def invoke(self, features_int8):
        values = _as_int8_list(features_int8, self.input_size)
        self._in[:] = int8ops.np.array(values, dtype=int8ops.np.int8)
        for kernel, views in self._steps:
            kernel.run(*views)
        return self._copy_output()

    def invoke_traced(self, features_int8):
        """Like ``invoke``, plus every op's output as ``(tensor index, bytes)`` in op order (for diagnostics)."""
        values = _as_int8_list(features_int8, self.input_size)
        self._in[:] = int8ops.np.array(values, dtype=int8ops.np.int8)
        trace = []
        for (kernel, views), op in zip(self._steps, self.model.operators):
            kernel.run(*views)
            trace.append((op.outputs[0], bytes(views[-1].tobytes())))
        return self._copy_output(), trace

    def _copy_output(self):
        out = self._out
        result = self._out_view.tolist()
        for i in range(self.output_size):
            out[i] = int(result[i])
        return out


class KwsCRunner:
    """The C module ``kws`` (``kws.Model(model_bytes, arena_size)``)."""

    name = "kws"

    def __init__(self, model_bytes, arena_size, kws_module=None):
        if kws_module is None:
            import kws as kws_module
        model = tflite.parse(model_bytes)
        tin, tout = _io_params(model)
        self.input_size, self.output_size = tin.numel(), tout.numel()
        self._model = kws_module.Model(model_bytes, arena_size)
        m = self._model
        self.input_scale, self.input_zero_point = m.input_scale, m.input_zero_point
        self.output_scale, self.output_zero_point = m.output_scale, m.output_zero_point
        self.arena_used = getattr(m, "arena_used", None)
        self._in = array("b", bytes(self.input_size))
        self._out = array("b", bytes(self.output_size))

    def invoke(self, features_int8):
        buf = self._in
        if ((isinstance(features_int8, _BYTES) or
             (isinstance(features_int8, array) and features_int8.typecode == "b"))
                and len(features_int8) == self.input_size):
            # the C module reads any buffer as int8: no copy (KwsFrontend hands over a bytearray each inference)
            buf = features_int8
        else:
            values = _as_int8_list(features_int8, self.input_size)
            for i in range(self.input_size):
                buf[i] = values[i]
        self._model.invoke(buf, self._out)
        return self._out


class OpenMVRunner:
    """OpenMV's ``ml.Model``: float in/out around its own int8 TFLite Micro engine.

    OpenMV quantises float inputs with the model's input scale/zero point and
    dequantises outputs, so int8 features are dequantised here and the float
    outputs quantised back (both round trips are exact up to float rounding).
    """

    name = "ml"

    def __init__(self, model_bytes, arena_size=None, ml_module=None, np_module=None):
        if ml_module is None:
            import ml as ml_module
        _load_int8ops()
        self._np = np_module or int8ops.np
        model = tflite.parse(model_bytes)
        tin, tout = _io_params(model)
        self.input_size, self.output_size = tin.numel(), tout.numel()
        self.input_scale, self.input_zero_point = tin.scale(), tin.zero_point()
        self.output_scale, self.output_zero_point = tout.scale(), tout.zero_point()
        self._shape = tuple(tin.shape)
        self._model = ml_module.Model(bytes(model_bytes))
        self._out = array("b", bytes(self.output_size))

    def invoke(self, features_int8):
        values = _as_int8_list(features_int8, self.input_size)
        s, z = self.input_scale, self.input_zero_point
        x = self._np.array([(v - z) * s for v in values], dtype=self._np.float).reshape(self._shape) \
            if hasattr(self._np, "float") else self._np.array([(v - z) * s for v in values]).reshape(self._shape)
        y = self._model.predict([x])[0]
        flat = y.tolist() if hasattr(y, "tolist") else list(y)
        while flat and isinstance(flat[0], list):
            flat = [v for row in flat for v in row]
        out, s, z = self._out, self.output_scale, self.output_zero_point
        for i in range(self.output_size):
            v = flat[i]
            if isinstance(v, float):
                v = int8ops.round_half_away(v / s) + z
            v = int(v)
            out[i] = -128 if v < -128 else 127 if v > 127 else v
        return out


def make_runner(model_bytes, arena_size=None, prefer=("kws", "ml", "ulab")):
    """The first runner in ``prefer`` whose engine is available on this system."""
    tried = []
    for kind in prefer:
        if kind == "kws":
            try:
                import kws  # noqa: F401
            except ImportError:
                tried.append("kws (no C module)")
                continue
            return KwsCRunner(model_bytes, arena_size)
        if kind == "ml":
            try:
                import ml  # noqa: F401
            except ImportError:
                tried.append("ml (not OpenMV)")
                continue
            return OpenMVRunner(model_bytes, arena_size)
        if kind == "ulab":
            return UlabRunner(model_bytes, arena_size)
        raise ValueError("unknown runner %r (use kws, ml or ulab)" % (kind,))
    raise ValueError("no model runner available: tried %s" % ", ".join(tried))
