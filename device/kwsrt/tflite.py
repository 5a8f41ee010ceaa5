"""Minimal TFLite flatbuffer reader for the board runtime.

Runs under MicroPython (only ``struct``) and CPython. It reads what the int8
interpreter (``int8ops``/``runners``) needs from subgraph 0: tensors (shape,
type, buffer, quantisation incl. per-channel), operators with their opcode
(``builtin_code`` or ``deprecated_builtin_code``) and the builtin options of
the ops kws-kit models use. Constant data is returned as ``memoryview`` slices
of the model bytes, so weights are never copied here.

Every offset is bounds-checked: a damaged, truncated or foreign file raises
``ValueError`` with a message, never an ``IndexError`` deep inside, and loops
are bounded by vector lengths that were checked against the file size.
"""

import struct

TFLITE_IDENTIFIER = b"TFL3"

# TensorType enum
FLOAT32 = 0
INT32 = 2
UINT8 = 3
INT64 = 4
INT16 = 7
INT8 = 9
TYPE_NAMES = {0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 5: "string", 6: "bool",
              7: "int16", 8: "complex64", 9: "int8", 10: "float64", 16: "int4"}
TYPE_SIZES = {0: 4, 1: 2, 2: 4, 3: 1, 4: 8, 6: 1, 7: 2, 8: 8, 9: 1, 10: 8}

# BuiltinOperator enum: the ops kws-kit models use, plus common ones so an
# unsupported op can be named in the error message.
OP_NAMES = {
    0: "ADD", 1: "AVERAGE_POOL_2D", 2: "CONCATENATION", 3: "CONV_2D", 4: "DEPTHWISE_CONV_2D",
    5: "DEPTH_TO_SPACE", 6: "DEQUANTIZE", 7: "EMBEDDING_LOOKUP", 8: "FLOOR", 9: "FULLY_CONNECTED",
    10: "HASHTABLE_LOOKUP", 11: "L2_NORMALIZATION", 12: "L2_POOL_2D", 13: "LOCAL_RESPONSE_NORMALIZATION",
    14: "LOGISTIC", 15: "LSH_PROJECTION", 16: "LSTM", 17: "MAX_POOL_2D", 18: "MUL", 19: "RELU",
    20: "RELU_N1_TO_1", 21: "RELU6", 22: "RESHAPE", 23: "RESIZE_BILINEAR", 24: "RNN", 25: "SOFTMAX",
    26: "SPACE_TO_DEPTH", 27: "SVDF", 28: "TANH", 32: "CUSTOM", 34: "PAD", 36: "GATHER",
    37: "BATCH_TO_SPACE_ND", 38: "SPACE_TO_BATCH_ND", 39: "TRANSPOSE", 40: "MEAN", 41: "SUB", 42: "DIV",
    43: "SQUEEZE", 45: "STRIDED_SLICE", 47: "EXP", 49: "SPLIT", 53: "CAST", 54: "PRELU", 55: "MAXIMUM",
    57: "MINIMUM", 65: "SLICE", 67: "TRANSPOSE_CONV", 70: "EXPAND_DIMS", 74: "SUM", 75: "SQRT",
    76: "RSQRT", 77: "SHAPE", 79: "POW", 80: "ARG_MIN", 81: "FAKE_QUANT", 82: "REDUCE_PROD",
    83: "REDUCE_MAX", 84: "PACK", 86: "LOGICAL_AND", 88: "UNPACK",
    89: "REDUCE_MIN", 91: "REDUCE_ANY", 92: "SQUARE", 98: "LEAKY_RELU", 100: "MIRROR_PAD", 101: "ABS",
    102: "SPLIT_V", 114: "QUANTIZE", 117: "HARD_SWISH", 121: "BATCH_MATMUL",
}

ACTIVATION_NAMES = {0: "NONE", 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6", 4: "TANH", 5: "SIGN_BIT"}
PADDING_NAMES = {0: "SAME", 1: "VALID"}

_MAX_RANK = 8


class Tensor:
    """One tensor of subgraph 0. ``data`` is a memoryview of its constant bytes, or None."""

    def __init__(self, index, name, shape, dtype, buffer, data, scales, zero_points, quantized_dimension):
        self.index = index
        self.name = name
        self.shape = shape
        self.dtype = dtype
        self.buffer = buffer
        self.data = data
        self.scales = scales
        self.zero_points = zero_points
        self.quantized_dimension = quantized_dimension

    def numel(self):
        n = 1
        for d in self.shape:
            n *= d
        return n

    def nbytes(self):
        return self.numel() * TYPE_SIZES.get(self.dtype, 1)

    def is_constant(self):
        return self.data is not None

    def scale(self):
        return self.scales[0] if self.scales else 0.0

    def zero_point(self):
        return self.zero_points[0] if self.zero_points else 0

    def type_name(self):
        return TYPE_NAMES.get(self.dtype, "type%d" % self.dtype)


class Operator:
    def __init__(self, index, name, code, inputs, outputs, options):
        self.index = index
        self.name = name
        self.code = code
        self.inputs = inputs
        self.outputs = outputs
        self.options = options


class Model:
    """Parsed model: ``tensors``, ``operators``, ``inputs``, ``outputs`` (tensor indices)."""

    def __init__(self, data, tensors, operators, inputs, outputs, n_subgraphs):
        self.data = data
        self.tensors = tensors
        self.operators = operators
        self.inputs = inputs
        self.outputs = outputs
        self.n_subgraphs = n_subgraphs

    def input_tensor(self):
        return self.tensors[self.inputs[0]]

    def output_tensor(self):
        return self.tensors[self.outputs[0]]

    def op_names(self):
        return [op.name for op in self.operators]


class _Reader:
    """Bounds-checked access to flatbuffer tables and vectors in ``buf``."""

    def __init__(self, buf):
        self.buf = buf
        self.size = len(buf)

    def _check(self, pos, n, what):
        if pos < 0 or n < 0 or pos + n > self.size:
            raise ValueError("damaged TFLite model: %s at %d+%d past the end (%d bytes)" % (what, pos, n, self.size))

    def u8(self, pos):
        self._check(pos, 1, "byte")
        return self.buf[pos]

    def unpack(self, fmt, pos, n, what="value"):
        self._check(pos, n, what)
        return struct.unpack_from(fmt, self.buf, pos)[0]

    def table(self, pos):
        """vtable (list of field offsets) of the table at ``pos``."""
        vt = pos - self.unpack("<i", pos, 4, "table")
        vt_size = self.unpack("<H", vt, 2, "vtable")
        if vt_size < 4 or vt_size & 1:
            raise ValueError("damaged TFLite model: bad vtable size %d" % vt_size)
        self._check(vt, vt_size, "vtable")
        n = (vt_size - 4) // 2
        return pos, [struct.unpack_from("<H", self.buf, vt + 4 + 2 * i)[0] for i in range(n)]

    def field_pos(self, tbl, field):
        pos, fields = tbl
        if field >= len(fields) or fields[field] == 0:
            return -1
        return pos + fields[field]

    def scalar(self, tbl, field, fmt, size, default):
        p = self.field_pos(tbl, field)
        if p < 0:
            return default
        return self.unpack(fmt, p, size, "field")

    def ref(self, tbl, field):
        """Absolute position of the object a reference field points to, or -1."""
        p = self.field_pos(tbl, field)
        if p < 0:
            return -1
        target = p + self.unpack("<I", p, 4, "reference")
        self._check(target, 4, "referenced object")
        return target

    def sub_table(self, tbl, field):
        p = self.ref(tbl, field)
        return None if p < 0 else self.table(p)

    def vector(self, tbl, field, elem_size):
        """(start, length) of a vector field; (0, 0) when absent."""
        p = self.ref(tbl, field)
        if p < 0:
            return 0, 0
        n = self.unpack("<I", p, 4, "vector length")
        self._check(p + 4, n * elem_size, "vector data")
        return p + 4, n

    def scalars(self, tbl, field, fmt, size):
        start, n = self.vector(tbl, field, size)
        return [struct.unpack_from(fmt, self.buf, start + size * i)[0] for i in range(n)]

    def tables(self, tbl, field):
        start, n = self.vector(tbl, field, 4)
        out = []
        for i in range(n):
            p = start + 4 * i
            target = p + struct.unpack_from("<I", self.buf, p)[0]
            self._check(target, 4, "table")
            out.append(self.table(target))
        return out

    def string(self, tbl, field):
        start, n = self.vector(tbl, field, 1)
        if not n:
            return ""
        try:
            return bytes(self.buf[start:start + n]).decode("utf-8")
        except UnicodeError:
            return "?"


def _options(r, op_tbl, name):
    tbl = r.sub_table(op_tbl, 4)  # builtin_options (union value)
    o = {}
    if tbl is None:
        return o
    i32 = lambda f, d: r.scalar(tbl, f, "<i", 4, d)  # noqa: E731
    i8 = lambda f, d: r.scalar(tbl, f, "<b", 1, d)  # noqa: E731
    if name == "CONV_2D":
        o["padding"] = PADDING_NAMES.get(i8(0, 0), "?")
        o["stride"] = (i32(2, 0), i32(1, 0))
        o["activation"] = ACTIVATION_NAMES.get(i8(3, 0), "?")
        o["dilation"] = (i32(5, 1), i32(4, 1))
    elif name == "DEPTHWISE_CONV_2D":
        o["padding"] = PADDING_NAMES.get(i8(0, 0), "?")
        o["stride"] = (i32(2, 0), i32(1, 0))
        o["depth_multiplier"] = i32(3, 0)
        o["activation"] = ACTIVATION_NAMES.get(i8(4, 0), "?")
        o["dilation"] = (i32(6, 1), i32(5, 1))
    elif name in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
        o["padding"] = PADDING_NAMES.get(i8(0, 0), "?")
        o["stride"] = (i32(2, 0), i32(1, 0))
        o["filter"] = (i32(4, 0), i32(3, 0))
        o["activation"] = ACTIVATION_NAMES.get(i8(5, 0), "?")
    elif name == "FULLY_CONNECTED":
        o["activation"] = ACTIVATION_NAMES.get(i8(0, 0), "?")
        o["weights_format"] = i8(1, 0)
        o["keep_num_dims"] = bool(i8(2, 0))
    elif name == "ADD":
        o["activation"] = ACTIVATION_NAMES.get(i8(0, 0), "?")
    elif name == "SOFTMAX":
        o["beta"] = r.scalar(tbl, 0, "<f", 4, 0.0)
    elif name == "MEAN":
        o["keep_dims"] = bool(i8(0, 0))
    elif name == "RESHAPE":
        o["new_shape"] = tuple(r.scalars(tbl, 0, "<i", 4))
    return o


def parse(data):
    """Parse TFLite flatbuffer ``data`` (bytes, bytearray or memoryview) into a :class:`Model`."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ValueError("model must be bytes, not %s" % type(data).__name__)
    buf = memoryview(data)
    if len(buf) < 16 or bytes(buf[4:8]) != TFLITE_IDENTIFIER:
        raise ValueError("not a TFLite model (no TFL3 identifier)")
    r = _Reader(buf)
    model = r.table(r.unpack("<I", 0, 4, "root"))
    opcodes = []
    for code_tbl in r.tables(model, 1):
        deprecated = r.scalar(code_tbl, 0, "<b", 1, 0)
        builtin = r.scalar(code_tbl, 3, "<i", 4, 0)
        code = max(builtin, deprecated)  # models written before code 127 only fill the deprecated byte
        name = OP_NAMES.get(code, "BUILTIN_%d" % code)
        if name == "CUSTOM":
            name = "CUSTOM:" + r.string(code_tbl, 1)
        opcodes.append((code, name))
    subgraphs = r.tables(model, 2)
    if not subgraphs:
        raise ValueError("TFLite model has no subgraph")
    buffers = r.tables(model, 4)
    graph = subgraphs[0]

    tensors = []
    for i, t in enumerate(r.tables(graph, 0)):
        shape = tuple(r.scalars(t, 0, "<i", 4))
        if len(shape) > _MAX_RANK:
            raise ValueError("tensor %d has rank %d" % (i, len(shape)))
        for d in shape:
            if d < 0:
                raise ValueError("tensor %d has a dynamic shape %r" % (i, shape))
        dtype = r.scalar(t, 1, "<b", 1, 0)
        buffer = r.scalar(t, 2, "<I", 4, 0)
        name = r.string(t, 3)
        scales, zero_points, qdim = (), (), 0
        q = r.sub_table(t, 4)
        if q is not None:
            scales = tuple(r.scalars(q, 2, "<f", 4))
            zero_points = tuple(r.scalars(q, 3, "<q", 8))
            qdim = r.scalar(q, 6, "<i", 4, 0)
        data_view = None
        if buffer:
            if buffer >= len(buffers):
                raise ValueError("tensor %d refers to buffer %d of %d" % (i, buffer, len(buffers)))
            b = buffers[buffer]
            start, n = r.vector(b, 0, 1)
            offset = r.scalar(b, 1, "<Q", 8, 0)
            if offset > 1:  # data stored after the flatbuffer (large-model layout)
                n = r.scalar(b, 2, "<Q", 8, 0)
                start = offset
                r._check(start, n, "buffer data")
            if n:
                data_view = buf[start:start + n]
        tensor = Tensor(i, name, shape, dtype, buffer, data_view, scales, zero_points, qdim)
        if data_view is not None and len(data_view) < tensor.nbytes():
            raise ValueError("tensor %d (%s) has %d data bytes, its shape needs %d"
                             % (i, name, len(data_view), tensor.nbytes()))
        tensors.append(tensor)

    n_tensors = len(tensors)

    def indices(tbl, field, what):
        out = tuple(r.scalars(tbl, field, "<i", 4))
        for j in out:
            if j < -1 or j >= n_tensors:
                raise ValueError("%s refers to tensor %d of %d" % (what, j, n_tensors))
        return out

    operators = []
    for k, op in enumerate(r.tables(graph, 3)):
        opcode_index = r.scalar(op, 0, "<I", 4, 0)
        if opcode_index >= len(opcodes):
            raise ValueError("operator %d uses opcode %d of %d" % (k, opcode_index, len(opcodes)))
        code, name = opcodes[opcode_index]
        operators.append(Operator(k, name, code, indices(op, 1, "operator %d" % k),
                                  indices(op, 2, "operator %d" % k), _options(r, op, name)))
    inputs = indices(graph, 1, "subgraph input")
    outputs = indices(graph, 2, "subgraph output")
    return Model(data, tensors, operators, inputs, outputs, len(subgraphs))


def describe(model):
    """Lines of text: one per tensor and op (used by the MicroPython smoke test)."""
    lines = []
    for t in model.tensors:
        lines.append("T %d %s %s %s" % (t.index, t.type_name(), ",".join(str(d) for d in t.shape),
                                        "const" if t.is_constant() else "act"))
    for op in model.operators:
        lines.append("O %d %s %s %s" % (op.index, op.name, ",".join(str(j) for j in op.inputs),
                                        ",".join(str(j) for j in op.outputs)))
    return lines
