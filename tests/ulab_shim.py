"""A fake ``ulab`` 6.x package over numpy, exposing only what ulab 6.x has.

Device code (device/kwsrt/) picks numpy-only branches when ``import ulab``
fails, so under plain CPython its ulab branches never run. Installing this shim
as ``sys.modules["ulab"]`` makes them run on the host, with ulab's rules:

* ``ulab.numpy`` holds exactly the names of ulab 6.12's ``numpy`` module
  (code/numpy/numpy.c); names that arrived after ``version`` are left out
  (``take`` 6.6, ``random`` 6.5, ``bitwise_*``/``left_shift``/``right_shift``
  6.3, ``bincount`` 6.10, ``meshgrid`` 6.12). Functions the device code does
  not need exist but raise NotImplementedError, so ``hasattr`` stays truthful.
* dtypes are integer constants (ulab's typecodes: bool ``'?'``, uint8 ``'B'``,
  int8 ``'b'``, uint16 ``'H'``, int16 ``'h'``, float ``'f'``, complex ``'c'``);
  ``float`` is float32 as on single-precision boards. ``dtype=`` accepts only
  these constants (a numpy dtype raises TypeError).
* arrays are :class:`ndarray` proxies with ulab's methods/properties only
  (``astype``, ``view``, ``sum`` ... raise AttributeError); indexing returns
  Python ints/floats/complex, never numpy scalars.
* arithmetic follows ulab's upcasting tables (code/ndarray_operators.c):
  same dtype keeps the dtype and wraps on overflow (int8 + int8 is int8),
  anything with float is float32, uint16 with int16 is float, ``/`` and ``**``
  are float; a Python int operand becomes the smallest fitting dtype
  (ndarray_from_mp_obj), a Python float a float32 array.
* float -> integer conversion (``array(x, dtype=int8)``, slice assignment)
  rounds half away from zero then wraps like a C cast, as
  ndarray_copy_view_convert_type does; a Python float in a list for an integer
  dtype raises TypeError as MicroPython's mp_obj_get_int does.
* ``sum``/``mean`` of float arrays use ulab's running (Welford) mean in float32
  times the count, NOT an exact sum: integer-valued float sums can come out
  inexact. Integer arrays summed along an axis keep their dtype (and wrap).
* ``dot`` accumulates sequentially in float32 (transform_dot), result float.
* ``fft.fft`` needs a power-of-two length and returns a complex array; there
  is no rfft.

Approximations (where the shim is not bit-exact ulab): float32 transcendental
functions (log, exp, sin...) come from numpy rather than the board's libm
(differences of ~1 ulp); the FFT is numpy's (computed in double and rounded to
float32), while ulab's radix-2 FFT in float32 is slightly less accurate;
``//`` and ``%`` use the subtraction table for dtypes, and ``minimum``/
``maximum``/``clip``/``where`` the addition table; in-place operators cast the
result back to the left operand's dtype; ``sort``, ``median`` and other
functions the device code does not use are thin numpy wrappers or stubs. Under
CPython ``float`` scalars are doubles, while a board's Python floats are
single precision: scalar (non-array) float arithmetic in device code runs in
double here.
"""

from __future__ import annotations

import sys
import types
from contextlib import contextmanager

import numpy as _np

BOOL, UINT8, INT8, UINT16, INT16, FLOAT, COMPLEX = (ord(c) for c in "?BbHhfc")
_NUMPY_DTYPE = {BOOL: _np.bool_, UINT8: _np.uint8, INT8: _np.int8, UINT16: _np.uint16, INT16: _np.int16,
                FLOAT: _np.float32, COMPLEX: _np.complex64}
_INTEGER = (UINT8, INT8, UINT16, INT16)
VERSION = (6, 12, 0)

# ulab.numpy names (code/numpy/numpy.c, ulab 6.12 with the default configuration) and when they arrived
NUMPY_NAMES = {
    "ndarray": (6, 0), "array": (6, 0), "frombuffer": (6, 0), "e": (6, 0), "inf": (6, 0), "nan": (6, 0),
    "pi": (6, 0), "bool": (6, 0), "uint8": (6, 0), "int8": (6, 0), "uint16": (6, 0), "int16": (6, 0),
    "float": (6, 0), "complex": (6, 0), "fft": (6, 0), "linalg": (6, 0), "random": (6, 5),
    "set_printoptions": (6, 0), "get_printoptions": (6, 0), "ndinfo": (6, 0), "arange": (6, 0),
    "compress": (6, 0), "concatenate": (6, 0), "delete": (6, 0), "diag": (6, 0), "empty": (6, 0), "eye": (6, 0),
    "interp": (6, 0), "trapz": (6, 0), "full": (6, 0), "linspace": (6, 0), "logspace": (6, 0),
    "meshgrid": (6, 12), "ones": (6, 0), "zeros": (6, 0), "bincount": (6, 10), "clip": (6, 0), "equal": (6, 0),
    "not_equal": (6, 0), "isfinite": (6, 0), "isinf": (6, 0), "maximum": (6, 0), "minimum": (6, 0),
    "nonzero": (6, 0), "where": (6, 0), "bitwise_and": (6, 3), "bitwise_or": (6, 3), "bitwise_xor": (6, 3),
    "left_shift": (6, 3), "right_shift": (6, 3), "convolve": (6, 0), "all": (6, 0), "any": (6, 0),
    "argmax": (6, 0), "argmin": (6, 0), "argsort": (6, 0), "asarray": (6, 0), "cross": (6, 0), "diff": (6, 0),
    "dot": (6, 0), "trace": (6, 0), "flip": (6, 0), "load": (6, 0), "loadtxt": (6, 0), "max": (6, 0),
    "mean": (6, 0), "median": (6, 0), "min": (6, 0), "roll": (6, 0), "save": (6, 0), "savetxt": (6, 0),
    "size": (6, 0), "sort": (6, 0), "std": (6, 0), "sum": (6, 0), "take": (6, 6), "polyfit": (6, 0),
    "polyval": (6, 0), "acos": (6, 0), "acosh": (6, 0), "arctan2": (6, 0), "around": (6, 0), "asin": (6, 0),
    "asinh": (6, 0), "atan": (6, 0), "atanh": (6, 0), "ceil": (6, 0), "cos": (6, 0), "cosh": (6, 0),
    "degrees": (6, 0), "exp": (6, 0), "expm1": (6, 0), "floor": (6, 0), "log": (6, 0), "log10": (6, 0),
    "log2": (6, 0), "radians": (6, 0), "sin": (6, 0), "sinc": (6, 0), "sinh": (6, 0), "sqrt": (6, 0),
    "tan": (6, 0), "tanh": (6, 0), "vectorize": (6, 0), "real": (6, 0), "imag": (6, 0), "conjugate": (6, 0),
    "sort_complex": (6, 0),
}
FFT_NAMES = ("fft", "ifft")
LINALG_NAMES = ("cholesky", "det", "eig", "inv", "norm", "qr")
UTILS_NAMES = ("from_int16_buffer", "from_uint16_buffer", "from_int32_buffer", "from_uint32_buffer",
               "spectrogram")
ULAB_NAMES = ("numpy", "scipy", "utils", "user", "__version__", "dtype")
NDARRAY_ATTRIBUTES = ("dtype", "flat", "itemsize", "ndim", "shape", "size", "strides", "T", "real", "imag",
                      "reshape", "transpose", "byteswap", "copy", "flatten", "tobytes", "tolist", "sort")


# --------------------------------------------------------------------------- #
# Upcasting (code/ndarray_operators.c); bool arrays take part as uint8
# --------------------------------------------------------------------------- #

def _sym(pairs):
    table = {}
    for (a, b), r in pairs.items():
        table[a, b] = table[b, a] = r
    return table


_ADD_TABLE = _sym({
    (UINT8, UINT8): UINT8, (UINT8, INT8): INT16, (UINT8, UINT16): UINT16, (UINT8, INT16): INT16,
    (INT8, INT8): INT8, (INT8, UINT16): INT16, (INT8, INT16): INT16,
    (UINT16, UINT16): UINT16, (UINT16, INT16): FLOAT, (INT16, INT16): INT16,
})
_SUB_TABLE = {
    (UINT8, UINT8): UINT8, (UINT8, INT8): INT16, (UINT8, UINT16): UINT16, (UINT8, INT16): INT16,
    (INT8, UINT8): INT16, (INT8, INT8): INT8, (INT8, UINT16): INT16, (INT8, INT16): INT16,
    (UINT16, UINT8): UINT16, (UINT16, INT8): UINT16, (UINT16, UINT16): UINT16, (UINT16, INT16): FLOAT,
    (INT16, UINT8): INT16, (INT16, INT8): INT16, (INT16, UINT16): FLOAT, (INT16, INT16): INT16,
}


def _result_dtype(table, left, right):
    left = UINT8 if left == BOOL else left
    right = UINT8 if right == BOOL else right
    if COMPLEX in (left, right):
        return COMPLEX
    if FLOAT in (left, right):
        return FLOAT
    return table[left, right]


# --------------------------------------------------------------------------- #
# ndarray proxy
# --------------------------------------------------------------------------- #

def _check_dtype(dtype):
    if type(dtype) is not int or dtype not in _NUMPY_DTYPE:
        raise TypeError("ulab dtype must be one of ulab.numpy's constants, got %r" % (dtype,))
    return dtype


def _wrap(values, dtype):
    """An ndarray over numpy ``values`` (not copied: a view stays a view)."""
    a = object.__new__(ndarray)
    a._a = values
    a._dt = dtype
    return a


def _python_scalar(value, dtype):
    if dtype == BOOL:
        return bool(value)
    if dtype in _INTEGER:
        return int(value)
    if dtype == FLOAT:
        return float(value)
    return complex(value)


def _round_to_int(values):
    """C round() (half away from zero) of float values, as int64."""
    x = values.astype(_np.float64)
    return _np.where(x >= 0, _np.floor(x + 0.5), -_np.floor(-x + 0.5)).astype(_np.int64)


def _convert(values, src, dst):
    """numpy values of ulab dtype ``src`` as dtype ``dst`` (ndarray_copy_view_convert_type)."""
    if src == dst:
        return values.copy()
    if src == COMPLEX:
        raise TypeError("cannot convert complex type")
    if dst in _INTEGER or dst == BOOL:
        ints = _round_to_int(values) if src == FLOAT else values.astype(_np.int64)
        if dst == BOOL:
            return ints != 0
        return ints.astype(_NUMPY_DTYPE[dst])  # wraps like a C cast
    return values.astype(_NUMPY_DTYPE[dst])


def _from_iterable(obj, dtype):
    def flatten(item, depth, shape):
        if isinstance(item, ndarray):
            item = item.tolist()
        if isinstance(item, (list, tuple, bytes, bytearray, memoryview)) or (
                hasattr(item, "__iter__") and not isinstance(item, (str, _np.ndarray))):
            seq = list(item)
            if len(shape) <= depth:
                shape.append(len(seq))
            elif shape[depth] != len(seq):
                raise ValueError("iterables are not of the same length")
            out = []
            for v in seq:
                out.extend(flatten(v, depth + 1, shape))
            return out
        if isinstance(item, _np.ndarray) or isinstance(item, _np.generic):
            raise TypeError("a numpy object reached ulab code: %r" % type(item).__name__)
        if dtype in _INTEGER and isinstance(item, float):
            raise TypeError("can't convert float to int")  # MicroPython's mp_obj_get_int
        if dtype in _INTEGER and not isinstance(item, int):
            raise TypeError("can't convert %s to int" % type(item).__name__)
        return [item]

    shape = []
    flat = flatten(obj, 0, shape)
    if dtype in _INTEGER:
        values = _np.array(flat, dtype=_np.int64).astype(_NUMPY_DTYPE[dtype])
    elif dtype == BOOL:
        values = _np.array([bool(v) for v in flat], dtype=_np.bool_)
    else:
        values = _np.array(flat, dtype=_NUMPY_DTYPE[dtype])
    return _wrap(values.reshape(shape), dtype)


def _from_obj(obj, other_dtype=0):
    """ndarray_from_mp_obj: scalars become one-element arrays of the smallest fitting dtype."""
    if isinstance(obj, ndarray):
        return obj
    if isinstance(obj, bool):
        return _wrap(_np.array([obj]), BOOL)
    if isinstance(obj, int):
        if obj < -32768 or obj > 65535:
            return _wrap(_np.array([obj], dtype=_np.float32), FLOAT)
        if obj < 0:
            dtype = INT8 if obj >= -128 else INT16
        elif other_dtype in (INT8, INT16):
            dtype = INT8 if obj < 128 else INT16
        else:
            dtype = UINT8 if obj < 256 else UINT16
        return _wrap(_np.array([obj], dtype=_NUMPY_DTYPE[dtype]), dtype)
    if isinstance(obj, float):
        return _wrap(_np.array([obj], dtype=_np.float32), FLOAT)
    if isinstance(obj, complex):
        return _wrap(_np.array([obj], dtype=_np.complex64), COMPLEX)
    if isinstance(obj, (_np.ndarray, _np.generic)):
        raise TypeError("a numpy object reached ulab code: %r" % type(obj).__name__)
    return _from_iterable(obj, FLOAT)


def _compute(table, op, left, right):
    dtype = _result_dtype(table, left._dt, right._dt)
    if dtype in _INTEGER:
        result = op(left._a.astype(_np.int64), right._a.astype(_np.int64)).astype(_NUMPY_DTYPE[dtype])
    else:
        t = _NUMPY_DTYPE[dtype]
        result = op(left._a.astype(t), right._a.astype(t)).astype(t)
    return _wrap(result, dtype)


def _binary(table, op, reflected=False):
    def method(self, other):
        if reflected:
            left = _from_obj(other, 0)
            right = self
        else:
            left, right = self, _from_obj(other, self._dt)
        return _compute(table, op, left, right)
    return method


def _float_binary(op, reflected=False):
    def method(self, other):
        left, right = (_from_obj(other, 0), self) if reflected else (self, _from_obj(other, self._dt))
        t = _np.complex64 if COMPLEX in (left._dt, right._dt) else _np.float32
        with _np.errstate(divide="ignore", invalid="ignore"):
            result = op(left._a.astype(t), right._a.astype(t)).astype(t)
        return _wrap(result, COMPLEX if t is _np.complex64 else FLOAT)
    return method


def _compare(op):
    def method(self, other):
        other = _from_obj(other, 0)
        return _wrap(op(self._a, other._a), BOOL)
    return method


def _inplace(binary):
    def method(self, other):
        result = binary(self, other)
        self._a[...] = _convert(result._a, result._dt, self._dt)
        return self
    return method


class ndarray:
    """ulab ndarray: only ulab's methods and properties."""

    __slots__ = ("_a", "_dt")

    def __init__(self, *args, **kwargs):
        raise TypeError("create arrays with ulab.numpy.array/zeros/frombuffer")

    # properties
    @property
    def shape(self):
        return tuple(int(n) for n in self._a.shape)

    @property
    def size(self):
        return int(self._a.size)

    @property
    def itemsize(self):
        return int(self._a.itemsize) if self._dt != BOOL else 1

    @property
    def ndim(self):
        return self._a.ndim

    @property
    def strides(self):
        return tuple(int(s) for s in self._a.strides)

    @property
    def dtype(self):
        return self._dt

    @property
    def T(self):
        return self.transpose()

    @property
    def real(self):
        return _wrap(_np.real(self._a).copy() if self._dt == COMPLEX else self._a.copy(),
                     FLOAT if self._dt == COMPLEX else self._dt)

    @property
    def imag(self):
        if self._dt == COMPLEX:
            return _wrap(_np.imag(self._a).copy(), FLOAT)
        return _wrap(_np.zeros_like(self._a), self._dt)

    @property
    def flat(self):
        return iter([_python_scalar(v, self._dt) for v in self._a.reshape(-1)])

    # methods
    def reshape(self, shape):
        if not isinstance(shape, (tuple, int)):
            raise TypeError("shape must be integer or tuple of integers")
        return _wrap(self._a.reshape(shape), self._dt)

    def transpose(self, axes=None):
        return _wrap(self._a.transpose(axes), self._dt)

    def flatten(self, order="C"):
        return _wrap(self._a.flatten(order), self._dt)

    def copy(self):
        return _wrap(self._a.copy(), self._dt)

    def tobytes(self):
        if not self._a.flags.c_contiguous:
            raise ValueError("tobytes can be invoked for dense arrays only")
        return bytearray(self._a.tobytes())

    def tolist(self):
        def convert(v):
            return [convert(x) for x in v] if isinstance(v, list) else _python_scalar(v, self._dt)
        return convert(self._a.tolist())

    def sort(self, axis=-1):
        self._a.sort(axis=axis)

    def byteswap(self, inplace=False):
        if inplace:
            self._a.byteswap(inplace=True)
            return self
        return _wrap(self._a.byteswap(), self._dt)

    # sequence protocol
    def __len__(self):
        return len(self._a)

    def __iter__(self):
        for i in range(len(self._a)):
            yield self[i]

    def _index(self, index):
        parts = index if isinstance(index, tuple) else (index,)
        if isinstance(index, ndarray):
            if index._dt != BOOL or index.ndim != 1:
                raise NotImplementedError("operation is implemented for 1D Boolean arrays only")
            return index._a
        for p in parts:
            if not isinstance(p, (int, slice)) or isinstance(p, bool):
                raise IndexError("indices must be integers, slices, or Boolean lists")
        if len(parts) > self._a.ndim:
            raise IndexError("too many indices")
        return index

    def __getitem__(self, index):
        value = self._a[self._index(index)]
        if isinstance(value, _np.ndarray) and value.ndim:
            return _wrap(value, self._dt)
        return _python_scalar(value, self._dt)

    def __setitem__(self, index, value):
        values = _from_obj(value, 0)
        converted = _convert(values._a, values._dt, self._dt)
        if converted.shape == (1,):
            converted = converted.reshape(())  # a scalar broadcasts to any target, as in ulab
        self._a[self._index(index)] = converted

    def __repr__(self):
        return "array(%r, dtype=%s)" % (self.tolist(), chr(self._dt))

    # arithmetic
    __add__ = _binary(_ADD_TABLE, _np.add)
    __radd__ = _binary(_ADD_TABLE, _np.add, reflected=True)
    __mul__ = _binary(_ADD_TABLE, _np.multiply)
    __rmul__ = _binary(_ADD_TABLE, _np.multiply, reflected=True)
    __sub__ = _binary(_SUB_TABLE, _np.subtract)
    __rsub__ = _binary(_SUB_TABLE, _np.subtract, reflected=True)
    __floordiv__ = _binary(_SUB_TABLE, _np.floor_divide)
    __mod__ = _binary(_SUB_TABLE, _np.mod)
    __truediv__ = _float_binary(_np.true_divide)
    __rtruediv__ = _float_binary(_np.true_divide, reflected=True)
    __pow__ = _float_binary(_np.power)
    __rpow__ = _float_binary(_np.power, reflected=True)
    __and__ = _binary(_ADD_TABLE, _np.bitwise_and)
    __or__ = _binary(_ADD_TABLE, _np.bitwise_or)
    __xor__ = _binary(_ADD_TABLE, _np.bitwise_xor)
    __iadd__ = _inplace(__add__)
    __isub__ = _inplace(__sub__)
    __imul__ = _inplace(__mul__)
    __itruediv__ = _inplace(__truediv__)
    __ipow__ = _inplace(__pow__)
    __lt__ = _compare(_np.less)
    __le__ = _compare(_np.less_equal)
    __gt__ = _compare(_np.greater)
    __ge__ = _compare(_np.greater_equal)
    __eq__ = _compare(_np.equal)
    __ne__ = _compare(_np.not_equal)
    __hash__ = None

    def __neg__(self):
        return _wrap(-self._a, self._dt)

    def __pos__(self):
        return self.copy()

    def __abs__(self):
        if self._dt == COMPLEX:
            return _wrap(_np.abs(self._a).astype(_np.float32), FLOAT)
        return _wrap(_np.abs(self._a), self._dt)

    def __invert__(self):
        if self._dt not in _INTEGER and self._dt != BOOL:
            raise TypeError("operation is not supported for given type")
        return _wrap(~self._a, self._dt)


# --------------------------------------------------------------------------- #
# ulab.numpy functions
# --------------------------------------------------------------------------- #

def _dtype_kw(dtype):
    return FLOAT if dtype is None else _check_dtype(dtype)


def array(obj, dtype=FLOAT):
    dtype = _check_dtype(dtype)
    if isinstance(obj, ndarray):
        return _wrap(_convert(obj._a, obj._dt, dtype), dtype)
    return _from_iterable(obj, dtype)


def asarray(obj, dtype=None):
    if isinstance(obj, ndarray) and (dtype is None or dtype == obj._dt):
        return obj
    return array(obj, dtype=_dtype_kw(dtype))


def frombuffer(buffer, dtype=FLOAT, count=-1, offset=0):
    dtype = _check_dtype(dtype)
    raw = memoryview(buffer).cast("B")
    size = _np.dtype(_NUMPY_DTYPE[dtype]).itemsize
    if len(raw) < offset:
        raise ValueError("offset must be non-negative and no greater than buffer length")
    n = (len(raw) - offset) // size
    if n * size != len(raw) - offset:
        raise ValueError("buffer size must be a multiple of element size")
    if count > 0:
        if n < count:
            raise ValueError("buffer is smaller than requested size")
        n = count
    # shares the buffer's memory, as ulab does (writable when the buffer is)
    return _wrap(_np.frombuffer(buffer, dtype=_NUMPY_DTYPE[dtype], count=n, offset=offset), dtype)


def _shape(shape):
    return (shape,) if isinstance(shape, int) else tuple(shape)


def zeros(shape, dtype=FLOAT):
    dtype = _check_dtype(dtype)
    return _wrap(_np.zeros(_shape(shape), dtype=_NUMPY_DTYPE[dtype]), dtype)


def ones(shape, dtype=FLOAT):
    dtype = _check_dtype(dtype)
    return _wrap(_np.ones(_shape(shape), dtype=_NUMPY_DTYPE[dtype]), dtype)


def full(shape, fill_value, dtype=FLOAT):
    dtype = _check_dtype(dtype)
    value = _from_obj(fill_value)
    filled = _convert(value._a, value._dt, dtype)[0]
    return _wrap(_np.full(_shape(shape), filled, dtype=_NUMPY_DTYPE[dtype]), dtype)


empty = zeros


def arange(*args, dtype=None):
    ints = all(isinstance(a, int) for a in args)
    dtype = _dtype_kw(dtype) if dtype is not None else (INT16 if ints else FLOAT)
    return _wrap(_np.arange(*args).astype(_NUMPY_DTYPE[dtype]), dtype)


def linspace(start, stop, num=50, endpoint=True, retstep=False, dtype=FLOAT):
    dtype = _check_dtype(dtype)
    values = _wrap(_np.linspace(start, stop, num, endpoint=endpoint).astype(_NUMPY_DTYPE[dtype]), dtype)
    return (values, (stop - start) / (num - 1 if endpoint else num)) if retstep else values


def concatenate(arrays, axis=0):
    arrays = list(arrays)
    for a in arrays:
        if not isinstance(a, ndarray):
            raise TypeError("arrays must be ndarrays")
        if a._dt != arrays[0]._dt:
            raise TypeError("input dtypes must be equal")  # ulab refuses mixed dtypes
    return _wrap(_np.concatenate([a._a for a in arrays], axis=axis), arrays[0]._dt)


def _as_array(x):
    return _from_obj(x, 0)


def _welford(values, axis):
    """ulab's float sum/mean: running mean m += (v - m) / (i + 1) in float32."""
    x = _np.moveaxis(values.astype(_np.float32), axis, 0)
    mean = _np.zeros(x.shape[1:], dtype=_np.float32)
    for i in range(x.shape[0]):
        mean = (mean + (x[i] - mean) / _np.float32(i + 1)).astype(_np.float32)
    return mean, x.shape[0]


def _reduce(kind, a, axis=None):
    a = _as_array(a)
    if a._dt == COMPLEX:
        raise TypeError("function is not implemented for complex dtype")
    if axis is None:
        mean, n = _welford(a._a.reshape(-1), 0)
        if kind == "mean":
            return float(mean)
        total = _np.float32(mean * _np.float32(n))
        if a._dt == FLOAT:
            return float(total)
        return int(_round_to_int(_np.array([total]))[0])
    if kind == "sum" and a._dt in _INTEGER:
        return _wrap(_np.sum(a._a.astype(_np.int64), axis=axis).astype(_NUMPY_DTYPE[a._dt]), a._dt)
    mean, n = _welford(a._a, axis)
    if kind == "mean":
        return _wrap(mean, FLOAT)
    return _wrap((mean * _np.float32(n)).astype(_np.float32), FLOAT if a._dt == FLOAT else a._dt)


def sum(a, axis=None, keepdims=False):  # noqa: A001 - ulab's name
    return _reduce("sum", a, axis)


def mean(a, axis=None, keepdims=False):
    return _reduce("mean", a, axis)


def dot(m1, m2):
    if not isinstance(m1, ndarray) or not isinstance(m2, ndarray):
        raise TypeError("arguments must be ndarrays")
    if COMPLEX in (m1._dt, m2._dt):
        raise TypeError("function is not implemented for complex dtype")
    a = m1._a.astype(_np.float32)
    b = m2._a.astype(_np.float32)
    a2 = a if a.ndim == 2 else a.reshape(1, -1)
    b2 = b if b.ndim == 2 else b.reshape(-1, 1)
    if a2.shape[1] != b2.shape[0]:
        raise ValueError("dimensions do not match")
    acc = _np.zeros((a2.shape[0], b2.shape[1]), dtype=_np.float32)
    for k in range(a2.shape[1]):  # sequential float32 accumulation, like transform_dot
        acc = (acc + _np.outer(a2[:, k], b2[k, :]).astype(_np.float32)).astype(_np.float32)
    if a.ndim == 1 and b.ndim == 1:
        return float(acc[0, 0])
    if a.ndim == 2 and b.ndim == 2:
        return _wrap(acc, FLOAT)
    return _wrap(acc.reshape(-1), FLOAT)


def _elementwise_pair(op):
    def function(x1, x2):
        a, b = _as_array(x1), _as_array(x2)
        dtype = _result_dtype(_ADD_TABLE, a._dt, b._dt)
        t = _np.int64 if dtype in _INTEGER else _NUMPY_DTYPE[dtype]
        return _wrap(op(a._a.astype(t), b._a.astype(t)).astype(_NUMPY_DTYPE[dtype]), dtype)
    return function


maximum = _elementwise_pair(_np.maximum)
minimum = _elementwise_pair(_np.minimum)


def clip(a, a_min, a_max):
    if isinstance(a, (int, float)):
        return a_min if a < a_min else a_max if a > a_max else a
    return maximum(a_min, minimum(a, a_max))


def where(condition, x, y):
    c, a, b = _as_array(condition), _as_array(x), _as_array(y)
    dtype = _result_dtype(_ADD_TABLE, a._dt, b._dt)
    t = _NUMPY_DTYPE[dtype]
    return _wrap(_np.where(c._a.astype(bool), a._a.astype(t), b._a.astype(t)).astype(t), dtype)


def take(a, indices, axis=None, out=None, mode=None):
    if not isinstance(a, ndarray):
        raise TypeError("input is not an array")
    idx = indices._a if isinstance(indices, ndarray) else _np.array(list(indices))
    if idx.dtype.kind == "f":
        raise TypeError("indices must be integers")
    result = _np.take(a._a, idx.astype(_np.int64), axis=axis)
    if out is not None:
        out._a[...] = result
        return out
    return _wrap(result, a._dt)


def _unary_float(op):
    def function(x):
        a = _as_array(x)
        if isinstance(x, (int, float)):
            return float(op(_np.float32(x)))
        if a._dt == COMPLEX:
            raise TypeError("function is not implemented for complex dtype")
        with _np.errstate(divide="ignore", invalid="ignore"):
            return _wrap(op(a._a.astype(_np.float32)).astype(_np.float32), FLOAT)
    return function


def real(x):
    return _as_array(x).real


def imag(x):
    return _as_array(x).imag


def _minmax(op):
    def function(a, axis=None):
        a = _as_array(a)
        if axis is None:
            return _python_scalar(op(a._a), a._dt)
        return _wrap(op(a._a, axis=axis), a._dt)
    return function


def argmax(a, axis=None):
    a = _as_array(a)
    return int(_np.argmax(a._a)) if axis is None else _wrap(_np.argmax(a._a, axis=axis).astype(_np.uint16), UINT16)


def argmin(a, axis=None):
    a = _as_array(a)
    return int(_np.argmin(a._a)) if axis is None else _wrap(_np.argmin(a._a, axis=axis).astype(_np.uint16), UINT16)


def size(a, axis=None):
    a = _as_array(a)
    return a.size if axis is None else a.shape[axis]


def _not_implemented(name):
    def function(*args, **kwargs):
        raise NotImplementedError("the ulab shim does not implement ulab.numpy.%s (ulab has it)" % name)
    function.__name__ = name
    return function


def fft(r, c=None):
    if not isinstance(r, ndarray):
        raise NotImplementedError("FFT is defined for ndarrays only")
    if r.ndim != 1:
        raise TypeError("FFT is implemented for linear arrays only")
    n = len(r._a)
    if n & (n - 1):
        raise ValueError("input array length must be power of 2")
    x = r._a.astype(_np.complex128)
    if c is not None:
        x = x + 1j * c._a.astype(_np.float64)
    return _wrap(_np.fft.fft(x).astype(_np.complex64), COMPLEX)


def ifft(r, c=None):
    spectrum = r._a.astype(_np.complex128) if c is None else r._a + 1j * c._a
    return _wrap(_np.fft.ifft(spectrum).astype(_np.complex64), COMPLEX)


_IMPLEMENTED = {
    "ndarray": ndarray, "array": array, "asarray": asarray, "frombuffer": frombuffer, "zeros": zeros,
    "ones": ones, "full": full, "empty": empty, "arange": arange, "linspace": linspace,
    "concatenate": concatenate, "sum": sum, "mean": mean, "dot": dot, "maximum": maximum, "minimum": minimum,
    "clip": clip, "where": where, "take": take, "real": real, "imag": imag, "max": _minmax(_np.max),
    "min": _minmax(_np.min), "argmax": argmax, "argmin": argmin, "size": size,
    "e": float(_np.e), "inf": float("inf"), "nan": float("nan"), "pi": float(_np.pi),
    "bool": BOOL, "uint8": UINT8, "int8": INT8, "uint16": UINT16, "int16": INT16, "float": FLOAT,
    "complex": COMPLEX,
}
for _name, _op in {"acos": _np.arccos, "acosh": _np.arccosh, "asin": _np.arcsin, "asinh": _np.arcsinh,
                   "atan": _np.arctan, "atanh": _np.arctanh, "ceil": _np.ceil, "cos": _np.cos, "cosh": _np.cosh,
                   "degrees": _np.degrees, "exp": _np.exp, "expm1": _np.expm1, "floor": _np.floor,
                   "log": _np.log, "log10": _np.log10, "log2": _np.log2, "radians": _np.radians,
                   "sin": _np.sin, "sinh": _np.sinh, "sqrt": _np.sqrt, "tan": _np.tan,
                   "tanh": _np.tanh}.items():
    _IMPLEMENTED[_name] = _unary_float(_op)


def make_ulab(version=VERSION):
    """Fresh module objects ``ulab``, ``ulab.numpy``, ``ulab.numpy.fft``, ``ulab.numpy.linalg``, ``ulab.utils``.

    Returns a dict {module name: module} for ``sys.modules``.
    """
    version = tuple(version)[:2]
    ulab = types.ModuleType("ulab")
    ulab.__version__ = "%d.%d.0-2D" % version
    numpy = types.ModuleType("ulab.numpy")
    fft_module = types.ModuleType("ulab.numpy.fft")
    fft_module.fft, fft_module.ifft = fft, ifft
    linalg = types.ModuleType("ulab.numpy.linalg")
    for name in LINALG_NAMES:
        setattr(linalg, name, _not_implemented("linalg." + name))
    utils = types.ModuleType("ulab.utils")
    for name in UTILS_NAMES:
        setattr(utils, name, _not_implemented(name))
    for name, since in NUMPY_NAMES.items():
        if since > version:
            continue
        if name == "fft":
            value = fft_module
        elif name == "linalg":
            value = linalg
        elif name == "random":
            value = types.ModuleType("ulab.numpy.random")
        else:
            value = _IMPLEMENTED.get(name) or _not_implemented(name)
        setattr(numpy, name, value)
    ulab.numpy = numpy
    ulab.utils = utils
    ulab.scipy = types.ModuleType("ulab.scipy")
    ulab.user = types.ModuleType("ulab.user")
    return {"ulab": ulab, "ulab.numpy": numpy, "ulab.numpy.fft": fft_module, "ulab.numpy.linalg": linalg,
            "ulab.utils": utils}


def to_numpy(x):
    """Host-side helper for tests: a shim ndarray (or anything array-like) as a numpy array."""
    if isinstance(x, ndarray):
        return x._a.copy()
    return _np.asarray(x)


@contextmanager
def installed(package="kws_kit.device.kwsrt", version=VERSION):
    """Within the block ``import ulab`` gets the shim and ``package`` is imported afresh.

    Yields a function ``load(module_name)`` returning ``package.module_name``
    imported under the shim. Everything is restored afterwards.
    """
    import importlib

    def ours(name):
        return name == package or name.startswith(package + ".") or name == "ulab" or name.startswith("ulab.")

    saved = {name: mod for name, mod in sys.modules.items() if ours(name)}
    for name in saved:
        del sys.modules[name]
    parent_name, _, leaf = package.rpartition(".")
    parent = sys.modules.get(parent_name)
    saved_attr = getattr(parent, leaf, None) if parent is not None else None
    sys.modules.update(make_ulab(version))
    try:
        yield lambda name: importlib.import_module(package + "." + name)
    finally:
        for name in [n for n in sys.modules if ours(n)]:
            del sys.modules[name]
        sys.modules.update(saved)
        if parent is not None and saved_attr is not None:
            setattr(parent, leaf, saved_attr)
